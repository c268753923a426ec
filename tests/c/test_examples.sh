#!/usr/bin/env bash
# Runs the C examples end to end against real sockets.
#
#   tests/c/test_examples.sh BIN_DIR LIBNOTIF_SO [WRAPPER...]
#
# BIN_DIR holds publisher, subscriber and dlopen; LIBNOTIF_SO is the shared
# library dlopen loads; WRAPPER (e.g. valgrind ...) runs each example.
# With RUST_EXAMPLES=DIR (cargo's target/release/examples, `cargo build
# --release --examples`), the Rust publisher and subscriber (examples/*.rs)
# run too, without the wrapper.
# Exits non-zero with a message on the first failure.
set -euo pipefail

bin=$(cd "$1" && pwd)
lib=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
shift 2
wrap=("$@")
# Under valgrind everything is slower: stretch the waits.
slow=1
[[ ${#wrap[@]} -gt 0 ]] && slow=10

tmp=$(mktemp -d "${TMPDIR:-/tmp}/notif-examples.XXXXXX")
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    local f
    for f in "$tmp"/*.err; do
        [[ -f $f ]] && { echo "--- $f:" >&2; tail -n 40 "$f" >&2; }
    done
    exit 1
}
step() { echo "== $*"; }

wait_for_socket() { # path
    local i
    for ((i = 0; i < 300 * slow; i++)); do
        [[ -S $1 ]] && return 0
        sleep 0.01
    done
    fail "no socket appeared at $1"
}

# The publisher example says "publishing on" once notif_open has returned: the
# socket is then listening with its final mode. (The file appears earlier, at
# bind(), with a umask-made mode that the library corrects before listen().)
wait_for_publisher() { # stderr-file
    local i
    for ((i = 0; i < 300 * slow; i++)); do
        grep -q "publishing on" "$1" 2>/dev/null && return 0
        sleep 0.01
    done
    fail "the publisher did not start (no 'publishing on' in $1)"
}

# Checks that a file holds N lines, each an oslo-shaped notification from the publisher example.
check_notifications() { # file count
    python3 - "$1" "$2" <<'PY'
import json, sys
path, expected = sys.argv[1], int(sys.argv[2])
lines = open(path, encoding="utf-8").read().split("\n")
assert lines[-1] == "", "output does not end with a newline"
lines = lines[:-1]
assert len(lines) == expected, f"{len(lines)} lines, expected {expected}"
seen = []
for n, line in enumerate(lines, 1):
    try:
        msg = json.loads(line)
    except ValueError as e:
        sys.exit(f"line {n} is not JSON ({e}): {line[:200]}")
    assert isinstance(msg, dict), f"line {n} is not an object"
    for key in ("message_id", "publisher_id", "event_type", "priority", "payload", "timestamp"):
        assert key in msg, f"line {n} has no {key}"
    assert msg["publisher_id"] == "compute.host1", msg["publisher_id"]
    assert msg["priority"] in ("INFO", "WARN", "ERROR"), msg["priority"]
    assert msg["event_type"].startswith("compute.instance."), msg["event_type"]
    assert json.dumps(msg, separators=(",", ":"), ensure_ascii=False) == line, f"line {n} is not compact"
    seen.append(msg["payload"]["sequence"])
assert seen == sorted(seen) and len(set(seen)) == len(seen), f"out of order or repeated: {seen}"
print(f"{len(lines)} notifications, all valid JSON, in order")
PY
}

step "publisher (200/s) and subscriber (20 messages) on a socket file"
"${wrap[@]}" "$bin/publisher" "$tmp/pub.sock" 200 2>"$tmp/publisher.err" &
pub=$!
pids+=("$pub")
wait_for_publisher "$tmp/publisher.err"
[[ -S $tmp/pub.sock ]] || fail "no socket at $tmp/pub.sock"
mode=$(stat -c %a "$tmp/pub.sock")
[[ $mode == 660 ]] || fail "the publisher's socket has mode $mode, expected 660"
"${wrap[@]}" "$bin/subscriber" "$tmp/pub.sock" 20 $((30 * slow)) >"$tmp/out1" 2>"$tmp/subscriber.err" ||
    fail "subscriber exited with $?"
check_notifications "$tmp/out1" 20 || fail "bad subscriber output"
grep -q "received 20 notifications" "$tmp/subscriber.err" || fail "subscriber did not report 20"
kill -TERM "$pub"
rc=0
wait "$pub" || rc=$?
[[ $rc -eq 0 ]] || fail "publisher exited with $rc after SIGTERM"
grep -q "stopping on signal" "$tmp/publisher.err" || fail "publisher did not see SIGTERM"
grep -q "stats: .*delivered=" "$tmp/publisher.err" || fail "publisher printed no stats"
[[ ! -e $tmp/pub.sock ]] || fail "the socket file is still there after the publisher exited"
grep "stats:" "$tmp/publisher.err"

step "publisher with COUNT exits on its own; SIGINT stops it as well"
"${wrap[@]}" "$bin/publisher" "$tmp/count.sock" 1000 30 2>"$tmp/count.err" || fail "publisher COUNT exited with $?"
grep -q "done after 30 notifications (0 failed)" "$tmp/count.err" || fail "publisher did not emit 30"
[[ ! -e $tmp/count.sock ]] || fail "socket left behind"
"${wrap[@]}" "$bin/publisher" "$tmp/int.sock" 50 2>"$tmp/int.err" &
pub=$!
pids+=("$pub")
wait_for_publisher "$tmp/int.err"
kill -INT "$pub"
rc=0
wait "$pub" || rc=$?
[[ $rc -eq 0 ]] || fail "publisher exited with $rc after SIGINT"
grep -q "stopping on signal" "$tmp/int.err" || fail "publisher did not see SIGINT"

step "abstract socket, subscriber started first (it retries until the publisher is there)"
name="@notif-examples-$$"
"${wrap[@]}" "$bin/subscriber" "$name" 5 $((30 * slow)) >"$tmp/out2" 2>"$tmp/subscriber2.err" &
sub=$!
pids+=("$sub")
sleep 0.3
"${wrap[@]}" "$bin/publisher" "$name" 100 2>"$tmp/publisher2.err" &
pub=$!
pids+=("$pub")
rc=0
wait "$sub" || rc=$?
[[ $rc -eq 0 ]] || fail "subscriber on $name exited with $rc"
kill -TERM "$pub"
rc=0
wait "$pub" || rc=$?
[[ $rc -eq 0 ]] || fail "publisher on $name exited with $rc"
check_notifications "$tmp/out2" 5 || fail "bad subscriber output on $name"

step "subscriber: SECONDS limit, nothing to connect to"
rc=0
"${wrap[@]}" "$bin/subscriber" "$tmp/nobody.sock" 1 1 >/dev/null 2>"$tmp/nobody.err" || rc=$?
[[ $rc -eq 1 ]] || fail "subscriber with no publisher exited with $rc, expected 1"
grep -q "cannot connect" "$tmp/nobody.err" || fail "no clear message when nothing listens"

step "subscriber: lines of any length (1 MiB and 3 MiB lines from a Python server)"
python3 - "$tmp/big.sock" <<'PY' &
import json, socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(1)
conn, _ = server.accept()
for size in (1 << 20, 3 << 20):
    conn.sendall(json.dumps({"fill": "x" * size}, separators=(",", ":")).encode() + b"\n")
conn.sendall(b'{"small":true}\n')
conn.close()
PY
pids+=($!)
wait_for_socket "$tmp/big.sock"
"${wrap[@]}" "$bin/subscriber" "$tmp/big.sock" 0 $((30 * slow)) >"$tmp/out3" 2>"$tmp/subscriber3.err" ||
    fail "subscriber on big lines exited with $?"
python3 - "$tmp/out3" <<'PY' || fail "big lines came out wrong"
import json, sys
lines = open(sys.argv[1]).read().split("\n")
assert lines[-1] == "" and len(lines) == 4, [len(l) for l in lines]
assert [len(json.loads(l).get("fill", "")) for l in lines[:3]] == [1 << 20, 3 << 20, 0]
print("1 MiB, 3 MiB and small lines read whole")
PY
grep -q "closed the connection" "$tmp/subscriber3.err" || fail "subscriber did not report the end of the stream"

step "dlopen: $lib"
"${wrap[@]}" "$bin/dlopen" "$lib" >"$tmp/dlopen.out" 2>"$tmp/dlopen.err" || fail "dlopen exited with $?"
cat "$tmp/dlopen.out"
grep -q '^dlopen: received {"event_type":"plugin.loaded"' "$tmp/dlopen.out" || fail "dlopen received nothing"
step "dlopen: by name through LD_LIBRARY_PATH, on a socket file"
LD_LIBRARY_PATH="$(dirname "$lib")" "${wrap[@]}" "$bin/dlopen" libnotif.so "$tmp/dl.sock" \
    >"$tmp/dlopen2.out" 2>"$tmp/dlopen2.err" || fail "dlopen libnotif.so exited with $?"
grep -q "received" "$tmp/dlopen2.out" || fail "dlopen (by name) received nothing"
step "dlopen: its default, the soname libnotif.so.0 (a directory with only that name)"
mkdir -p "$tmp/soname"
ln -sfn "$(realpath "$lib")" "$tmp/soname/libnotif.so.0"
LD_LIBRARY_PATH="$tmp/soname" "${wrap[@]}" "$bin/dlopen" >"$tmp/dlopen4.out" 2>"$tmp/dlopen4.err" ||
    fail "dlopen with its default library exited with $?: $(cat "$tmp/dlopen4.err")"
grep -q "received" "$tmp/dlopen4.out" || fail "dlopen (by soname) received nothing"
rc=0
"${wrap[@]}" "$bin/dlopen" "$tmp/no-such-lib.so" >/dev/null 2>"$tmp/dlopen3.err" || rc=$?
[[ $rc -eq 1 ]] && grep -q "cannot load" "$tmp/dlopen3.err" || fail "dlopen of a missing library: exit $rc"

if [[ -n ${RUST_EXAMPLES:-} ]]; then
    rbin=$(cd "$RUST_EXAMPLES" && pwd)
    exited_0() { # pid what
        local rc=0
        wait "$1" || rc=$?
        [[ $rc -eq 0 ]] || fail "$2 exited with $rc"
    }
    step "Rust examples: subscriber (filter, waits for the publisher), publisher, a subscriber resuming from its cursor"
    timeout 60 "$rbin/subscriber" "$tmp/rust.sock" 20 >"$tmp/rust1.out" 2>"$tmp/rust-subscriber1.err" &
    sub=$!
    pids+=("$sub")
    sleep 0.2
    "$rbin/publisher" "$tmp/rust.sock" 1500 250 2>"$tmp/rust-publisher.err" &
    pub=$!
    pids+=("$pub")
    exited_0 "$sub" "the Rust subscriber"
    check_notifications "$tmp/rust1.out" 20 || fail "bad Rust subscriber output"
    cursor=$(sed -n 's/^subscriber: received 20 notifications; cursor //p' "$tmp/rust-subscriber1.err")
    [[ -n $cursor && $cursor != none ]] || fail "the Rust subscriber printed no cursor"
    timeout 60 "$rbin/subscriber" "$tmp/rust.sock" 10 "$cursor" >"$tmp/rust2.out" 2>"$tmp/rust-subscriber2.err" ||
        fail "the Rust subscriber resuming after $cursor exited with $?"
    check_notifications "$tmp/rust2.out" 10 || fail "bad output from the Rust subscriber resuming"
    python3 - "$tmp/rust1.out" "$tmp/rust2.out" <<'PY' || fail "the resumed subscriber did not start right after its cursor"
import json, sys
first, second = ([json.loads(l)["payload"]["sequence"] for l in open(p)] for p in sys.argv[1:])
assert second == list(range(first[-1] + 1, first[-1] + 11)), (first[-1], second)
print(f"resumed after sequence {first[-1]}: {second[0]} to {second[-1]}, nothing missed")
PY
    exited_0 "$pub" "the Rust publisher"
    grep -q "done after 1500 notifications (0 failed)" "$tmp/rust-publisher.err" || fail "the Rust publisher did not emit 1500"
    grep -q "stats: .*delivered=" "$tmp/rust-publisher.err" || fail "the Rust publisher printed no stats"
    [[ ! -e $tmp/rust.sock ]] || fail "the Rust publisher left its socket file"
fi

echo "examples OK${wrap[*]:+ (under ${wrap[0]})}"
