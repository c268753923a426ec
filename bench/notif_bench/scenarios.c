/*
 * The measurements, sections 1 to 5 of the table (section 6 is in
 * instructions.c; bench/README.md describes each).
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "notif_bench.h"

/* ------------------------------------------------------------------ 1. caller-side cost */

typedef struct {
    double median, p99;
    uint64_t discarded, sent;
} cost_t;

/*
 * Per-call cost of `calls` sends, timed in batches of BATCH. Between batches
 * (untimed) the publisher waits until the slowest of the `nsubs` subscribers is
 * at most `window` messages behind, so the backlog never fills; a batch in
 * which notif still returned -EAGAIN is discarded (counted).
 */
static cost_t measure_cost(pub_t *p, const payload_t *m, uint64_t calls, int nsubs, uint64_t window)
{
    size_t nb = calls / BATCH;
    double *samples = malloc(nb * sizeof *samples);
    size_t ns = 0;
    cost_t c = {0, 0, 0, 0};
    uint64_t sent = 0;
    for (size_t b = 0; b < nb; b++) {
        if (nsubs > 0)
            pace(0, nsubs, sent, window);
        uint64_t eagain = p->eagain;
        uint64_t t0 = now_ns();
        for (int i = 0; i < BATCH; i++) {
            if (p->sys == SYS_NOTIF) {
                int r = notif_emit_len(p->h, m->bytes, m->len);
                if (r == -EAGAIN)
                    p->eagain++;
                else if (r < 0)
                    die("notif_emit: %s", notif_last_error());
            } else {
                if (zmq_send(p->zpub, m->bytes, m->len, 0) != (int)m->len)
                    die("zmq_send: %s", zmq_strerror(zmq_errno()));
            }
        }
        uint64_t t1 = now_ns();
        sent += BATCH;
        if (p->eagain != eagain) {
            c.discarded++;
            sent -= p->eagain - eagain;
            continue;
        }
        samples[ns++] = (double)(t1 - t0) / BATCH;
    }
    c.sent = sent;
    c.p99 = percentile(samples, ns, 99);
    c.median = percentile(samples, ns, 50);
    free(samples);
    return c;
}

void run_cost(const payload_t *m, double *one_sub_cost)
{
    uint64_t idle_calls = quick ? 32 * 1000 : 32 * 60000;
    uint64_t busy_calls = quick ? 32 * 100 : 32 * 4000;
    int counts[] = {0, 1, 4};
    for (int k = 0; k < 3; k++) {
        int n = counts[k];
        cost_t res[2];
        for (int sys = SYS_NOTIF; sys <= SYS_ZMQ; sys++) {
            pub_t p;
            subs_t subs = {.n = 0};
            pub_open(&p, sys);
            spawn_subs(&subs, sub_kind(sys), p.addr, 0, n, UINT64_MAX, MODE_COUNT, 0);
            if (pub_attach(&p, 0, n) != 0)
                die("subscribers did not attach");
            /* zmq's sync pings count as nothing: subscribers skip them */
            uint64_t window = window_for(m->len);
            res[sys] = measure_cost(&p, m, n ? busy_calls : idle_calls, n, window);
            reap_subs(&subs);
            pub_close(&p, NULL);
        }
        row_t *r = add_row("1", "ns", res[0].median, "zmq_send", res[1].median,
                           "emit %s, %d sub%s: median", m->name, n, n == 1 ? "" : "s");
        if (n == 0)
            target_value(r, "<", 20, "<= 20 ns");
        else if (m->len > 1000)
            target_ratio(r, "<=", 1.0);
        if (res[0].discarded)
            snprintf(r->note, sizeof r->note, "%" PRIu64 " batches with -EAGAIN left out",
                     res[0].discarded);
        add_row("1", "ns", res[0].p99, "zmq_send", res[1].p99, "emit %s, %d sub%s: p99", m->name, n,
                n == 1 ? "" : "s");
        if (n == 1)
            *one_sub_cost = res[0].median;
    }
}

