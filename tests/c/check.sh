#!/usr/bin/env bash
# Runs one check of `make test` and records its result; never fails itself, so
# `make test` runs every check and reports them all at the end.
#
#   tests/c/check.sh RESULTS_DIR KIND NAME [--timeout SECONDS] -- COMMAND [ARGS...]
#
# KIND is "rust" or "c" (the summary counts them apart). The command's output
# goes to RESULTS_DIR/logs/NAME.log; on failure its tail is shown.
set -uo pipefail

results=$1 kind=$2 name=$3
shift 3
limit=300
if [[ ${1:-} == --timeout ]]; then
    limit=$2
    shift 2
fi
[[ ${1:-} == -- ]] && shift

mkdir -p "$results/logs"
log="$results/logs/$name.log"
start=$(date +%s)
printf '%-44s ' "[$kind] $name"
# timeout: a hung check must not hang CI; -k: SIGKILL if SIGTERM is not enough.
timeout -k 10 "$limit" "$@" >"$log" 2>&1 </dev/null
rc=$?
elapsed=$(( $(date +%s) - start ))
if [[ $rc -eq 0 ]]; then
    echo "PASS (${elapsed}s)"
    echo "$kind PASS $name" >>"$results/results"
else
    if [[ $rc -eq 124 ]]; then
        echo "FAIL (timed out after ${limit}s)"
    else
        echo "FAIL (exit $rc, ${elapsed}s)"
    fi
    echo "$kind FAIL $name" >>"$results/results"
    echo "---- last lines of $log ----"
    tail -n 60 "$log" | sed 's/^/    /'
    echo "----"
fi
exit 0
