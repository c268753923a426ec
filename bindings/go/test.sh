#!/usr/bin/env bash
# The Go binding's checks, run by `make test` (after `make all`, which builds
# target/release/libnotif.a): gofmt, go vet (with and without cgo), the tests
# with the race detector and cgocheck, the pure-Go subscriber's build and tests
# with CGO_ENABLED=0, the notif_pkgconfig build against a temporary
# `make install`, and the example in examples/go.
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

# The pkg-config variant against an installed copy (make install into a
# temporary prefix): links the shared libnotif.so.0.
if command -v pkg-config >/dev/null 2>&1; then
    step "go test -tags notif_pkgconfig against make install PREFIX=build/go-install (shared library)"
    # A fixed prefix: the build cache keeps pkg-config's output (golang/go#24544),
    # so a path that changed from run to run would be linked against stale -L flags.
    prefix=$root/build/go-install
    rm -rf "$prefix"
    (cd "$root" && ${MAKE:-make} --no-print-directory install PREFIX="$prefix" >/dev/null)
    PKG_CONFIG_PATH=$prefix/lib/pkgconfig go test -tags notif_pkgconfig -c -o "$prefix/notif.test" .
    LD_LIBRARY_PATH=$prefix/lib ldd "$prefix/notif.test" | grep -q "libnotif.so.0 => $prefix/lib/" ||
        { ldd "$prefix/notif.test"; echo "the pkg-config build does not use the installed libnotif.so.0" >&2; exit 1; }
    LD_LIBRARY_PATH=$prefix/lib "$prefix/notif.test" -test.count=1 -test.timeout=120s \
        -test.run 'TestVersion|TestRoundTrip|TestEmitErrors|TestStats|TestCloseTwiceAndEBADF'
else
    echo "pkg-config not found: the notif_pkgconfig build is not checked" >&2
    exit 1
fi

cd "$root/examples/go"
step "examples/go: go vet"
go vet ./...
step "examples/go: go run ."
out=$(timeout 60 go run .)
echo "$out"
received=$(grep -c '^received #' <<<"$out" || true)
[[ $received -eq 3 ]] || { echo "the example received $received notifications, want 3" >&2; exit 1; }
echo "Go binding: all checks passed"
