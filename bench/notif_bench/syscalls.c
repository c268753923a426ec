#define _GNU_SOURCE
#include <dirent.h>
#include <linux/perf_event.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "notif_bench.h"

/*
 * Every system call of the publisher process while it sends: a counting perf
 * event on the raw_syscalls:sys_enter tracepoint for each of its threads
 * (opened once the subscribers are forked and the publisher's threads exist,
 * not inherited), minus the main thread's clock_nanosleep calls, which are
 * this benchmark's pacing and not the publisher's. Needs root (or
 * perf_event_paranoid allowing it) and tracefs; without them nothing is
 * counted and the rows are left out.
 */
char perf_missing[128];

static long tracepoint_id(const char *event)
{
    const char *roots[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
    for (int i = 0; i < 2; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/events/%s/id", roots[i], event);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        long id = -1;
        if (fscanf(f, "%ld", &id) != 1)
            id = -1;
        fclose(f);
        if (id >= 0)
            return id;
    }
    return -1;
}

static int perf_counter(long id, pid_t tid)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.type = PERF_TYPE_TRACEPOINT;
    a.size = sizeof a;
    a.config = (uint64_t)id;
    return (int)syscall(SYS_perf_event_open, &a, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

void sysc_start(sysc_t *c)
{
    c->n = 0;
    c->naps = -1;
    if (perf_missing[0])
        return;
    long all = tracepoint_id("raw_syscalls/sys_enter");
    long nap = tracepoint_id("syscalls/sys_enter_clock_nanosleep");
    if (all < 0 || nap < 0) {
        snprintf(perf_missing, sizeof perf_missing, "no raw_syscalls:sys_enter tracepoint (tracefs)");
        return;
    }
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL && c->n < MAX_THREADS) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid <= 0)
            continue;
        int fd = perf_counter(all, tid);
        if (fd < 0) {
            snprintf(perf_missing, sizeof perf_missing, "perf_event_open: %s", strerror(errno));
            break;
        }
        c->fd[c->n++] = fd;
    }
    if (d)
        closedir(d);
    if (!perf_missing[0] && (c->naps = perf_counter(nap, getpid())) < 0)
        snprintf(perf_missing, sizeof perf_missing, "perf_event_open: %s", strerror(errno));
    if (perf_missing[0]) {
        for (int i = 0; i < c->n; i++)
            close(c->fd[i]);
        c->n = 0;
    }
}

int64_t sysc_stop(sysc_t *c)
{
    if (c->n == 0)
        return -1;
    int64_t total = 0;
    uint64_t v;
    for (int i = 0; i < c->n; i++) {
        if (read(c->fd[i], &v, sizeof v) == (ssize_t)sizeof v)
            total += (int64_t)v;
        close(c->fd[i]);
    }
    if (read(c->naps, &v, sizeof v) == (ssize_t)sizeof v)
        total -= (int64_t)v;
    close(c->naps);
    c->n = 0;
    return total;
}
