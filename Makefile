# notif: build, test, demo and install. GNU make.
#
#   make            the library (cargo build --release) and the C examples in build/
#   make test       every check: Rust tests, header, fmt, clippy, C tests, examples,
#                   valgrind, ASan/UBSan, install; ends with "N passed, M failed"
#   make demo       a publisher and a subscriber talking for a few seconds
#   make soak       the fault-injection tests (tests/fault_*.rs) in their long versions
#   make fuzz       every cargo-fuzz target (fuzz/) for FUZZ_SECONDS (60) each, then make miri
#   make msrv       the library checked with its minimum Rust (Cargo.toml rust-version; rustup)
#   make header     regenerate include/notif.h (and the Go copy) with cbindgen (tools/header)
#   make miri       the json_line and subscription unit tests under Miri (nightly)
#   make bench      notif beside ZeroMQ PUB/SUB and raw sockets, one table (bench/; BENCH_QUICK=1: seconds)
#   make install    (library, header, notif.pc, the notif tool) PREFIX=/usr/local BINDIR=$(PREFIX)/bin LIBDIR=$(PREFIX)/lib INCLUDEDIR=$(PREFIX)/include DESTDIR=
#   make install-strip  the same, with debug information kept apart (LIBDIR/debug, BINDIR/.debug)
#   make uninstall  the same variables
#   make deps       the tools `make test` needs (apt-get, rustup components); idempotent
#   make clean

.DEFAULT_GOAL := all
SHELL := bash
MAKEFLAGS += --no-builtin-rules

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR ?=

CARGO ?= cargo
CC ?= cc
CXX ?= g++
CFLAGS ?= -g -O2
CXXFLAGS ?= -g -O2
LDFLAGS ?=
INSTALL ?= install
VALGRIND ?= valgrind

# The version in Cargo.toml's [package] section; the soname carries its major number.
VERSION := $(shell awk '/^\[/ { p = ($$0 == "[package]") } p && /^version *=/ { gsub(/^[^"]*"|".*$$/, ""); print; exit }' Cargo.toml)
MAJOR := $(word 1,$(subst ., ,$(VERSION)))
SONAME := libnotif.so.$(MAJOR)
# The library's minimum Rust (rust-version in Cargo.toml's [package], stated there only).
MSRV := $(shell awk '/^\[/ { p = ($$0 == "[package]") } p && /^rust-version *=/ { gsub(/^[^"]*"|".*$$/, ""); print; exit }' Cargo.toml)
REALNAME := libnotif.so.$(VERSION)

REL := target/release
LIB_SO := $(REL)/libnotif.so
LIB_A := $(REL)/libnotif.a
# The notif command-line tool (tools/notif, a workspace member).
NOTIF_BIN := $(REL)/notif
HEADER := include/notif.h
# The Go module's own copy of the header (so that `go mod vendor` carries it).
GO_HEADER := bindings/go/notif.h
B := build
# build/lib holds libnotif.so and libnotif.so.0 as links to target/release: the
# programs in build/ find the library there through their $ORIGIN/lib rpath.
LIBLINKS := $(B)/lib/libnotif.so $(B)/lib/$(SONAME)
NATIVE_LIBS_FILE := $(B)/native-static-libs.txt
# What std needs when libnotif.a is linked statically, in case rustc cannot tell.
NATIVE_LIBS_DEFAULT := -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

STRICT_C := -std=c99 -Wall -Wextra -Werror -pedantic
STRICT_CXX := -std=c++11 -Wall -Wextra -Werror -pedantic
ALL_CFLAGS := $(STRICT_C) -D_POSIX_C_SOURCE=200809L -Iinclude $(CFLAGS)
LINK_NOTIF := -L$(B)/lib -lnotif -Wl,-rpath,'$$ORIGIN/lib'
TEST_DEFS := -DCARGO_VERSION='"$(VERSION)"' -DFIXTURES_DIR='"$(CURDIR)/tests/fixtures"'
SANITIZE := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

