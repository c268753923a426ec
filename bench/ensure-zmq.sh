#!/usr/bin/env bash
# The benchmark needs ZeroMQ's headers and library (Debian: libzmq3-dev). Says
# how to install them when they are missing; installs them itself when run as
# root with CI=true or NOTIF_BENCH_INSTALL=1. Only the benchmark needs them:
# the library never links ZeroMQ.
set -euo pipefail
cc=${CC:-cc}
have_zmq() {
    echo '#include <zmq.h>
int main(void) { return zmq_ctx_new() == 0; }' | "$cc" -x c - -o /dev/null -lzmq >/dev/null 2>&1
}
have_zmq && exit 0
if [[ $(id -u) -eq 0 && ( ${CI:-} == true || ${NOTIF_BENCH_INSTALL:-} == 1 ) ]] && command -v apt-get >/dev/null; then
    echo "bench: installing libzmq3-dev (ZeroMQ headers and library)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends libzmq3-dev </dev/null
    have_zmq && exit 0
fi
cat >&2 <<'MSG'
bench: ZeroMQ's zmq.h (or libzmq) is missing; the benchmark compares notif with it.
Install it with:
    apt-get update && apt-get install -y libzmq3-dev
(as root; or run `NOTIF_BENCH_INSTALL=1 make bench` as root to let make install it)
MSG
exit 1
