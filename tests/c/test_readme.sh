#!/usr/bin/env bash
# The C snippets of README.md and docs/*.md, compiled and linked against
# include/notif.h and libnotif as written (each becomes the body of a function
# of its own), and the socket-activation snippet (docs/operating.md) run: with
# LISTEN_PID naming this process it adopts descriptor 3, with LISTEN_PID naming
# another it does not.
#
#   tests/c/test_readme.sh [BUILD_DIR]     (after make: BUILD_DIR/lib has libnotif.so)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
b=${1:-build}
cc=${CC:-cc}
work=$(mktemp -d "${TMPDIR:-/tmp}/notif-readme.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

python3 - "$work/snippets.c" README.md docs/*.md <<'PY'
import re, sys
blocks = []
for name in sys.argv[2:]:
    found = re.findall(r"^```c\n(.*?)^```", open(name).read(), re.S | re.M)
    print("%s: %d C snippets" % (name, len(found)))
    blocks += found
out = ['#include <stdio.h>', '#include <stdlib.h>', '#include <string.h>', '#include <unistd.h>',
       '#include <notif.h>', '', 'static unsigned reader_gid; /* the security snippet\'s */', '']
names = []
for i, block in enumerate(blocks):
    body = [l for l in block.splitlines() if not l.startswith("#include")]
    name = "snippet_%d" % i
    names.append(name)
    out.append("int %s(void)\n{" % name)
    out += ["    " + l for l in body]
    if "LISTEN_PID" in block:
        out.append('    printf("activated=%d handle=%d\\n", activated, h != NULL);')
        out.append('    if (!h)\n        fprintf(stderr, "%s\\n", notif_last_error());')
        out.append("    notif_close(h);")
    out.append("    return 0;\n}\n")
# A snippet that shows its #include lines must compile with those alone: a
# reader pastes them as they are.
for i, block in enumerate(blocks):
    includes = [l for l in block.splitlines() if l.startswith("#include")]
    if not includes:
        continue
    body = [l for l in block.splitlines() if not l.startswith("#include")]
    alone = includes + ["", "int snippet(void);", "int snippet(void)\n{"] + ["    " + l for l in body]
    alone += ["    return 0;", "}", "", "int main(void)\n{\n    return snippet();\n}"]
    with open("%s/alone_%d.c" % (sys.argv[1].rsplit("/", 1)[0], i), "w") as f:
        f.write("\n".join(alone) + "\n")
out.append("int main(int argc, char **argv)\n{")
for i, block in enumerate(blocks):
    if "LISTEN_PID" in block:
        out.append('    if (argc > 1 && strcmp(argv[1], "activation") == 0)\n        return snippet_%d();' % i)
out.append("    (void)argc; (void)argv;\n    return 0;\n}")
open(sys.argv[1], "w").write("\n".join(out) + "\n")
print("%d C snippets in README.md and docs/" % len(blocks))
if len(blocks) < 4 or not any("LISTEN_PID" in b for b in blocks):
    sys.exit("README.md, docs/: expected at least 4 C snippets, one of them the socket-activation one")
PY

# Unused variables are the fragments' nature (h in a snippet that stops at open).
$cc -std=c99 -Wall -Wextra -Werror -pedantic -Wno-unused-variable -Wno-unused-but-set-variable \
    -D_POSIX_C_SOURCE=200809L -Iinclude -o "$work/snippets" "$work/snippets.c" \
    -L"$b/lib" -lnotif -Wl,-rpath,"$PWD/$b/lib" || { cat -n "$work/snippets.c"; fail "a snippet of README.md or docs/ does not compile"; }
echo "compiled and linked"
for alone in "$work"/alone_*.c; do
    [[ -e $alone ]] || fail "no README C snippet shows its #include lines"
    $cc -std=c99 -Wall -Wextra -Werror -pedantic -Wno-unused-variable -Wno-unused-but-set-variable \
        -D_POSIX_C_SOURCE=200809L -Iinclude -o "${alone%.c}" "$alone" \
        -L"$b/lib" -lnotif -Wl,-rpath,"$PWD/$b/lib" ||
        { cat -n "$alone"; fail "a README snippet does not compile with only the #include lines it shows"; }
done
echo "snippets with their own #include lines compile with those alone"

# Socket activation, as systemd does it: a listening socket on descriptor 3,
# LISTEN_FDS=1, LISTEN_PID the pid of the process that exec()s the program.
activate() { # $1: self or other
    python3 - "$1" "$work/a.sock" "$work/snippets" <<'PY'
import os, socket, sys
mode, path, prog = sys.argv[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(8)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)  # dup2 onto itself would leave close-on-exec set
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid() if mode == "self" else os.getppid())
os.execv(prog, [prog, "activation"])
PY
}
out=$(activate self) || fail "activation snippet (LISTEN_PID ours) failed: $out"
[[ $out == "activated=1 handle=1" ]] || fail "LISTEN_PID ours: got '$out'"
rm -f "$work/a.sock"
out=$(activate other 2>/dev/null || true)
[[ $out == activated=0* ]] || fail "LISTEN_PID of another process: got '$out'"
echo "socket activation: adopts descriptor 3 only when LISTEN_PID is its own"
# make demo's hints read the socket as the README does: one way (socat -u).
# A two-way socat sends what is typed to the publisher, which disconnects the
# reader with bad_request at the first Enter.
grep -q 'socat -u UNIX-CONNECT:' README.md || fail "README.md: no socat -u line"
bad=$(grep -n 'socat' examples/c/demo.sh | grep -v 'socat -u\|no socat\|install socat' || true)
[[ -z $bad ]] || fail "examples/c/demo.sh suggests a socat that is not one-way (-u): $bad"
echo "make demo's socat hint is one-way, as in the README"
# The minimum Rust version, wherever README.md states one, is Cargo.toml's.
msrv=$(awk -F'"' '/^rust-version *=/ { print $2; exit }' Cargo.toml)
stated=$(grep -ioE "minimum Rust( version)?( is|:) [0-9]+\.[0-9]+" README.md | grep -oE "[0-9]+\.[0-9]+$" | sort -u)
[[ -n $stated ]] || fail "README.md states no minimum Rust version"
[[ $stated == "$msrv" ]] || fail "README.md states minimum Rust $(echo $stated) but Cargo.toml says $msrv"
echo "the minimum Rust version stated is Cargo.toml's ($msrv)"
echo "README C snippets OK"
