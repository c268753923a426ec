#!/usr/bin/env bash
# Installs what `make test` needs and the machine lacks: pkg-config, valgrind,
# a C++ compiler, systemd-analyze, groff, zsh and fish, the ASan/UBSan runtimes (apt-get, as root or through sudo),
# and the clippy and rustfmt components (rustup). Idempotent: when everything
# is there it only looks, which takes a fraction of a second.
set -euo pipefail

missing=()
have() { command -v "$1" >/dev/null 2>&1; }

have pkg-config || missing+=(pkg-config)
have valgrind || missing+=(valgrind)
have "${CXX:-g++}" || missing+=(g++)
have python3 || missing+=(python3)
have readelf || missing+=(binutils)
have timeout || missing+=(coreutils)
# The shipped unit files (systemd/) are checked with systemd-analyze verify, the
# generated man pages with groff, the completions with each shell's parser.
have systemd-analyze || missing+=(systemd)
have groff || missing+=(groff-base)
have zsh || missing+=(zsh)
have fish || missing+=(fish)
cc=${CC:-cc}
if have "$cc" && ! echo 'int main(void) { return 0; }' |
    "$cc" -fsanitize=address,undefined -x c - -o /dev/null >/dev/null 2>&1; then
    # The sanitizer runtimes come with gcc's development package on Debian/Ubuntu.
    major=$("$cc" -dumpversion | cut -d. -f1)
    missing+=("libgcc-$major-dev")
fi

if ((${#missing[@]} > 0)); then
    echo "deps: installing ${missing[*]}"
    if ! have apt-get; then
        echo "deps: no apt-get here: install ${missing[*]} by hand" >&2
        exit 1
    fi
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if have sudo && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "deps: not root and no password-less sudo: install ${missing[*]} by hand" >&2
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi

for component in rustfmt clippy; do
    case $component in
        rustfmt) probe=(cargo fmt --version) ;;
        clippy) probe=(cargo clippy --version) ;;
    esac
    if ! "${probe[@]}" >/dev/null 2>&1; then
        if ! have rustup; then
            echo "deps: cargo has no $component and there is no rustup to add it" >&2
            exit 1
        fi
        echo "deps: rustup component add $component"
        rustup component add "$component"
    fi
done
