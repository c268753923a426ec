#!/usr/bin/env bash
# The Go binding's checks, run by `make test` (after `make all`, which builds
# target/release/libnotif.a): gofmt, go vet (with and without cgo), the tests
# with the race detector and cgocheck (-tags notif_checkout: the static
# target/release/libnotif.a), the pure-Go subscriber's build and tests with
# CGO_ENABLED=0, the README's walkthrough (an outside module, the default
# pkg-config build against `make install`, plainly and vendored; the message
# of a CGO_ENABLED=0 build), and the example in examples/go.
#
#   bindings/go/test.sh
#
# Standard library only: nothing is downloaded (GOPROXY=off, GOTOOLCHAIN=local).
# The walkthrough runs `make` and `make install`: the library is built already.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

if ! command -v go >/dev/null 2>&1; then
    echo "go not found in PATH: the Go binding needs Go 1.22 or later" >&2
    exit 1
fi
export GOPROXY=off GOTOOLCHAIN=local GOFLAGS=-mod=readonly
# A CI with no HOME still needs a build cache.
if [[ -z ${HOME:-} && -z ${GOCACHE:-} ]]; then
    export GOCACHE=${TMPDIR:-/tmp}/notif-go-cache
fi
go version

lib=$root/target/release/libnotif.a
[[ -f $lib ]] || { echo "$lib is missing: run cargo build --release (or make) first" >&2; exit 1; }
# Go's build cache does not notice a changed C library (golang/go#29293,
# #24544): it could link a test binary or the example against a stale copy of
# libnotif.a. A define carrying the library's hash makes the cgo packages'
# cache keys follow it.
lib_hash=$(sha256sum "$lib" | cut -c1-16)
export CGO_CFLAGS="${CGO_CFLAGS:--O2 -g} -DNOTIF_LIB_HASH=$lib_hash"

step() { echo "== $*"; }

for dir in "$here" "$root/examples/go"; do
    step "gofmt $dir"
    unformatted=$(gofmt -l "$dir")
    [[ -z $unformatted ]] || { echo "not gofmt'ed: $unformatted" >&2; exit 1; }
done

cd "$here"
step "bindings/go/notif.h is include/notif.h"
cmp -s "$root/include/notif.h" "$here/notif.h" ||
    { echo "bindings/go/notif.h differs from include/notif.h: run make (it copies it) and commit bindings/go/notif.h" >&2; exit 1; }
step "go vet (cgo, -tags notif_checkout)"
go vet -tags notif_checkout ./...
step "go vet (CGO_ENABLED=0)"
CGO_ENABLED=0 go vet ./...
step "go build (CGO_ENABLED=0: the subscriber alone)"
CGO_ENABLED=0 go build ./...
step "go test -race -tags notif_checkout (target/release/libnotif.a), GODEBUG=cgocheck=1"
GODEBUG=cgocheck=1 go test -tags notif_checkout -race -count=1 -timeout 240s ./...
step "go test (CGO_ENABLED=0: subscriber tests)"
CGO_ENABLED=0 go test -count=1 -timeout 120s ./...

