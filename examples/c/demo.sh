#!/usr/bin/env bash
# `make demo`: a publisher and a subscriber talking over a Unix socket for a
# few seconds. Needs only what `make` built: no socat, no jq.
#
#   examples/c/demo.sh BUILD_DIR RUN_DIR
set -euo pipefail

bin=${1:-build}
run=${2:-demo-run}
sock=$run/notifications.sock
rate=5
seconds=5

mkdir -p "$run"
if [[ -t 1 ]]; then
    say() { printf '\n\033[1m%s\033[0m\n' "$*"; }
else
    say() { printf '\n%s\n' "$*"; }
fi

say "1. Starting the publisher daemon: $bin/publisher $sock $rate"
echo "   (a C program using libnotif: notif_open_with + notif_emit, $rate notifications a second)"
"$bin/publisher" "$sock" "$rate" &
pub=$!
stop_publisher() {
    if kill -0 "$pub" 2>/dev/null; then
        kill -TERM "$pub" 2>/dev/null || true
        wait "$pub" || true
    fi
}
trap stop_publisher EXIT
trap 'exit 130' INT TERM

# Ready once the socket has the mode the publisher asks for (0660): the library
# sets it after bind() and before listen().
for _ in $(seq 100); do
    [[ -S $sock && $(stat -c %a "$sock" 2>/dev/null) == 660 ]] && break
    kill -0 "$pub" 2>/dev/null || { echo "the publisher did not start (see above)"; exit 1; }
    sleep 0.05
done
[[ -S $sock ]] || { echo "no socket appeared at $sock"; exit 1; }
ls -l "$sock"

say "2. Subscribing for $seconds seconds: $bin/subscriber $sock 0 $seconds"
echo "   (plain sockets, no libnotif: every line is one compact JSON notification)"
echo
"$bin/subscriber" "$sock" 0 "$seconds"

say "3. Stopping the publisher with SIGTERM; it prints its counters and removes the socket"
kill -TERM "$pub"
status=0
wait "$pub" || status=$?
trap - EXIT
[[ -e $sock ]] && echo "warning: $sock is still there" || echo "publisher exited ($status); $sock removed"

say "Try it yourself"
cat <<EOT
  In one terminal, start the publisher (Ctrl-C stops it):
      $bin/publisher $sock 5
  In another, watch the notifications arrive:
      socat -u UNIX-CONNECT:$sock - | jq
  (apt-get install socat jq if you do not have them), or with what is here already:
      $bin/subscriber $sock | python3 -m json.tool --json-lines
  or with the notif tool, which can also filter:
      target/release/notif tail --pretty --event-type 'compute.instance.*' $sock
  Any number of subscribers may connect at once; each gets every notification.
EOT