/* ------------------------------------------------------------------ 2. throughput */

typedef struct {
    double rate;
    uint64_t eagain, dropped_slow, dropped_backlog;
    double read_bytes; /* readers: average bytes per read() */
    /* system calls writing to subscribers (notif: stats.writes; raw: its
     * send() calls) and notif's wake-ups of its server thread (stats.wakeups) */
    uint64_t writes, wakeups;
    int64_t syscalls; /* every system call of the publisher process (perf), -1: not counted */
    long rss_growth_kib;
    int ok;
    char why[96];
} tput_t;

/*
 * N messages to `nreaders` readers (slots 0..nreaders-1), plus `nstall`
 * subscribers that never read (notif only). For notif and zmq the publisher
 * stays at most `window` messages ahead of the slowest reader, which is what
 * sending "as fast as it sustainably can" without drops means; the raw
 * publisher's blocking writes do that by themselves.
 */
static tput_t run_tput(int sys, const payload_t *m, int nreaders, int nstall, uint64_t n,
                       int count_syscalls)
{
    tput_t t = {0};
    t.syscalls = -1;
    pub_t p;
    subs_t subs = {.n = 0};
    pub_open(&p, sys);
    spawn_subs(&subs, sub_kind(sys), p.addr, 0, nreaders, n, MODE_COUNT, 0);
    spawn_subs(&subs, sub_kind(sys), p.addr, nreaders, nstall, n, MODE_STALL, 0);
    if (pub_attach(&p, 0, nreaders + nstall) != 0) {
        snprintf(t.why, sizeof t.why, "subscribers did not attach");
        reap_subs(&subs);
        pub_close(&p, NULL);
        return t;
    }
    uint64_t window = window_for(m->len);
    long rss0 = vmrss_kib(), rss_max = rss0;
    sysc_t sc = {.n = 0};
    if (count_syscalls)
        sysc_start(&sc);
    uint64_t start = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        if (pub_send(&p, m->bytes, m->len) < 0) {
            snprintf(t.why, sizeof t.why, "send failed: %s",
                     sys == SYS_NOTIF ? notif_last_error() : strerror(errno));
            break;
        }
        if ((i & 63) == 63 && sys != SYS_RAW) {
            pace(0, nreaders, i + 1, window);
            if ((i & 1023) == 1023) {
                long r = vmrss_kib();
                if (r > rss_max)
                    rss_max = r;
            }
        }
    }
    pub_flush(&p);
    uint64_t end = wait_done(0, nreaders, quick ? 30 : 120);
    t.syscalls = sysc_stop(&sc);
    long r = vmrss_kib(), hwm = status_kib("VmHWM");
    if (r > rss_max)
        rss_max = r;
    if (hwm > rss_max)
        rss_max = hwm;
    t.rss_growth_kib = rss_max - rss0;
    uint64_t reads = 0, bytes = 0;
    for (int i = 0; i < nreaders; i++) {
        reads += ld(&slots[i].reads);
        bytes += ld(&slots[i].bytes);
    }
    t.read_bytes = reads ? (double)bytes / (double)reads : 0;
    t.eagain = p.eagain;
    if (end == 0 && !t.why[0])
        snprintf(t.why, sizeof t.why, "timed out: slowest reader got %" PRIu64 " of %" PRIu64,
                 min_count(0, nreaders), n);
    notif_stats stats;
    memset(&stats, 0, sizeof stats);
    reap_subs(&subs);
    pub_close(&p, &stats);
    t.dropped_slow = stats.dropped_slow;
    t.dropped_backlog = stats.dropped_backlog;
    t.writes = sys == SYS_RAW ? p.raw_writes : stats.writes;
    t.wakeups = stats.wakeups;
    if (end) {
        t.rate = (double)n / ((double)(end - start) / 1e9);
        t.ok = !t.why[0];
    }
    return t;
}

