#!/usr/bin/env bash
# make units-check: every unit file shipped in systemd/ passes
# `systemd-analyze verify` with no message at all (verify exits 0 on an unknown
# key or section, only warning: a warning fails here too).
#
# The units are examples for a machine that has the daemon they start
# (/usr/bin/myd is yours): verify runs with --root on a copy of this machine's
# unit directory, with a placeholder executable for each program a unit starts
# that this machine does not have. No running systemd is needed.
# Run from the repository root.
set -euo pipefail

fail() { echo "FAIL: $*" >&2; exit 1; }
command -v systemd-analyze >/dev/null || fail "no systemd-analyze (make deps installs it)"
shopt -s nullglob
units=(systemd/*.service systemd/*.socket systemd/*.timer systemd/*.path)
((${#units[@]} > 0)) || fail "no unit files in systemd/"

root=$(mktemp -d "${TMPDIR:-/tmp}/notif-units.XXXXXX")
trap 'rm -rf "$root"' EXIT
system_units=/usr/lib/systemd/system
[[ -d $system_units ]] || system_units=/lib/systemd/system
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system"
cp -a "$system_units" "$root/usr/lib/systemd/system"

# verify <unit files...>: prints what systemd-analyze says; fails on any message.
verify() {
    local dir=$root/etc/systemd/system out
    rm -f "$dir"/*
    cp "$@" "$dir/"
    local copies=("$dir"/*)
    # The programs the units start: the host's where it has them, else a placeholder.
    local exe
    for exe in $(sed -n 's/^Exec[A-Za-z]*=[-@:+!]*\(\/[^ ]*\).*/\1/p' "$@" | sort -u); do
        mkdir -p "$root$(dirname "$exe")"
        if [[ -x $exe ]]; then cp "$exe" "$root$exe"; else printf '#!/bin/sh\n' >"$root$exe"; chmod +x "$root$exe"; fi
    done
    out=$(systemd-analyze verify --root="$root" "${copies[@]}" 2>&1) || { echo "$out"; return 1; }
    [[ -z $out ]] || { echo "$out"; return 1; }
}

echo "== systemd-analyze verify ${units[*]}"
verify "${units[@]}" || fail "systemd-analyze verify reported the messages above"

# The check itself: a unit with an unknown key must fail it.
bad=$root/bad
mkdir -p "$bad"
cp systemd/notif-metrics.timer "$bad/"
echo 'OnUnitActiveSce=1min' >>"$bad/notif-metrics.timer"
if verify "$bad/notif-metrics.timer" >/dev/null; then fail "a misspelt key passed the check"; fi

echo "${#units[@]} unit files verified"