# The default build (pkg-config) as a Go developer uses it: the walkthrough of
# bindings/go/README.md, its shell steps and its main.go taken from the README
# itself, in a directory outside the checkout. HOME is a fixed directory under
# build/ so that `make install PREFIX=$HOME/.local` gives the same paths on every
# run: the build cache keeps pkg-config's output (golang/go#24544), and a path
# that changed from run to run would be linked against stale -L flags.
command -v pkg-config >/dev/null 2>&1 || { echo "pkg-config not found: the default (pkg-config) build cannot be checked" >&2; exit 1; }
outside=$(mktemp -d "${TMPDIR:-/tmp}/notif-go-outside.XXXXXX")
trap 'rm -rf "$outside"' EXIT
case $outside/ in "$root"/*) echo "$outside is inside the checkout" >&2; exit 1 ;; esac
readme_block() { # the fenced block after the marker <!-- go-walkthrough: $1 ... --> of README $2
    awk -v m="<!-- go-walkthrough: $1" 'index($0, m) == 1 { f = 1; next }
        f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' "${2:-$here/README.md}"
}
readme_block shell >"$outside/walkthrough.sh"
readme_block main.go >"$outside/main.go"
grep -q '^git clone ' "$outside/walkthrough.sh" && grep -q 'notif.Open' "$outside/main.go" ||
    { echo "bindings/go/README.md: the go-walkthrough blocks are missing" >&2; exit 1; }
home=$root/build/go-home
rm -rf "$home" && mkdir -p "$home"
ln -s "$root" "$outside/notif" # what `git clone` made
# The toolchains keep their homes (only the install prefix moves).
GOCACHE=$(go env GOCACHE) GOPATH=$(go env GOPATH)
export GOCACHE GOPATH
if [[ -n ${HOME:-} ]]; then
    export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup} CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
fi
step "the README walkthrough: git clone (the checkout), make, make install PREFIX=\$HOME/.local, go mod init/edit, go build, run"
out=$(cd "$outside" && env HOME="$home" TMPDIR="$outside" GOFLAGS= bash -euo pipefail -c "
    $(sed -e '/^git clone /d' -e 's|^# write main.go.*|cp ../main.go .|' "$outside/walkthrough.sh")" 2>&1) ||
    { echo "$out"; echo "the README walkthrough failed" >&2; exit 1; }
echo "$out" | tail -n 3
grep -q '^received {"event_type":"hello.world","payload":{"pid":' <<<"$out" ||
    { echo "the walkthrough's program did not receive its notification" >&2; exit 1; }
app=$outside/hello-notif
libdir=$home/.local/lib
# Not `ldd | grep -q`: grep leaving early can fail ldd with SIGPIPE (pipefail).
grep -q "libnotif.so.0 => $libdir/" <<<"$(ldd "$app/hello-notif")" ||
    { ldd "$app/hello-notif"; echo "hello-notif does not find libnotif.so.0 in $libdir by its rpath" >&2; exit 1; }
export PKG_CONFIG_PATH=$libdir/pkgconfig

# The short version in the top README (its Go quick start): the same steps in fewer lines.
step "the top README's Go lines, in a second directory outside the checkout"
short=$outside/short
mkdir "$short" && ln -s "$root" "$short/notif" && cp "$outside/main.go" "$short/main.go"
readme_block quickstart "$root/README.md" >"$short/quickstart.sh"
grep -q '^git clone ' "$short/quickstart.sh" || { echo "README.md: the go-walkthrough quickstart block is missing" >&2; exit 1; }
out=$(cd "$short" && env HOME="$home" TMPDIR="$short" GOFLAGS= bash -euo pipefail -c "
    $(sed -e 's|^git clone [^ ]* &&|true \&\&|' -e 's|^# main.go.*|cp ../main.go .|' "$short/quickstart.sh")" 2>&1) ||
    { echo "$out"; echo "the top README's Go lines failed" >&2; exit 1; }
grep -q '^received {"event_type":"hello.world"' <<<"$out" || { echo "$out"; echo "the top README's Go lines did not run the program" >&2; exit 1; }
echo "$out" | tail -n 1

# Every other Go snippet of bindings/go/README.md runs as pasted, as the body
# of a main of its own (the imports it may use are given). /run/myd becomes a
# temporary directory and the group myd-readers one that exists here. A
# snippet that publishes must run to its end; one that only reads is given a
# publisher (notif emit) until it prints a notification, then stopped.
step "every Go snippet of bindings/go/README.md, as main's body: built and run"
frag=$outside/fragments
mkdir -p "$frag/run"
count=$(python3 - "$here/README.md" "$frag" "$frag/run" "$(id -gn)" <<'PY'
import os, re, sys
readme, out, run, group = sys.argv[1:]
blocks = [b for b in re.findall(r"^```go\n(.*?)^```", open(readme).read(), re.S | re.M)
          if "package main" not in b]
imports = ["context", "errors", "fmt", "log", "os", "strings", "syscall", "time"]
uses = ["context.Background", "errors.Is", "fmt.Sprint", "log.Print", "os.Exit",
        "strings.TrimSpace", "syscall.EINVAL", "time.Second", "notif.Subscribe"]
for i, block in enumerate(blocks):
    block = block.replace("/run/myd", run).replace("myd-readers", group)
    d = os.path.join(out, "s%d" % i)
    os.makedirs(d)
    src = ["package main", "", "import ("] + ['\t"%s"' % m for m in imports]
    src += ['\tnotif "github.com/notif-dev/notif/bindings/go"', ")", ""]
    src += ["var _ = %s" % u for u in uses] + ["", "func main() {", block + "}"]
    open(os.path.join(d, "main.go"), "w").write("\n".join(src) + "\n")
    open(os.path.join(d, "kind"), "w").write("publisher" if "notif.Open" in block else "consumer")
print(len(blocks))
PY
)
((count >= 4)) || { echo "bindings/go/README.md: expected at least 4 Go snippets besides main.go, found $count" >&2; exit 1; }
(cd "$frag" && GOFLAGS= go mod init example.com/fragments >/dev/null 2>&1 &&
    GOFLAGS= go mod edit -require=github.com/notif-dev/notif/bindings/go@v0.0.0 \
        -replace=github.com/notif-dev/notif/bindings/go="$root/bindings/go")
for dir in "$frag"/s*; do
    name="bindings/go/README.md snippet ${dir##*/s}"
    (cd "$frag" && GOFLAGS= go build -ldflags="-r $libdir" -o "$dir/prog" "./${dir##*/}") ||
        { cat -n "$dir/main.go"; echo "$name does not build as main's body" >&2; exit 1; }
    rm -f "$frag/run/"*
    if [[ $(cat "$dir/kind") == publisher ]]; then
        timeout 60 "$dir/prog" >"$dir/out" 2>&1 ||
            { cat -n "$dir/main.go" "$dir/out"; echo "$name failed (or hung)" >&2; exit 1; }
        continue
    fi
    # A consumer: a publisher first, emitting what the snippets filter for.
    "$root/target/release/notif" emit "$frag/run/notifications.sock" 2>/dev/null < <(
        while sleep 0.05; do echo '{"event_type":"compute.instance.update","priority":"ERROR","payload":{}}'; done) &
    feeder=$!
    for _ in $(seq 600); do [[ -S $frag/run/notifications.sock ]] && break; sleep 0.05; done
    "$dir/prog" >"$dir/out" 2>&1 &
    prog=$!
    for _ in $(seq 600); do grep -q compute.instance.update "$dir/out" && break; sleep 0.05; done
    kill "$prog" 2>/dev/null || true
    wait "$prog" 2>/dev/null || true
    kill "$feeder" 2>/dev/null || true
    wait "$feeder" 2>/dev/null || true
    grep -q compute.instance.update "$dir/out" ||
        { cat -n "$dir/main.go" "$dir/out"; echo "$name printed no notification within 30 s" >&2; exit 1; }