/*
 * Every system call of the publisher per (message, subscriber), from one more
 * run of notif and of raw with the perf counters on: a traced thread's system
 * calls take the slow path, so the timed runs above never count them.
 */
static void add_perf_rows(const payload_t *m, int nsubs, uint64_t n)
{
    if (perf_missing[0])
        return;
    tput_t a = run_tput(SYS_NOTIF, m, nsubs, 0, n, 1);
    tput_t b = run_tput(SYS_RAW, m, nsubs, 0, n, 1);
    if (a.syscalls < 0 || b.syscalls < 0)
        return;
    double pairs = (double)n * nsubs;
    row_t *r = add_row("2", "/msg", (double)a.syscalls / pairs, "raw, all", (double)b.syscalls / pairs,
                       "syscalls %s, %d sub%s: all, per msg/sub (perf)", m->name, nsubs,
                       nsubs == 1 ? "" : "s");
    if (!a.ok || !b.ok)
        fail_row(r, "%s", !a.ok ? a.why : b.why);
    else
        snprintf(r->note, sizeof r->note, "a separate run; every thread of the publisher, pacing sleeps left out");
}

void run_throughput(const payload_t *m)
{
    int counts[] = {1, 4, 16};
    for (int k = 0; k < 3; k++) {
        int nsubs = counts[k];
        uint64_t n = quick ? 2000 : (m->len > 1000 ? 100000 : 300000) / (nsubs == 16 ? 4 : 1);
        /* best of 3 (1 when quick): the machine is shared, and a run that
         * loses its core for a while says nothing about the publisher */
        tput_t t[3];
        memset(t, 0, sizeof t);
        for (int rep = 0; rep < (quick ? 1 : 3); rep++)
            for (int sys = 0; sys < 3; sys++) {
                tput_t one = run_tput(sys, m, nsubs, 0, n, 0);
                if (rep == 0 || (one.ok && (!t[sys].ok || one.rate > t[sys].rate)))
                    t[sys] = one;
            }
        row_t *rz = add_row("2", "msg/s", t[0].rate, "zmq", t[1].rate, "throughput %s, %d sub%s",
                            m->name, nsubs, nsubs == 1 ? "" : "s");
        row_t *rr = add_row("2", "msg/s", t[0].rate, "raw", t[2].rate, "throughput %s, %d sub%s",
                            m->name, nsubs, nsubs == 1 ? "" : "s");
        for (int sys = 0; sys < 3; sys++)
            if (!t[sys].ok)
                fail_row(sys == 2 ? rr : rz, "%s: %s", sys_name[sys], t[sys].why);
        if (t[0].ok && (t[0].dropped_slow || t[0].dropped_backlog))
            fail_row(rz, "notif dropped %" PRIu64 " slow, %" PRIu64 " backlog", t[0].dropped_slow,
                     t[0].dropped_backlog);
        target_ratio(rz, ">=", 2.0);
        target_ratio(rr, ">=", nsubs == 1 ? 0.5 : 0.8);
        if (rz->status != ST_FAILED)
            snprintf(rz->note, sizeof rz->note, "N=%" PRIu64 ", EAGAIN retries %" PRIu64
                     ", dropped 0", n, t[0].eagain);
        if (rr->status != ST_FAILED)
            snprintf(rr->note, sizeof rr->note, "bytes per read(): notif %.0f, raw %.0f",
                     t[0].read_bytes, t[2].read_bytes);
        /* Per message delivered to one subscriber: every reader got all N, so
         * both publishers delivered N x nsubs (message, subscriber) pairs. */
        double pairs = (double)n * nsubs;
        row_t *sw = add_row("2", "/msg", (double)t[0].writes / pairs, "raw write()",
                            (double)t[2].writes / pairs, "syscalls %s, %d sub%s: writes per msg/sub",
                            m->name, nsubs, nsubs == 1 ? "" : "s");
        row_t *sk = add_row("2", "/msg", (double)t[0].wakeups / pairs, "raw write()",
                            (double)t[2].writes / pairs, "syscalls %s, %d sub%s: wake-ups per msg/sub",
                            m->name, nsubs, nsubs == 1 ? "" : "s");
        if (!t[0].ok || !t[2].ok) {
            sw->status = sk->status = ST_INFO;
            snprintf(sw->note, sizeof sw->note, "from a run that did not complete");
        } else {
            snprintf(sw->note, sizeof sw->note, "notif %" PRIu64 ", raw %" PRIu64 " for %" PRIu64
                     " x %d", t[0].writes, t[2].writes, n, nsubs);
            snprintf(sk->note, sizeof sk->note, "per message emitted: %.3f",
                     (double)t[0].wakeups / (double)n);
        }
        add_perf_rows(m, nsubs, n);
    }
}

