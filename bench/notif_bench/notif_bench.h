/*
 * notif_bench's parts (main.c says what the program does):
 *   subscribers.c   the shared memory the subscriber processes report through,
 *                   the subscriber processes themselves (--sub), and the
 *                   parent's side: starting, pacing, waiting for, reaping them
 *   publishers.c    notif, ZeroMQ PUB and the raw socket behind one interface
 *   results.c       the rows, their targets, the table and the JSON
 *   syscalls.c      every system call of the publisher process (perf)
 *   scenarios.c     sections 1 to 5
 *   instructions.c  section 6 (callgrind) and --emit-loop, which it runs
 *   main.c          options, the sections in order, the report
 * ../common/harness.h: what this program shares with bench/attack.
 */
#ifndef NOTIF_BENCH_H
#define NOTIF_BENCH_H

#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include <notif.h>
#include <zmq.h>

#include "harness.h"

/* ------------------------------------------------------------------ main.c: the run's settings */

extern char self_exe[PATH_MAX];
extern char tmpdir[64];
extern int quick;
extern int failures;
extern long g_sub_uid, g_sub_gid;
extern long g_drop_uid, g_drop_gid;
/* " untrusted" (" trusted" for uid 0 or ours) with BENCH_SUB_UID, "" without */
extern char g_sub_label[64];

typedef struct {
    const char *name;
    char *bytes;
    size_t len;
} payload_t;

payload_t load_payload(const char *dir, const char *file, const char *name);

/* ------------------------------------------------------------------ subscribers.c */

#define MAX_SLOTS 64
typedef struct {
    uint64_t ready;   /* connected (and subscribed) */
    uint64_t synced;  /* zmq: got a sync message */
    uint64_t count;   /* messages received (holders: the least any socket got) */
    uint64_t last_ns; /* when the last message arrived */
    uint64_t done_ns; /* when it had received EXPECT messages */
    uint64_t reads;   /* read() calls that returned data (stream readers) */
    uint64_t bytes;   /* bytes those returned */
    uint64_t pad;
} slot_t;

extern slot_t *slots;
extern char shm_path[128];

static inline uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void st(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

void *map_slots(const char *path, int create);

enum { MODE_COUNT, MODE_ECHO, MODE_STALL, MODE_HOLD };

int subscriber_main(int argc, char **argv);

typedef struct {
    pid_t pid[MAX_SLOTS];
    int n;
} subs_t;

void spawn_subs(subs_t *subs, const char *kind, const char *addr, int first_slot, int n, uint64_t expect,
                int mode, int arg);
void reap_subs(subs_t *subs);
int wait_ready(int first, int n, double seconds);
uint64_t min_count(int first, int n);
void pace(int first, int n, uint64_t sent, uint64_t window);
uint64_t wait_done(int first, int n, double seconds);

/* ------------------------------------------------------------------ publishers.c */

enum { SYS_NOTIF, SYS_ZMQ, SYS_RAW };
extern const char *sys_name[];

typedef struct {
    int sys;
    notif_handle *h;
    void *zctx, *zpub;
    int listen_fd, nfd, fds[MAX_SLOTS];
    char addr[128];
    char *buf;
    size_t used;
    uint64_t eagain;
    uint64_t raw_writes; /* raw: send() calls on subscriber sockets */
} pub_t;

extern size_t g_sub_buffer;
extern uint64_t g_window_bytes;

uint64_t window_for(size_t len);
void pub_open(pub_t *p, int sys);
int pub_attach_conns(pub_t *p, int first, int n, int conns);
int pub_attach(pub_t *p, int first, int n);
void raw_flush(pub_t *p);
void pub_flush(pub_t *p);
void pub_close(pub_t *p, notif_stats *final);
const char *sub_kind(int sys);

/* Here, so that the measuring loops inline it as they did. */
static inline int pub_send(pub_t *p, const char *msg, size_t len)
{
    if (p->sys == SYS_NOTIF) {
        int r;
        while ((r = notif_emit_len(p->h, msg, len)) == -EAGAIN) {
            p->eagain++;
            sched_yield();
        }
        return r;
    }
    if (p->sys == SYS_ZMQ)
        return zmq_send(p->zpub, msg, len, 0) == (int)len ? 0 : -1;
    if (p->used + len + 1 > 64 * 1024)
        raw_flush(p);
    memcpy(p->buf + p->used, msg, len);
    p->buf[p->used + len] = '\n';
    p->used += len + 1;
    return 0;
}

/* ------------------------------------------------------------------ results.c */

enum { ST_INFO, ST_MET, ST_MISSED, ST_FAILED };

typedef struct {
    char section[8];
    char what[80];
    char unit[8]; /* ns, us, msg/s, MiB, KiB, x, instr, /msg (system calls per message) */
    double notif;
    char cmp_name[24];
    double cmp; /* 0: none */
    char target[40];
    int status;
    char note[120];
} row_t;

extern char machine[512];

row_t *add_row(const char *section, const char *unit, double notif, const char *cmp_name, double cmp,
               const char *what_fmt, ...) __attribute__((format(printf, 6, 7)));
double ratio(const row_t *r);
void target_ratio(row_t *r, const char *op, double limit);
void target_value(row_t *r, const char *op, double limit, const char *text);
void fail_row(row_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void print_table(FILE *f, int markdown);
void describe_machine(void);
void write_json(const char *path);

/* ------------------------------------------------------------------ syscalls.c */

#define MAX_THREADS 32
typedef struct {
    int fd[MAX_THREADS], n, naps;
} sysc_t;

extern char perf_missing[128]; /* why system calls are not counted ("" when they are) */

void sysc_start(sysc_t *c);
int64_t sysc_stop(sysc_t *c);

/* ------------------------------------------------------------------ scenarios.c */

#define BATCH 32

void run_cost(const payload_t *m, double *one_sub_cost);
void run_throughput(const payload_t *m);
void run_latency(const payload_t *m);
void run_stalled(const payload_t *m);
void run_thousand(const payload_t *m, double one_sub_cost);

/* ------------------------------------------------------------------ instructions.c */

void run_instructions(const char *fixtures);
int emit_loop_main(uint64_t n, const char *file);

#endif
