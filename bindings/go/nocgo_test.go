package notif

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// exportedNames lists the exported top-level names (functions without a
// receiver, types, constants, variables) of the package's non-test files
// that import "C" (withCgo) or of nocgo.go (!withCgo).
func exportedNames(t *testing.T, withCgo bool) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		importsC := false
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); path == "C" {
				importsC = true
			}
		}
		if withCgo && !importsC || !withCgo && name != "nocgo.go" {
			continue
		}
		f, err = parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			switch d := decl.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil && d.Name.IsExported() {
					names = append(names, d.Name.Name)
				}
			case *ast.GenDecl:
				for _, spec := range d.Specs {
					switch s := spec.(type) {
					case *ast.TypeSpec:
						if s.Name.IsExported() {
							names = append(names, s.Name.Name)
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							if n.IsExported() {
								names = append(names, n.Name)
							}
						}
					}
				}
			}
		}
	}
	sort.Strings(names)
	return names
}

// Every exported name of the cgo half has a declaration in nocgo.go, so that
// a CGO_ENABLED=0 build of a program using it says "build with
// CGO_ENABLED=1" rather than "undefined" (bindings/go/test.sh compiles such a
// program and checks the message).
func TestNoCgoDeclaresThePublisherAPI(t *testing.T) {
	cgo := exportedNames(t, true)
	if len(cgo) < 10 {
		t.Fatalf("found only %v in the cgo files", cgo)
	}
	declared := map[string]bool{}
	for _, n := range exportedNames(t, false) {
		declared[n] = true
	}
	for _, n := range cgo {
		if !declared[n] {
			t.Errorf("%s is in the cgo half but not declared in nocgo.go", n)
		}
	}
}