/* ------------------------------------------------------------------ 3. idle latency */

typedef struct {
    double p50, p99;
    uint64_t msgs;            /* sent, warm-up included */
    uint64_t writes, wakeups; /* as in tput_t, over all msgs */
    uint64_t written_through; /* notif: messages notif_emit wrote itself */
    int64_t syscalls;         /* perf, -1: not counted */
} lat_t;

static int run_latency_one(int sys, const payload_t *m, int iters, int count_syscalls, lat_t *out)
{
    pub_t p;
    subs_t subs = {.n = 0};
    int echo[2];
    memset(out, 0, sizeof *out);
    out->syscalls = -1;
    if (pipe(echo) != 0)
        die("pipe: %s", strerror(errno));
    pub_open(&p, sys);
    spawn_subs(&subs, sub_kind(sys), p.addr, 0, 1, UINT64_MAX, MODE_ECHO, echo[1]);
    close(echo[1]);
    int rc = pub_attach(&p, 0, 1);
    /* Every system alike: settle first. notif writes through to a peer that
       has said nothing only 100 ms after it connected (it may be about to
       send a request); until then its server thread sends. */
    sleep_us(150 * 1000);
    int warm = iters / 10 + 10;
    double *lat = malloc((size_t)iters * sizeof *lat);
    sysc_t sc = {.n = 0};
    if (count_syscalls)
        sysc_start(&sc);
    for (int i = 0; rc == 0 && i < warm + iters; i++) {
        uint64_t before = ld(&slots[0].count);
        uint64_t t0 = now_ns();
        if (pub_send(&p, m->bytes, m->len) < 0)
            rc = -1;
        pub_flush(&p);
        out->msgs++;
        char c;
        if (read(echo[0], &c, 1) != 1 || ld(&slots[0].count) != before + 1) {
            rc = -1;
            break;
        }
        if (i >= warm)
            lat[i - warm] = (double)(ld(&slots[0].last_ns) - t0);
    }
    /* the publisher's only other system calls here: the read() on the echo pipe */
    out->syscalls = sysc_stop(&sc);
    if (out->syscalls >= 0)
        out->syscalls -= (int64_t)out->msgs;
    if (rc == 0) {
        out->p50 = percentile(lat, (size_t)iters, 50);
        out->p99 = percentile(lat, (size_t)iters, 99);
    }
    free(lat);
    reap_subs(&subs);
    notif_stats stats;
    memset(&stats, 0, sizeof stats);
    pub_close(&p, &stats);
    out->writes = sys == SYS_RAW ? p.raw_writes : stats.writes;
    out->wakeups = stats.wakeups;
    out->written_through = stats.written_through;
    close(echo[0]);
    return rc;
}