EXAMPLES := $(B)/publisher $(B)/subscriber $(B)/subscriber_lib $(B)/dlopen
C_TESTS := $(B)/test_api $(B)/test_sigpipe $(B)/test_subscriber $(B)/test_write_through $(B)/header_cpp $(B)/test_header_alone
ASAN_BINS := $(B)/asan/test_api $(B)/asan/test_sigpipe $(B)/asan/test_write_through $(B)/asan/test_api_shared \
             $(B)/asan/publisher $(B)/asan/subscriber $(B)/asan/dlopen \
             $(B)/asan/test_subscriber $(B)/asan/subscriber_lib

.PHONY: all lib examples c-tests asan-tests test soak fuzz miri msrv deps demo bench install install-strip uninstall clean header header-check go-header-check FORCE

all: lib examples $(NATIVE_LIBS_FILE)

lib: $(LIB_SO) $(LIB_A) $(LIBLINKS) $(NOTIF_BIN) $(GO_HEADER)

examples: $(EXAMPLES)

c-tests: $(C_TESTS)

asan-tests: $(ASAN_BINS)

# ------------------------------------------------------------------ the library
# cargo decides what is out of date; make re-reads the timestamps afterwards, so
# the C programs are relinked only when the library really changed. `cargo build`
# builds the workspace's default members (the library and the notif tool), not
# tools/header: include/notif.h is committed (make header regenerates it).
$(LIB_SO) $(LIB_A) $(NOTIF_BIN) &: FORCE
	$(CARGO) build --release

$(GO_HEADER): $(HEADER)
	cp $(HEADER) $@

$(LIBLINKS): | $(B)/lib
	ln -sfn ../../$(LIB_SO) $@

$(B) $(B)/lib $(B)/asan:
	mkdir -p $@

# The native libraries libnotif.a needs (for notif.pc's Libs.private and the
# static links), as rustc reports them. cargo replays the note when the static
# library is already built.
$(NATIVE_LIBS_FILE): Cargo.toml Cargo.lock | $(B)
	@libs=$$($(CARGO) rustc --release --lib --crate-type staticlib -- --print native-static-libs 2>&1 \
	    | sed -n 's/.*native-static-libs: //p' | tail -n 1); \
	if [ -z "$$libs" ]; then \
	    echo "note: rustc did not report native-static-libs; using $(NATIVE_LIBS_DEFAULT)"; \
	    libs='$(NATIVE_LIBS_DEFAULT)'; \
	fi; \
	echo "$$libs" > $@; echo "libnotif.a needs: $$libs"

# ------------------------------------------------------------------ C programs
$(B)/publisher $(B)/subscriber $(B)/subscriber_lib: $(B)/%: examples/c/%.c $(HEADER) $(LIB_SO) | $(LIBLINKS)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LINK_NOTIF) $(LDFLAGS)

# dlopen does not link libnotif: it loads it at run time.
$(B)/dlopen: examples/c/dlopen.c $(HEADER) | $(B)
	$(CC) $(ALL_CFLAGS) -o $@ $< -ldl $(LDFLAGS)

$(B)/test_api $(B)/test_sigpipe $(B)/test_subscriber $(B)/test_write_through: $(B)/%: tests/c/%.c tests/c/testlib.h $(HEADER) $(LIB_SO) Cargo.toml | $(LIBLINKS)
	$(CC) $(ALL_CFLAGS) -pthread $(TEST_DEFS) -o $@ $< $(LINK_NOTIF) $(LDFLAGS)

$(B)/test_header_alone: tests/c/test_header_alone.c $(HEADER) $(LIB_SO) | $(LIBLINKS)
	$(CC) $(STRICT_C) -Iinclude $(CFLAGS) -o $@ $< $(LINK_NOTIF) $(LDFLAGS)

