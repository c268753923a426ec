#!/usr/bin/env bash
# The Go binding's checks, run by `make test` (after `make all`, which builds
# target/release/libnotif.a): gofmt, go vet (with and without cgo), the tests
# with the race detector and cgocheck, the pure-Go subscriber's build and tests
# with CGO_ENABLED=0, and the example in examples/go.
#
#   bindings/go/test.sh
#
# Standard library only: nothing is downloaded (GOPROXY=off, GOTOOLCHAIN=local).
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

step() { echo "== $*"; }

for dir in "$here" "$root/examples/go"; do
    step "gofmt $dir"
    unformatted=$(gofmt -l "$dir")
    [[ -z $unformatted ]] || { echo "not gofmt'ed: $unformatted" >&2; exit 1; }
done

cd "$here"
step "go vet (cgo)"
go vet ./...
step "go vet (CGO_ENABLED=0)"
CGO_ENABLED=0 go vet ./...
step "go build (CGO_ENABLED=0: the subscriber alone)"
CGO_ENABLED=0 go build ./...
step "go test -race, GODEBUG=cgocheck=1"
GODEBUG=cgocheck=1 go test -race -count=1 -timeout 240s ./...
step "go test (CGO_ENABLED=0: subscriber tests)"
CGO_ENABLED=0 go test -count=1 -timeout 120s ./...

cd "$root/examples/go"
step "examples/go: go vet"
go vet ./...
step "examples/go: go run ."
out=$(timeout 60 go run .)
echo "$out"
received=$(grep -c '^received #' <<<"$out" || true)
[[ $received -eq 3 ]] || { echo "the example received $received notifications, want 3" >&2; exit 1; }
echo "Go binding: all checks passed"