void run_latency(const payload_t *m)
{
    int iters = quick ? 200 : 20000;
    lat_t v[3];
    int rc[3];
    const char *sl = g_sub_label;
    g_drop_uid = g_sub_uid;
    g_drop_gid = g_sub_gid;
    for (int sys = 0; sys < 3; sys++)
        rc[sys] = run_latency_one(sys, m, iters, 0, &v[sys]);
    row_t *r = add_row("3", "ns", v[0].p50, "zmq", v[1].p50, "idle latency %s%s, emit to read: p50", m->name, sl);
    if (rc[0] || rc[1])
        fail_row(r, "the echo loop broke (%s)", rc[0] ? "notif" : "zmq");
    target_ratio(r, "<=", 0.5);
    add_row("3", "ns", v[0].p99, "zmq", v[1].p99, "idle latency %s%s, emit to read: p99", m->name, sl);
    /* raw: the publisher write()s the one message itself, the same reader stamps it */
    row_t *r50 = add_row("3", "ns", v[0].p50, "raw", v[2].p50, "idle latency %s%s, emit to read: p50", m->name, sl);
    row_t *r99 = add_row("3", "ns", v[0].p99, "raw", v[2].p99, "idle latency %s%s, emit to read: p99", m->name, sl);
    if (rc[0] || rc[2])
        fail_row(r50, "the echo loop broke (%s)", rc[0] ? "notif" : "raw");
    target_ratio(r50, "<=", 1.6);
    target_ratio(r99, "<=", 2.0);
    /* one subscriber: per message = per (message, subscriber) pair */
    if (v[0].msgs && v[2].msgs) {
        double raw_w = (double)v[2].writes / (double)v[2].msgs;
        row_t *w = add_row("3", "/msg", (double)v[0].writes / (double)v[0].msgs, "raw write()", raw_w,
                "syscalls %s, idle, 1%s sub: writes per msg", m->name, sl);
        snprintf(w->note, sizeof w->note, "written through by notif_emit: %" PRIu64 " of %" PRIu64 "%s",
                 v[0].written_through, v[0].msgs, g_sub_uid >= 0 ? "; subscriber uid " : "");
        if (g_sub_uid >= 0) {
            size_t l = strlen(w->note);
            snprintf(w->note + l, sizeof w->note - l, "%ld", g_sub_uid);
        }
        add_row("3", "/msg", (double)v[0].wakeups / (double)v[0].msgs, "raw write()", raw_w,
                "syscalls %s, idle, 1%s sub: wake-ups per msg", m->name, sl);
        /* perf: separate runs (traced system calls are slower), as in section 2 */
        lat_t c[2];
        if (!perf_missing[0] && run_latency_one(SYS_NOTIF, m, iters / 4, 1, &c[0]) == 0 &&
            run_latency_one(SYS_RAW, m, iters / 4, 1, &c[1]) == 0 && c[0].syscalls >= 0 &&
            c[1].syscalls >= 0) {
            row_t *a = add_row("3", "/msg", (double)c[0].syscalls / (double)c[0].msgs, "raw, all",
                               (double)c[1].syscalls / (double)c[1].msgs,
                               "syscalls %s, idle, 1%s sub: all, per msg (perf)", m->name, sl);
            snprintf(a->note, sizeof a->note,
                     "a separate run; every thread of the publisher, its echo-pipe read() left out");
        }
    }
    g_drop_uid = g_drop_gid = -1;
}

/* ------------------------------------------------------------------ 4. a subscriber that never reads */

typedef struct {
    const payload_t *m;
    int nstall;
    uint64_t n;
} stalled_ctx_t;

static void stalled_child(void *ctx, void *out)
{
    stalled_ctx_t *c = ctx;
    *(tput_t *)out = run_tput(SYS_NOTIF, c->m, 3, c->nstall, c->n, 0);
}

