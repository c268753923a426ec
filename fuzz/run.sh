#!/usr/bin/env bash
# The fuzz targets (cargo-fuzz, nightly) and the Miri run of the pure unit tests.
#
#   fuzz/run.sh corpus           every target over the committed corpus only (-runs=0):
#                                deterministic, a few seconds once built (make test)
#   fuzz/run.sh fuzz [TARGET...] every target (or those named) for FUZZ_SECONDS each
#                                (default 60); new inputs go to fuzz/work/TARGET, crashes
#                                to fuzz/artifacts/TARGET (make fuzz)
#   fuzz/run.sh cmin TARGET...   minimise fuzz/corpus/TARGET together with fuzz/work/TARGET
#                                back into fuzz/corpus/TARGET (keeping every edge covered)
#   fuzz/run.sh miri             json_line, subscription and top_level unit tests under Miri (make miri)
#
# Installs what it lacks: the nightly toolchain (rustup), cargo-fuzz
# (cargo install --locked) and the miri and rust-src components.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

TARGETS=(emit_line simd_scan subscription_request message_fields glob control_line)
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
MAX_LEN=${FUZZ_MAX_LEN:-4096}
CARGO=${CARGO:-cargo}
# -a: debug assertions (overflow checks too) in the fuzzed code; ASan is cargo-fuzz's default.
FUZZ_BUILD_FLAGS=(-a)

have() { command -v "$1" >/dev/null 2>&1; }

ensure_nightly() {
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        echo "fuzz: rustup toolchain install nightly"
        rustup toolchain install nightly --profile minimal
    fi
}

ensure_cargo_fuzz() {
    ensure_nightly
    if ! "$CARGO" +nightly fuzz --version >/dev/null 2>&1; then
        echo "fuzz: cargo install cargo-fuzz --locked"
        "$CARGO" install cargo-fuzz --locked
    fi
}

# Per-target libFuzzer options.
options() {
    local -a opts=("-max_len=$MAX_LEN")
    case $1 in
        emit_line | simd_scan | message_fields) opts+=(-dict=dict/json.dict) ;;
        subscription_request | control_line) opts+=(-dict=dict/subscription.dict) ;;
        glob) opts=(-max_len=512) ;;
    esac
    printf '%s\n' "${opts[@]}"
}

run_target() { # TARGET CORPUS_DIRS... -- LIBFUZZER_OPTIONS...
    local target=$1
    shift
    local -a dirs=()
    while [[ $1 != -- ]]; do
        dirs+=("$1")
        shift
    done
    shift
    local -a opts
    mapfile -t opts < <(options "$target")
    "$CARGO" +nightly fuzz run "${FUZZ_BUILD_FLAGS[@]}" "$target" "${dirs[@]}" -- "${opts[@]}" "$@"
}

case ${1:-} in
    corpus)
        ensure_cargo_fuzz
        "$CARGO" +nightly fuzz build "${FUZZ_BUILD_FLAGS[@]}"
        for target in "${TARGETS[@]}"; do
            echo "== $target: $(find "corpus/$target" -type f | wc -l) committed inputs"
            run_target "$target" "corpus/$target" -- -runs=0
        done
        ;;
    fuzz)
        shift
        (($# > 0)) && TARGETS=("$@")
        ensure_cargo_fuzz
        "$CARGO" +nightly fuzz build "${FUZZ_BUILD_FLAGS[@]}"
        for target in "${TARGETS[@]}"; do
            mkdir -p "work/$target"
            echo "== $target: ${FUZZ_SECONDS}s"
            # The first directory gets the new inputs; the committed corpus is only read.
            run_target "$target" "work/$target" "corpus/$target" -- \
                -max_total_time="$FUZZ_SECONDS" -print_final_stats=1
        done
        ;;
    cmin)
        # libFuzzer's merge (what `cargo fuzz cmin` runs), edges only (no hit counters) so
        # that a few hundred inputs per target cover what thousands do. Hand-named seeds
        # (fixtures, edge cases) are always kept; inputs named by their SHA-1 (found by
        # fuzzing) are kept only when they cover an edge the others do not.
        shift
        ensure_cargo_fuzz
        for target in "$@"; do
            keep="work/$target.keep" rest="work/$target.rest"
            rm -rf "$keep" "$rest"
            mkdir -p "$keep" "$rest" "work/$target"
            for f in "corpus/$target"/*; do
                if [[ $(basename "$f") =~ ^[0-9a-f]{40}$ ]]; then cp "$f" "$rest/"; else cp "$f" "$keep/"; fi
            done
            run_target "$target" "$keep" "$rest" "work/$target" -- -merge=1 -use_counters=0
            rm -rf "corpus/$target" "$rest"
            mv "$keep" "corpus/$target"
            echo "== $target: $(find "corpus/$target" -type f | wc -l) inputs, $(du -sb "corpus/$target" | cut -f1) bytes"
        done
        ;;
    miri)
        ensure_nightly
        if ! "$CARGO" +nightly miri --version >/dev/null 2>&1; then
            echo "miri: rustup +nightly component add miri rust-src"
            rustup +nightly component add miri rust-src
        fi
        cd ..
        # The fixture tests read tests/fixtures: Miri needs isolation off for the file system.
        # Only the pure modules: the rest of the library talks to sockets through libc,
        # which Miri cannot run.
        MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" \
            "$CARGO" +nightly miri test --lib -- json_line:: subscription:: top_level::
        ;;
    *)
        sed -n '2,14p' "${BASH_SOURCE[0]}" >&2
        exit 2
        ;;
esac
