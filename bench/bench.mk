# The benchmark (bench/README.md). Run from the repository root by `make bench`,
# after the library is built:  $(MAKE) -f bench/bench.mk run
# BENCH_QUICK=1: every measurement with tiny counts (seconds), to check it runs.

CC ?= cc
B := build
BIN := $(B)/bench/notif_bench
OUT := bench/results
BENCH_CFLAGS := -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wno-format-truncation -Iinclude -Ibench/common
# What both C programs share (bench/common/harness.h).
HARNESS := bench/common/harness.c bench/common/harness.h
# notif_bench's parts (bench/notif_bench/notif_bench.h lists them).
BENCH_SRC := $(wildcard bench/notif_bench/*.c) bench/common/harness.c
BENCH_HDR := bench/notif_bench/notif_bench.h bench/common/harness.h
# build/lib holds the links to target/release/libnotif.so (made by `make lib`).
BENCH_LIBS := -L$(B)/lib -lnotif -Wl,-rpath,'$$ORIGIN/../lib' -lzmq

QUICK := $(filter-out 0,$(BENCH_QUICK))
RESULT := $(OUT)/$(if $(QUICK),quick,latest).json

.PHONY: run zmq-check

run: $(BIN)
	@mkdir -p $(OUT)
	@$(BIN) $(if $(QUICK),--quick) --json $(RESULT) --fixtures tests/fixtures

$(BIN): $(BENCH_SRC) $(BENCH_HDR) include/notif.h target/release/libnotif.so | zmq-check
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -o $@ $(BENCH_SRC) $(BENCH_LIBS)

zmq-check:
	@bench/ensure-zmq.sh

# Instructions per notif_emit (stable on a noisy machine), split by function:
# callgrind over an emit loop to one reading subscriber, counting only inside
# notif_emit_len. PROFILE_N emits of PROFILE_MSG.
PROFILE_N ?= 20000
PROFILE_MSG ?= tests/fixtures/nova-instance-update.json
.PHONY: profile
profile: $(BIN)
	valgrind --tool=callgrind --callgrind-out-file=$(B)/bench/callgrind.out \
	    --toggle-collect=notif_emit_len $(BIN) --emit-loop $(PROFILE_N) $(PROFILE_MSG)
	@echo "Ir per emit = the totals below / $(PROFILE_N)"
	callgrind_annotate --inclusive=yes --threshold=99 $(B)/bench/callgrind.out | head -n 60

# Issue 17, finding 1 as wall-clock figures (bench/README.md): the host's
# notif_emit timed with and without a uid-65534 reader whose socket carries
# tens of thousands of epoll registrations. As root, after `make lib`. Not
# part of `make test` or `make bench`: a measurement (about 50 s).
ATTACK := $(B)/bench/emit_under_wakeup_attack
.PHONY: attack
attack: $(ATTACK)
	$(ATTACK)

$(ATTACK): bench/attack/emit_under_wakeup_attack.c $(HARNESS) include/notif.h target/release/libnotif.so
	@mkdir -p $(dir $@)
	$(CC) $(BENCH_CFLAGS) -pthread -o $@ $< bench/common/harness.c -L$(B)/lib -lnotif -Wl,-rpath,'$$ORIGIN/../lib'
