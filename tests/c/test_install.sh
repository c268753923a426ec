#!/usr/bin/env bash
# `make install` into a temporary DESTDIR, then a program built against it with
# pkg-config (shared and static), then `make uninstall` removes every file; then
# the README's lines for a prefix of one's own (PKG_CONFIG_PATH, rpath).
# Run from the repository root after `make`.
set -euo pipefail

make=${MAKE:-make}
cc=${CC:-cc}
dest=$(mktemp -d "${TMPDIR:-/tmp}/notif-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT
prefix=/opt/notif-test
libdir=$prefix/lib64
version=$(awk '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { gsub(/^[^"]*"|".*$/, ""); print; exit }' Cargo.toml)
major=${version%%.*}

fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== make install DESTDIR=$dest PREFIX=$prefix LIBDIR=$libdir"
$make --no-print-directory install DESTDIR="$dest" PREFIX="$prefix" LIBDIR="$libdir"
root=$dest$prefix
lib=$dest$libdir
( cd "$dest" && find . \( -type f -o -type l \) -printf '%p %y %l\n' | sort )

[[ -f $lib/libnotif.so.$version && ! -L $lib/libnotif.so.$version ]] || fail "no libnotif.so.$version"
[[ $(readlink "$lib/libnotif.so.$major") == "libnotif.so.$version" ]] || fail "libnotif.so.$major is not a link to libnotif.so.$version"
[[ $(readlink "$lib/libnotif.so") == "libnotif.so.$major" ]] || fail "libnotif.so is not a link to libnotif.so.$major"
[[ -f $lib/libnotif.a ]] || fail "no libnotif.a"
cmp -s "$root/include/notif.h" include/notif.h || fail "installed notif.h differs"
# A default build installs no debug information (the release profile has none,
# and install takes std's debug information and LLVM bitcode out of libnotif.a).
for f in "$lib/libnotif.so.$version" "$lib/libnotif.a" "$root/bin/notif"; do
    sections=$(readelf -S --wide "$f")
    if grep -Eq '\.debug_info|\.llvmbc' <<<"$sections"; then fail "$f has debug information or bitcode"; fi
done

echo "== man pages and shell completions"
share=$root/share
for page in notif notif-tail notif-emit notif-stats; do
    f=$share/man/man1/$page.1
    [[ -f $f ]] || fail "no man page $page.1"
    warnings=$(groff -man -Tutf8 -ww -z "$f" 2>&1) || fail "groff failed on $page.1"
    [[ -z $warnings ]] || fail "$page.1: $warnings"
done
rendered=$(MANWIDTH=80 man -l "$share/man/man1/notif-tail.1" 2>/dev/null)
grep -q -- '--cursor-file' <<<"$rendered" || fail "notif-tail(1) does not describe --cursor-file"
rendered=$(MANWIDTH=80 man -l "$share/man/man1/notif.1" 2>/dev/null)
grep -q 'notif-stats(1)' <<<"$rendered" || fail "notif(1) does not name notif-stats(1)"
# Each shell completes what the command line defines: the subcommands, then a
# subcommand's options.
bash_words=$(bash -c 'source "$1"; COMP_WORDS=(notif st); COMP_CWORD=1; COMP_LINE="notif st"; COMP_POINT=8
    _notif notif st notif; printf "%s\n" "${COMPREPLY[@]}"' bash "$share/bash-completion/completions/notif")
grep -qx stats <<<"$bash_words" || fail "bash completion of 'notif st': $bash_words"
bash_words=$(bash -c 'source "$1"; COMP_WORDS=(notif stats --fo); COMP_CWORD=2; COMP_LINE="notif stats --fo"; COMP_POINT=16
    _notif notif --fo stats; printf "%s\n" "${COMPREPLY[@]}"' bash "$share/bash-completion/completions/notif")
grep -qx -- --format <<<"$bash_words" || fail "bash completion of 'notif stats --fo': $bash_words"
fish_words=$(fish -c "source '$share/fish/vendor_completions.d/notif.fish'; complete -C 'notif tail --cursor-f'")
grep -q -- '^--cursor-file' <<<"$fish_words" || fail "fish completion of 'notif tail --cursor-f': $fish_words"
zsh -n "$share/zsh/site-functions/_notif" || fail "_notif is not valid zsh"
grep -q -- "--cursor-file" "$share/zsh/site-functions/_notif" || fail "_notif does not know --cursor-file"
echo "man pages and completions OK"

echo "installed sizes: libnotif.so $(stat -c %s "$lib/libnotif.so.$version"), libnotif.a $(stat -c %s "$lib/libnotif.a"), notif $(stat -c %s "$root/bin/notif") bytes"
[[ -f $lib/pkgconfig/notif.pc ]] || fail "no notif.pc"
[[ -x $root/bin/notif ]] || fail "no bin/notif"
"$root/bin/notif" --help >/dev/null || fail "the installed notif tool does not run"
soname=$(readelf -d "$lib/libnotif.so.$version" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
[[ $soname == "libnotif.so.$major" ]] || fail "soname is '$soname', expected libnotif.so.$major"
cat "$lib/pkgconfig/notif.pc"
grep -q "^libdir=$libdir\$" "$lib/pkgconfig/notif.pc" || fail "notif.pc: wrong libdir"
grep -q "^Libs.private: .*-lpthread" "$lib/pkgconfig/notif.pc" || fail "notif.pc: no Libs.private"

# pkg-config looks in the DESTDIR; the sysroot prefixes its -I and -L paths with it.
export PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=/nonexistent
[[ $(pkg-config --modversion notif) == "$version" ]] || fail "pkg-config --modversion: $(pkg-config --modversion notif)"
echo "pkg-config --cflags --libs notif: $(pkg-config --cflags --libs notif)"

echo "== shared: cc app.c \$(pkg-config --cflags --libs notif)"
# shellcheck disable=SC2046
$cc -std=c99 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L -o "$dest/app" tests/c/install_app.c \
    $(pkg-config --cflags --libs notif)
readelf -d "$dest/app" | grep -q "NEEDED.*\[libnotif.so.$major\]" || fail "app does not need libnotif.so.$major"
LD_LIBRARY_PATH=$lib "$dest/app" || fail "app (shared) failed"

echo "== static: libnotif.a and Libs.private"
static_libs=$(pkg-config --static --libs notif | sed 's/-lnotif\b/-Wl,-Bstatic -lnotif -Wl,-Bdynamic/')
echo "$static_libs"
# shellcheck disable=SC2086
$cc -std=c99 -Wall -Wextra -Werror -pedantic -D_POSIX_C_SOURCE=200809L -o "$dest/app-static" tests/c/install_app.c \
    $(pkg-config --cflags notif) $static_libs
! readelf -d "$dest/app-static" | grep -q "libnotif" || fail "app-static still needs the shared libnotif"
"$dest/app-static" || fail "app (static) failed"
rm -f "$dest/app" "$dest/app-static"

echo "== make uninstall"
$make --no-print-directory uninstall DESTDIR="$dest" PREFIX="$prefix" LIBDIR="$libdir"
left=$(find "$dest" \( -type f -o -type l \) -print)
[[ -z $left ]] || fail "left after uninstall: $left"
echo "install, pkg-config (shared and static) and uninstall OK"

# The README's lines for a prefix of one's own, as written (make runs in the
# checkout, cc is $CC): PKG_CONFIG_PATH for the build, the rpath for the run.
echo "== README: make install PREFIX=\$HOME/.local, cc with an rpath, LD_LIBRARY_PATH without"
own=$(mktemp -d "${TMPDIR:-/tmp}/notif-own-prefix.XXXXXX")
trap 'rm -rf "$dest" "$own"' EXIT
mkdir -p "$own/home" "$own/work"
cp tests/c/install_app.c "$own/work/app.c"
awk 'index($0, "<!-- c-install: own prefix") == 1 { f = 1; next }
    f == 1 && /^```/ { f = 2; next } f == 2 && /^```/ { exit } f == 2 { print }' README.md >"$own/readme.sh"
grep -q '^make install PREFIX=\$HOME/.local$' "$own/readme.sh" || fail "README.md: no c-install block"
cat "$own/readme.sh"
root=$PWD
sed -e "s|^make |$make --no-print-directory -C '$root' |" -e "s|^cc |$cc |" "$own/readme.sh" >"$own/run.sh"
(cd "$own/work" && env -u PKG_CONFIG_SYSROOT_DIR -u PKG_CONFIG_LIBDIR -u PKG_CONFIG_PATH HOME="$own/home" \
    bash -euo pipefail "$own/run.sh") || fail "the README's own-prefix lines failed"
readelf -d "$own/work/a.out" | grep -Eq "(RUNPATH|RPATH).*\[$own/home/.local/lib\]" || fail "a.out has no rpath to \$HOME/.local/lib"
# And the problem those lines solve is real: without either, the loader stops.
if ! ldconfig -p 2>/dev/null | grep -q 'libnotif\.so\.0 '; then
    if "$own/work/app-no-rpath" 2>"$own/err"; then fail "app-no-rpath ran without LD_LIBRARY_PATH"; fi
    grep -q 'libnotif.so.0: cannot open shared object file' "$own/err" || fail "unexpected: $(cat "$own/err")"
fi
echo "the README's own-prefix lines OK"

# make install-strip: code only in the installed library and tool, the debug
# information kept apart and linked back; uninstall removes both.
echo "== make install-strip"
strip_dest=$(mktemp -d "${TMPDIR:-/tmp}/notif-install-strip.XXXXXX")
trap 'rm -rf "$dest" "$own" "$strip_dest"' EXIT
$make --no-print-directory install-strip DESTDIR="$strip_dest" PREFIX=/opt/notif-strip
slib=$strip_dest/opt/notif-strip/lib/libnotif.so.$version
[[ -f $strip_dest/opt/notif-strip/lib/debug/libnotif.so.$version.debug ]] || fail "no kept-apart debug information"
if readelf -S "$slib" | grep -q '\.debug_info'; then fail "$slib still has .debug_info"; fi
readelf -S "$slib" | grep -q '\.gnu_debuglink' || fail "$slib has no .gnu_debuglink"
readelf -d "$slib" | grep -q "Library soname: \[libnotif.so.$major\]" || fail "stripping lost the soname"
"$strip_dest/opt/notif-strip/bin/notif" --help >/dev/null || fail "the stripped notif tool does not run"
echo "libnotif.so: $(stat -L -c %s target/release/libnotif.so) bytes built, $(stat -c %s "$slib") installed stripped"
$make --no-print-directory uninstall DESTDIR="$strip_dest" PREFIX=/opt/notif-strip
left=$(find "$strip_dest" -type f -o -type l)
[[ -z $left ]] || fail "left after uninstall of install-strip: $left"
echo "install-strip OK"