$(B)/header_cpp: tests/c/header_cpp.cpp $(HEADER) $(LIB_SO) | $(LIBLINKS)
	$(CXX) $(STRICT_CXX) -Iinclude $(CXXFLAGS) -o $@ $< $(LINK_NOTIF) $(LDFLAGS)

# ASan + UBSan builds link libnotif.a (and test_api also libnotif.so, below). The
# Rust code itself is not instrumented; ASan still intercepts its malloc/free, so
# LSan sees its leaks and ASan checks the C side's use of what it returns.
$(B)/asan/test_api $(B)/asan/test_sigpipe $(B)/asan/test_subscriber $(B)/asan/test_write_through: $(B)/asan/%: tests/c/%.c tests/c/testlib.h $(HEADER) $(LIB_A) $(NATIVE_LIBS_FILE) Cargo.toml | $(B)/asan
	$(CC) $(ALL_CFLAGS) $(SANITIZE) -pthread $(TEST_DEFS) -o $@ $< $(LIB_A) $$(cat $(NATIVE_LIBS_FILE)) $(LDFLAGS)

# The same test against the shared library (the cdylib): found through the rpath,
# no LD_LIBRARY_PATH needed.
$(B)/asan/test_api_shared: tests/c/test_api.c tests/c/testlib.h $(HEADER) $(LIB_SO) Cargo.toml | $(B)/asan $(LIBLINKS)
	$(CC) $(ALL_CFLAGS) $(SANITIZE) -pthread $(TEST_DEFS) -o $@ $< -L$(B)/lib -lnotif -Wl,-rpath,'$$ORIGIN/../lib' $(LDFLAGS)

$(B)/asan/publisher $(B)/asan/subscriber $(B)/asan/subscriber_lib: $(B)/asan/%: examples/c/%.c $(HEADER) $(LIB_A) $(NATIVE_LIBS_FILE) | $(B)/asan
	$(CC) $(ALL_CFLAGS) $(SANITIZE) -o $@ $< $(LIB_A) $$(cat $(NATIVE_LIBS_FILE)) $(LDFLAGS)

$(B)/asan/dlopen: examples/c/dlopen.c $(HEADER) | $(B)/asan
	$(CC) $(ALL_CFLAGS) $(SANITIZE) -o $@ $< -ldl $(LDFLAGS)

# ------------------------------------------------------------------ checks
# The header is committed, generated by cbindgen (tools/header, a workspace
# member that `make` does not build). make header rewrites it and the Go copy;
# header-check (in make test) generates a fresh one and fails on any difference.
header:
	$(CARGO) run -q -p notif-header -- $(HEADER)
	cp $(HEADER) $(GO_HEADER)

header-check: | $(B)
	@$(CARGO) run -q -p notif-header -- $(B)/notif.h.generated
	@if diff -u $(HEADER) $(B)/notif.h.generated; then \
	    echo "$(HEADER) is what cbindgen generates from src/capi"; \
	else \
	    echo; \
	    echo "$(HEADER) differs from what cbindgen generates from src/capi (diff above: - committed, + generated)."; \
	    echo "Run make header, review the change and commit $(HEADER) and $(GO_HEADER)."; \
	    exit 1; \
	fi

# The Go module's copy of the header must be the committed include/notif.h
# (make copies it; this fails until the copy is committed too).
go-header-check: $(GO_HEADER)
	@if cmp -s $(HEADER) $(GO_HEADER) && git diff --quiet -- $(GO_HEADER); then \
	    echo "$(GO_HEADER) is $(HEADER)"; \
	else \
	    echo "$(GO_HEADER) differs from $(HEADER) or is not committed: run make and commit $(GO_HEADER)"; \
	    git --no-pager diff --stat -- $(GO_HEADER); exit 1; \
	fi

