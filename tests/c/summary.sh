#!/usr/bin/env bash
# Prints the summary of `make test` from the results tests/c/check.sh recorded
# and exits non-zero if anything failed. The last line, "N passed, M failed",
# counts the C-side checks (CI reads it); the Rust-side checks are reported on
# the line before it and fail the run just the same.
set -uo pipefail
results=${1:?usage: summary.sh RESULTS_DIR}
file="$results/results"
[[ -f $file ]] || { echo "no results in $results"; echo "0 passed, 1 failed"; exit 1; }

count() { grep -c "^$1 $2 " "$file" || true; }
rust_pass=$(count rust PASS) rust_fail=$(count rust FAIL)
c_pass=$(count c PASS) c_fail=$(count c FAIL)

echo
echo "==== make test summary ===="
if (( rust_fail + c_fail > 0 )); then
    echo "failed checks (logs in $results/logs/):"
    grep ' FAIL ' "$file" | sed 's/^\([a-z]*\) FAIL \(.*\)$/  [\1] \2/'
fi
echo "Rust-side checks (cargo test, header, fmt, clippy): $rust_pass passed, $rust_fail failed"
echo "$c_pass passed, $c_fail failed"
(( rust_fail + c_fail == 0 ))
