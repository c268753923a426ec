#!/usr/bin/env bash
# The Python tests of `make test`: builds (or reuses) the pinned virtual
# environment build/python-venv, installs bindings/python into it (which builds
# libnotif.so and the notif tool in target/python and ships them in the package)
# and runs pytest.
#
#   bindings/python/tests/run.sh [PYTEST ARGS...]
#   bindings/python/tests/run.sh --bench [--seconds S]   (make bench-oslo: bindings/python/tests/bench_oslo.py)
#   bindings/python/tests/run.sh --wheel [OUTDIR]        (bindings/python/wheel.sh OUTDIR, as make wheel)
#
# The venv is rebuilt only when bindings/python/tests/requirements.txt or the Python
# version changes; the notif package itself is reinstalled on every run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

if [[ ${1:-} == --wheel ]]; then # make wheel: dist/ (its own build tools, not this venv)
    exec bindings/python/wheel.sh "${2:-dist}"
fi

PYTHON=${PYTHON:-python3}
venv=build/python-venv
req=bindings/python/tests/requirements.txt
want=$( { "$PYTHON" -c 'import sys; print(sys.version)'; cat "$req"; } | sha256sum | cut -d' ' -f1)

if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "python: installing python3-venv (ensurepip is missing)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv </dev/null ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv </dev/null; }
    else
        echo "python: '$PYTHON -m venv' needs ensurepip (Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    fi
fi

if [[ ! -x $venv/bin/python || "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
    echo "python: creating $venv from $req"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
    echo "$want" >"$venv/.requirements.sha256"
else
    echo "python: reusing $venv"
fi

# Build isolation off: setuptools is pinned in the venv, so no download per run.
# setuptools-rust builds with its own rustc flags (stripped cdylib): in a target
# directory of its own, so that target/release stays what cargo build made.
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/python} "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
    --force-reinstall ./bindings/python
rm -rf bindings/python/build

if [[ ${1:-} == --bench ]]; then # make bench-oslo
    shift
    exec "$venv/bin/python" bindings/python/tests/bench_oslo.py "$@"
fi
# bindings/python/tests/broker (a real RabbitMQ) is a check of its own: make test's forward-rabbitmq.
(($# > 0)) || set -- bindings/python/tests --ignore=bindings/python/tests/broker
exec "$venv/bin/python" -m pytest -p no:cacheprovider --timeout 120 -q "$@"