void run_stalled(const payload_t *m)
{
    uint64_t n = quick ? 5000 : 100000;
    tput_t a = {0}, b = {0};
    stalled_ctx_t ca = {m, 0, n}, cb = {m, 1, n};
    for (int rep = 0; rep < (quick ? 1 : 3); rep++) {
        tput_t one;
        memset(&one, 0, sizeof one);
        if (in_child(stalled_child, &ca, &one, sizeof one) != 0)
            snprintf(one.why, sizeof one.why, "the measuring process died");
        if (rep == 0 || (one.ok && (!a.ok || one.rate > a.rate)))
            a = one;
        memset(&one, 0, sizeof one);
        if (in_child(stalled_child, &cb, &one, sizeof one) != 0)
            snprintf(one.why, sizeof one.why, "the measuring process died");
        if (rep == 0 || (one.ok && (!b.ok || one.rate > b.rate)))
            b = one;
    }
    long growth_a = a.rss_growth_kib, growth_b = b.rss_growth_kib;
    row_t *r = add_row("4", "msg/s", b.rate, "without it", a.rate,
                       "3 readers + 1 never reading, %s", m->name);
    if (!a.ok || !b.ok)
        fail_row(r, "%s", !a.ok ? a.why : b.why);
    else if (b.dropped_backlog)
        fail_row(r, "dropped_backlog %" PRIu64, b.dropped_backlog);
    target_ratio(r, ">=", 0.9);
    if (r->status != ST_FAILED)
        snprintf(r->note, sizeof r->note, "dropped_slow %" PRIu64 " (all for the one not reading)",
                 b.dropped_slow);
    double limit_mib = (double)g_sub_buffer / (1 << 20);
    row_t *mem = add_row("4", "MiB", (double)growth_b / 1024, "sub. buffer", limit_mib,
                         "publisher VmRSS growth with it");
    target_ratio(mem, "<=", 1.0);
    snprintf(mem->note, sizeof mem->note, "growth without it: %.1f MiB", (double)growth_a / 1024);
}

/* ------------------------------------------------------------------ 5. 1,000 idle subscribers */

typedef struct {
    int rc;
    cost_t c;
    long rss0, rss1, rss2;
} thousand_t;

static void thousand_child(void *ctx, void *out)
{
    const payload_t *m = ctx;
    thousand_t *res = out;
    int holders = 4, per = quick ? 25 : 250, total = holders * per;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)total + 256) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)total + 1024
                          ? (rlim_t)total + 1024
                          : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    pub_t p;
    subs_t subs = {.n = 0};
    pub_open(&p, SYS_NOTIF);
    res->rss0 = vmrss_kib();
    spawn_subs(&subs, "stream", p.addr, 0, holders, UINT64_MAX, MODE_HOLD, per);
    res->rc = pub_attach_conns(&p, 0, holders, total);
    res->rss1 = res->rss2 = vmrss_kib();
    if (res->rc == 0) {
        res->c = measure_cost(&p, m, quick ? 32 * 10 : 32 * 100, holders, 64);
        pace(0, holders, res->c.sent, 0);
        res->rss2 = vmrss_kib();
    }
    reap_subs(&subs);
    pub_close(&p, NULL);
}

void run_thousand(const payload_t *m, double one_sub_cost)
{
    int total = 4 * (quick ? 25 : 250);
    thousand_t res;
    memset(&res, 0, sizeof res);
    res.rc = -1;
    if (in_child(thousand_child, (void *)m, &res, sizeof res) != 0)
        res.rc = -1;
    cost_t c = res.c;
    int rc = res.rc;
    long rss0 = res.rss0, rss1 = res.rss1, rss2 = res.rss2;
    row_t *r = add_row("5", "ns", c.median, "1 sub", one_sub_cost, "emit %s, %d idle subs: median",
                       m->name, total);
    if (rc != 0)
        fail_row(r, "only some of the %d subscribers connected", total);
    add_row("5", "ns", c.p99, "", 0, "emit %s, %d idle subs: p99", m->name, total);
    double per_sub_kib = (double)(rss1 - rss0) / total;
    row_t *mem = add_row("5", "KiB", per_sub_kib, "sub. buffer", (double)g_sub_buffer / 1024,
                         "publisher VmRSS per idle subscriber");
    target_ratio(mem, "<=", 1.0);
    snprintf(mem->note, sizeof mem->note, "%d subs: +%.1f MiB connected, +%.1f MiB after emitting",
             total, (double)(rss1 - rss0) / 1024, (double)(rss2 - rss0) / 1024);
}

