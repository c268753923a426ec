/*
 * What the C measurement programs under bench/ share (notif_bench and
 * attack/emit_under_wakeup_attack): the clock, dying with a message, sorting
 * samples, connecting a stream reader, reading a sample message, and the
 * process figures they read from /proc.
 */
#ifndef NOTIF_BENCH_HARNESS_H
#define NOTIF_BENCH_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* CLOCK_MONOTONIC in ns: one clock for every process on the machine. */
static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sleep_us(long us);

/* What die() prefixes its message with and exits with (harness.c: "bench", 2). */
void harness_init(const char *program, int die_status);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A field of /proc/self/status in KiB (VmRSS, VmHWM), -1 when absent. */
long status_kib(const char *field);
long vmrss_kib(void);
/* CPU time (utime + stime) in /proc/.../stat at `path`, ns (clock-tick resolution); 0 when unreadable. */
uint64_t stat_cpu_ns(const char *path);

/*
 * Runs fn in a forked copy of this process (only the main thread exists
 * between measurements), so that its memory figures start from a fresh
 * process and not from the heap earlier measurements left behind. `out`
 * (size bytes) comes back through a pipe; 0 when it did.
 */
int in_child(void (*fn)(void *ctx, void *out), void *ctx, void *out, size_t size);

int cmp_double(const void *a, const void *b);
/* p in [0,100]. percentile sorts v in place first; percentile_sorted expects it sorted. */
double percentile(double *v, size_t n, double p);
double percentile_sorted(const double *v, size_t n, double p);

/* A stream socket connected to the Unix socket at path, retrying for about
 * 5 s while nothing listens there; -1 with errno when it could not. */
int connect_unix(const char *path);

/* A sample message: the file's bytes without trailing newlines and spaces,
 * NUL-terminated, at most 1 MiB - 1 (dies when it cannot be read). */
char *load_message(const char *path, size_t *len);

#endif