done
echo "$count snippets built and run"

step "the same module after go mod vendor"
(cd "$app" && GOFLAGS= go mod vendor)
[[ -f $app/vendor/github.com/notif-dev/notif/bindings/go/notif.h ]] || { echo "go mod vendor did not carry notif.h" >&2; exit 1; }
(cd "$app" && rm -f hello-notif && GOFLAGS=-mod=vendor go build -ldflags="-r $libdir" -o hello-vendored . &&
    TMPDIR="$outside" timeout 60 ./hello-vendored) | tee "$outside/vendored.out"
grep -q '^received {"event_type":"hello.world"' "$outside/vendored.out" || { echo "the vendored build did not work" >&2; exit 1; }
rm -rf "$app/vendor"

step "the same program with CGO_ENABLED=0: must not build, and say why"
if msg=$(cd "$app" && CGO_ENABLED=0 go build -o /dev/null . 2>&1); then
    echo "CGO_ENABLED=0 go build of a publisher succeeded" >&2; exit 1
fi
echo "$msg" | head -n 3
grep -q 'build with CGO_ENABLED=1 and libnotif installed (pkg-config notif)' <<<"$msg" ||
    { echo "CGO_ENABLED=0: the compiler's message does not say what to do" >&2; exit 1; }

# The binding's own tests through the installed, shared library.
step "go test (default build: pkg-config, shared libnotif.so.0 from \$HOME/.local)"
cd "$here"
go test -c -o "$outside/notif.test" .
LD_LIBRARY_PATH=$libdir ldd "$outside/notif.test" | grep -q "libnotif.so.0 => $libdir/" ||
    { ldd "$outside/notif.test"; echo "the pkg-config build does not link the installed libnotif.so.0" >&2; exit 1; }
LD_LIBRARY_PATH=$libdir "$outside/notif.test" -test.count=1 -test.timeout=120s \
    -test.run 'TestVersion|TestRoundTrip|TestEmitErrors|TestStats|TestCloseTwiceAndEBADF'

cd "$root/examples/go"
step "examples/go: go vet"
go vet -tags notif_checkout ./...
step "examples/go: go run -tags notif_checkout ."
out=$(timeout 60 go run -tags notif_checkout .)
echo "$out"
received=$(grep -c '^received #' <<<"$out" || true)
[[ $received -eq 3 ]] || { echo "the example received $received notifications, want 3" >&2; exit 1; }
echo "Go binding: all checks passed"