# The library builds with its stated minimum Rust (rustup installs that toolchain,
# minimal profile, when it is missing; its own target directory). clippy's
# incompatible_msrv lint reads the same rust-version.
msrv:
	@[ -n "$(MSRV)" ] || { echo "no rust-version in Cargo.toml's [package]" >&2; exit 1; }
	@rustup toolchain list | grep -q '^$(MSRV)[.-]' || rustup toolchain install $(MSRV) --profile minimal
	$(CARGO) +$(MSRV) check -p notif --lib --locked --target-dir target/msrv
	@echo "the library builds with Rust $(MSRV), its rust-version"

# valgrind: only errors and definite/indirect leaks count; Rust's std keeps some
# thread-locals that valgrind calls "still reachable" or "possibly lost".
VALGRIND_RUN := $(VALGRIND) -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect
# LSan stays on (it reports no leak from the Rust side: checked by hand with a
# deliberate leak, which it does catch in Rust allocations too).
ASAN_ENV := ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
RESULTS := $(B)/test-results
# subscriber_lib (the command after it: wrapper and binary) against the publisher
# example, which starts at the same time: it must connect, get 5 notifications, exit 0.
SUBLIB_E2E = bash -c 'd=$$(mktemp -d); $(B)/publisher "$$d/s.sock" 200 2>/dev/null & p=$$!; \
    "$$@" "$$d/s.sock" "{\"markers\":true}" 5 60 >/dev/null; rc=$$?; kill $$p; wait $$p; rm -rf "$$d"; exit $$rc' sublib
CHECK = tests/c/check.sh $(RESULTS)

test: deps
	@rm -rf $(RESULTS); mkdir -p $(RESULTS)
	@echo "== make test: logs in $(RESULTS)/logs/"
	@$(CHECK) c build --timeout 480 -- $(MAKE) --no-print-directory all c-tests asan-tests
	@$(CHECK) rust header-check -- $(MAKE) --no-print-directory header-check
	@$(CHECK) rust msrv --timeout 480 -- $(MAKE) --no-print-directory msrv
	@$(CHECK) c go-header-check -- $(MAKE) --no-print-directory go-header-check
	@$(CHECK) rust cargo-test --timeout 480 -- $(CARGO) test --workspace --no-fail-fast
	@$(CHECK) rust cargo-fmt -- $(CARGO) fmt --all --check
	@$(CHECK) rust cargo-clippy -- $(CARGO) clippy --workspace --all-targets -- -D warnings
	@$(CHECK) rust fuzz-corpus --timeout 1200 -- fuzz/run.sh corpus
	@$(CHECK) c header-alone-c99 -- $(CC) $(STRICT_C) -fsyntax-only -x c $(HEADER)
	@$(CHECK) c header-alone-c99-link -- $(B)/test_header_alone
	@$(CHECK) c header-cpp11 -- $(B)/header_cpp
	@$(CHECK) c test_api -- $(B)/test_api
	@$(CHECK) c test_sigpipe -- $(B)/test_sigpipe
	@$(CHECK) c test_subscriber -- $(B)/test_subscriber
	@$(CHECK) c test_write_through -- $(B)/test_write_through
	@$(CHECK) c subscriber_lib -- $(SUBLIB_E2E) $(B)/subscriber_lib
	@$(CHECK) c examples -- tests/c/test_examples.sh $(B) $(LIB_SO)
	@$(CHECK) c readme-c-snippets -- env CC="$(CC)" tests/c/test_readme.sh $(B)
	@$(CHECK) c python --timeout 900 -- tests/python/run.sh
	@$(CHECK) c go --timeout 600 -- bindings/go/test.sh
	@$(CHECK) c bench-smoke --timeout 240 -- env BENCH_QUICK=1 $(MAKE) --no-print-directory bench
	@$(CHECK) c valgrind-test_api -- env TEST_TIMEOUT_SCALE=20 $(VALGRIND_RUN) $(B)/test_api
	@$(CHECK) c valgrind-test_sigpipe -- env TEST_TIMEOUT_SCALE=20 $(VALGRIND_RUN) $(B)/test_sigpipe
	@$(CHECK) c valgrind-test_subscriber -- env TEST_TIMEOUT_SCALE=20 $(VALGRIND_RUN) $(B)/test_subscriber
	@$(CHECK) c valgrind-test_write_through -- env TEST_TIMEOUT_SCALE=20 $(VALGRIND_RUN) $(B)/test_write_through
	@$(CHECK) c valgrind-subscriber_lib -- $(SUBLIB_E2E) $(VALGRIND_RUN) $(B)/subscriber_lib
	@$(CHECK) c valgrind-header_cpp -- $(VALGRIND_RUN) $(B)/header_cpp
	@$(CHECK) c valgrind-examples -- tests/c/test_examples.sh $(B) $(LIB_SO) $(VALGRIND_RUN)
	@$(CHECK) c asan-test_api -- env $(ASAN_ENV) $(B)/asan/test_api
	@$(CHECK) c asan-test_api-shared -- env $(ASAN_ENV) $(B)/asan/test_api_shared
	@$(CHECK) c asan-test_sigpipe -- env $(ASAN_ENV) $(B)/asan/test_sigpipe
	@$(CHECK) c asan-test_subscriber -- env $(ASAN_ENV) $(B)/asan/test_subscriber
	@$(CHECK) c asan-test_write_through -- env $(ASAN_ENV) $(B)/asan/test_write_through
	@$(CHECK) c asan-subscriber_lib -- env $(ASAN_ENV) $(SUBLIB_E2E) $(B)/asan/subscriber_lib
	@$(CHECK) c asan-examples -- env $(ASAN_ENV) tests/c/test_examples.sh $(B)/asan $(LIB_SO)
	@$(CHECK) c install -- env MAKE="$(MAKE)" CC="$(CC)" tests/c/test_install.sh
	@tests/c/summary.sh $(RESULTS)

# The fault-injection tests with NOTIF_SOAK=1: 10,000 churn connections, more
# killed subscribers and forks, longer signal storms. Every test bounds its own
# time; timeout bounds the whole run. (`make test` runs their short versions.)
soak:
	NOTIF_SOAK=1 timeout -k 10 1800 $(CARGO) test --no-fail-fast --test 'fault_*'

# fuzz/run.sh runs `cargo +nightly fuzz` (and installs cargo-fuzz, the nightly
# toolchain and the miri component when they are missing). make test replays
# the committed corpus only (fuzz-corpus check).
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh fuzz
	fuzz/run.sh miri

miri:
	fuzz/run.sh miri

# The tools `make test` uses. Installs only what is missing (apt-get, as root or
# with sudo), so it is quick when everything is there.
deps:
	@tests/c/deps.sh

# ------------------------------------------------------------------ demo
demo: all
	@examples/c/demo.sh $(B) demo-run

# ------------------------------------------------------------------ benchmark
# bench/bench.mk builds and runs it (it needs libzmq3-dev and says how to get it).
# The oslo.messaging driver's cost per notification (noop, log, unix idle and with a
# reading subscriber) and the two ratios, in the Python tests' venv.
.PHONY: bench-oslo
bench-oslo: lib
	tests/python/run.sh --bench

# The Python package's sdist and manylinux wheel (py3-none: ctypes, any CPython 3)
# into dist/, built with setuptools-rust from the sdist, checked by auditwheel.
.PHONY: wheel
wheel:
	tests/python/run.sh --wheel dist

bench: lib
	@$(MAKE) --no-print-directory -f bench/bench.mk run

# ------------------------------------------------------------------ install
# Installs what `make` built; it does not build (so `sudo make install` needs no cargo).
# The release profile has no debug information (Cargo.toml), and cargo strips
# std's from the shared library and the tool; libnotif.a is installed without
# std's debug information and LLVM bitcode either (the bitcode serves only
# Rust's cross-crate LTO, never a C linker): 24 MB built, about 6 MB installed.
OBJCOPY ?= objcopy
install:
	@for f in $(LIB_SO) $(LIB_A) $(HEADER) $(NOTIF_BIN); do \
	    [ -f "$$f" ] || { echo "$$f is missing: run 'make' first" >&2; exit 1; }; \
	done
	@soname=$$(readelf -d $(LIB_SO) 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p'); \
	if [ "$$soname" != "$(SONAME)" ]; then \
	    echo "$(LIB_SO) has soname '$$soname', expected $(SONAME): build.rs must pass -Wl,-soname,$(SONAME)" >&2; \
	    exit 1; \
	fi
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR)
	$(INSTALL) -m 0755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/$(REALNAME)
	ln -sfn $(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sfn $(SONAME) $(DESTDIR)$(LIBDIR)/libnotif.so
	$(OBJCOPY) --strip-debug --remove-section=.llvmbc --remove-section=.llvmcmd $(LIB_A) $(DESTDIR)$(LIBDIR)/libnotif.a
	chmod 0644 $(DESTDIR)$(LIBDIR)/libnotif.a
	$(INSTALL) -m 0644 $(HEADER) $(DESTDIR)$(INCLUDEDIR)/notif.h
	$(INSTALL) -d $(DESTDIR)$(BINDIR)
	$(INSTALL) -m 0755 $(NOTIF_BIN) $(DESTDIR)$(BINDIR)/notif
	@libs=$$(cat $(NATIVE_LIBS_FILE) 2>/dev/null || echo '$(NATIVE_LIBS_DEFAULT)'); \
	echo "notif.pc.in -> $(DESTDIR)$(PKGCONFIGDIR)/notif.pc (Libs.private: $$libs)"; \
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' -e "s|@LIBS_PRIVATE@|$$libs|g" notif.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/notif.pc && \
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/notif.pc
	@echo "installed libnotif $(VERSION) into $(DESTDIR)$(PREFIX)$(if $(DESTDIR),, (run ldconfig if $(LIBDIR) is a system library directory))"

# install-strip (the GNU convention): the same, with the symbols not needed for
# linking removed from the shared library and the notif tool, and whatever debug
# information a build had (CARGO_PROFILE_RELEASE_DEBUG=1 make) kept apart, in
# $(LIBDIR)/debug/libnotif.so.VERSION.debug and $(BINDIR)/.debug/notif.debug,
# linked back with a .gnu_debuglink (gdb finds them).
install-strip: install
	$(INSTALL) -d $(DESTDIR)$(LIBDIR)/debug $(DESTDIR)$(BINDIR)/.debug
	@set -e; for pair in "$(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/debug/$(REALNAME).debug" \
	                     "$(DESTDIR)$(BINDIR)/notif $(DESTDIR)$(BINDIR)/.debug/notif.debug"; do \
	    set -- $$pair; \
	    $(OBJCOPY) --only-keep-debug "$$1" "$$2"; chmod 0644 "$$2"; \
	    $(OBJCOPY) --strip-debug --strip-unneeded --add-gnu-debuglink="$$2" "$$1"; \
	    echo "stripped $$1 (debug information in $$2)"; \
	done

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/debug/$(REALNAME).debug $(DESTDIR)$(BINDIR)/.debug/notif.debug
	-rmdir $(DESTDIR)$(LIBDIR)/debug $(DESTDIR)$(BINDIR)/.debug 2>/dev/null
	rm -f $(DESTDIR)$(LIBDIR)/$(REALNAME) $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libnotif.so \
	    $(DESTDIR)$(LIBDIR)/libnotif.a $(DESTDIR)$(INCLUDEDIR)/notif.h $(DESTDIR)$(PKGCONFIGDIR)/notif.pc \
	    $(DESTDIR)$(BINDIR)/notif

# ------------------------------------------------------------------ clean
clean:
	rm -rf $(B) demo-run
	$(CARGO) clean

FORCE:
