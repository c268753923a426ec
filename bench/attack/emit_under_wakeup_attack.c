/*
 * Issue 17, finding 1, as wall-clock figures: how long the host's own
 * notif_emit takes while another user's reader multiplies the cost of every
 * send to its socket (dup() it thousands of times, add every copy to epoll
 * sets nobody waits on: each send then runs one kernel wake-up callback per
 * registration, on whichever thread sends).
 *
 * Run as root (bench/README.md, "Finding 1 as wall-clock figures"):
 *
 *   make lib && make -f bench/bench.mk attack
 *   ATTACK_SECONDS=10 ATTACK_RATE=100 ATTACK_DUPS=19000 make -f bench/bench.mk attack
 *
 * This process is the publisher (root) with one root subscriber that reads
 * everything (trusted). For 1 and then 4 emitting threads, each emitting
 * ATTACK_RATE notifications/s (the 1,669-byte nova sample) for ATTACK_SECONDS,
 * two cases:
 *   - no attack: only the root subscriber is connected;
 *   - attack: an attacker process as uid 65534 (ATTACK_UID) connects as a
 *     plain reader that reads everything, dup()s its socket ATTACK_DUPS times
 *     and adds every copy to 2 epoll sets (2 x ATTACK_DUPS registrations);
 *     when it is cut off it does it all again on a new connection, until the
 *     case ends.
 * Each notif_emit_len call is timed (CLOCK_MONOTONIC around the call); the
 * server thread's CPU time (the thread named notif-server,
 * /proc/self/task/TID/schedstat, or utime+stime from .../stat) is read
 * before and after each case. Printed per case: emits, p50/p99/max/mean of
 * one emit, the server thread's CPU, the counters (writes, written_through,
 * wakeups, disconnected_costly) and when the attacker was first cut off, with
 * the reason its last line gave.
 *
 * A measurement, not a test: nothing is asserted; exit 1 only when something
 * could not run (no root, emits failed, the attacker never connected).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <notif.h>

#include "harness.h"

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

/* ------------------------------------------------------------------ shared with the attacker */

typedef struct {
    uint64_t connections;    /* connections made (1 + reconnections after being cut off) */
    uint64_t registrations;  /* epoll registrations of the current (last) connection */
    uint64_t dups;           /* descriptors dup()ed for the current connection */
    uint64_t armed_ns;       /* when the first connection had all its registrations */
    uint64_t first_cut_ns;   /* when the first connection saw EOF */
    uint64_t cuts;           /* connections that ended (EOF or error) */
    uint64_t too_costly;     /* of those, the ones whose last line said too_costly */
    uint64_t bytes;          /* bytes read, all connections */
    char last_line[1024];    /* the last line the first cut-off connection read */
} attack_shm_t;

static attack_shm_t *ash;

/* Reads until EOF; keeps the last complete line. Returns bytes read. */
static uint64_t read_all(int fd, char *last, size_t last_cap)
{
    static char buf[1 << 20];
    uint64_t total = 0;
    size_t have = 0; /* bytes of the current (unfinished) line kept in tail */
    static char tail[1024];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        total += (uint64_t)n;
        __atomic_store_n(&ash->bytes, ash->bytes + (uint64_t)n, __ATOMIC_RELAXED);
        /* keep the last line (short ones only: error lines are short) */
        for (ssize_t i = 0; i < n; i++) {
            if (buf[i] == '\n') {
                if (have) {
                    size_t k = have < last_cap - 1 ? have : last_cap - 1;
                    memcpy(last, tail, k);
                    last[k] = 0;
                }
                have = 0;
            } else if (have < sizeof tail) {
                tail[have++] = buf[i];
            }
        }
    }
    return total;
}

static void attacker_main(const char *path, long uid, long dups, int reconnect)
{
    /* As root: as many descriptors as the container allows, then drop. */
    struct rlimit rl;
    rlim_t want = (rlim_t)dups + 64;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_max < want) {
        struct rlimit up = {want, want};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0)
        die("attacker: cannot drop to uid %ld: %s", uid, strerror(errno));
    if ((long)rl.rlim_cur - 64 < dups)
        dups = (long)rl.rlim_cur - 64;
    int *copies = malloc(sizeof(int) * (size_t)dups);
    for (;;) {
        int fd = connect_unix(path);
        if (fd < 0)
            die("attacker: connect %s: %s", path, strerror(errno));
        __atomic_add_fetch(&ash->connections, 1, __ATOMIC_SEQ_CST);
        int ep[2] = {epoll_create1(EPOLL_CLOEXEC), epoll_create1(EPOLL_CLOEXEC)};
        if (ep[0] < 0 || ep[1] < 0)
            die("attacker: epoll_create1: %s", strerror(errno));
        long n = 0, regs = 0;
        for (; n < dups; n++) {
            int c = dup(fd);
            if (c < 0)
                break;
            copies[n] = c;
            for (int e = 0; e < 2; e++) {
                struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
                if (epoll_ctl(ep[e], EPOLL_CTL_ADD, c, &ev) == 0)
                    regs++;
            }
        }
        ash->dups = (uint64_t)n;
        ash->registrations = (uint64_t)regs;
        if (!ash->armed_ns)
            __atomic_store_n(&ash->armed_ns, now_ns(), __ATOMIC_SEQ_CST);
        char last[1024] = "";
        read_all(fd, last, sizeof last);
        uint64_t t = now_ns();
        if (!ash->first_cut_ns) {
            snprintf(ash->last_line, sizeof ash->last_line, "%s", last);
            __atomic_store_n(&ash->first_cut_ns, t, __ATOMIC_SEQ_CST);
        }
        if (strstr(last, "too_costly"))
            __atomic_add_fetch(&ash->too_costly, 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&ash->cuts, 1, __ATOMIC_SEQ_CST);
        for (long i = 0; i < n; i++)
            close(copies[i]);
        close(ep[0]);
        close(ep[1]);
        close(fd);
        if (!reconnect)
            for (;;)
                pause();
    }
}

/* A root subscriber that reads everything. */
static void reader_main(const char *path)
{
    int fd = connect_unix(path);
    if (fd < 0)
        die("reader: connect %s: %s", path, strerror(errno));
    char last[64];
    read_all(fd, last, sizeof last);
    _exit(0);
}

/* ------------------------------------------------------------------ the server thread's CPU time */

static pid_t server_tid;

static pid_t find_server_thread(void)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    pid_t found = 0;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[256], comm[64] = "";
        snprintf(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(p, "r");
        if (f) {
            if (fgets(comm, sizeof comm, f) && strncmp(comm, "notif-server", 12) == 0)
                found = (pid_t)atoi(e->d_name);
            fclose(f);
        }
    }
    if (d)
        closedir(d);
    return found;
}

/* ns of CPU the server thread has used: schedstat's first field, else utime+stime. */
static uint64_t server_cpu_ns(void)
{
    char p[128];
    snprintf(p, sizeof p, "/proc/self/task/%d/schedstat", (int)server_tid);
    FILE *f = fopen(p, "r");
    unsigned long long ns = 0;
    if (f) {
        int ok = fscanf(f, "%llu", &ns) == 1;
        fclose(f);
        if (ok)
            return ns;
    }
    snprintf(p, sizeof p, "/proc/self/task/%d/stat", (int)server_tid);
    return stat_cpu_ns(p);
}

/* CPU time (utime + stime) of a whole process, ns (clock-tick resolution) */
static uint64_t process_cpu_ns(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    return stat_cpu_ns(p);
}

/* The control: a process of the attacker's user that only burns one CPU. */
static void hog_main(long uid)
{
    if (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 || setuid((uid_t)uid) != 0)
        die("hog: cannot drop to uid %ld: %s", uid, strerror(errno));
    volatile uint64_t x = 0;
    for (;;)
        x++;
}

/* ------------------------------------------------------------------ emitting threads */

static notif_handle *h;
static char *payload;
static size_t payload_len;

typedef struct {
    long rate, seconds;
    uint64_t start;
    double *lat; /* ns */
    size_t n;
    uint64_t errors;
    /* emits over 1 ms: how many, and their wall time split into this
     * thread's CPU time, its wait on a run queue (schedstat) and the rest
     * (blocked: a lock, or the kernel) */
    uint64_t slow, slow_wall, slow_cpu, slow_runq;
} emitter_t;

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* this thread's time spent waiting on a run queue (schedstat's 2nd field) */
static uint64_t runq_ns(int fd)
{
    char b[128];
    ssize_t n = pread(fd, b, sizeof b - 1, 0);
    unsigned long long run = 0, wait = 0;
    if (n <= 0)
        return 0;
    b[n] = 0;
    return sscanf(b, "%llu %llu", &run, &wait) == 2 ? wait : 0;
}

static void *emitter(void *arg)
{
    emitter_t *e = arg;
    uint64_t period = 1000000000ull / (uint64_t)e->rate;
    size_t total = (size_t)(e->rate * e->seconds);
    char sp[128];
    snprintf(sp, sizeof sp, "/proc/self/task/%d/schedstat", (int)gettid());
    int sfd = open(sp, O_RDONLY | O_CLOEXEC);
    for (size_t i = 0; i < total; i++) {
        uint64_t at = e->start + i * period;
        struct timespec ts = {(time_t)(at / 1000000000u), (long)(at % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        uint64_t q0 = runq_ns(sfd), c0 = thread_cpu_ns();
        uint64_t t0 = now_ns();
        int rc = notif_emit_len(h, payload, payload_len);
        uint64_t t1 = now_ns();
        uint64_t c1 = thread_cpu_ns(), q1 = runq_ns(sfd);
        if (rc < 0)
            e->errors++;
        e->lat[e->n++] = (double)(t1 - t0);
        if (t1 - t0 > 1000000) {
            e->slow++;
            e->slow_wall += t1 - t0;
            e->slow_cpu += c1 - c0;
            e->slow_runq += q1 - q0;
        }
    }
    close(sfd);
    return NULL;
}

static void stats(notif_stats *s)
{
    memset(s, 0, sizeof *s);
    notif_get_stats(h, s, sizeof *s);
}

static int wait_subscribers(uint64_t n, double seconds)
{
    uint64_t deadline = now_ns() + (uint64_t)(seconds * 1e9);
    notif_stats s;
    do {
        stats(&s);
        if (s.subscribers == n)
            return 0;
        sleep_us(10000);
    } while (now_ns() < deadline);
    return -1;
}

int main(void)
{
    harness_init("emit_under_wakeup_attack", 1);
    if (geteuid() != 0)
        die("run as root (the attacker drops to ATTACK_UID)");
    long seconds = env_long("ATTACK_SECONDS", 10), rate = env_long("ATTACK_RATE", 100);
    long dups = env_long("ATTACK_DUPS", 19000), uid = env_long("ATTACK_UID", 65534);
    int reconnect = env_long("ATTACK_RECONNECT", 1) != 0, hog = env_long("ATTACK_HOG", 1) != 0;
    const char *file = getenv("ATTACK_PAYLOAD") ? getenv("ATTACK_PAYLOAD") : "tests/fixtures/nova-instance-update.json";
    payload = load_message(file, &payload_len);
    signal(SIGPIPE, SIG_IGN);

    char dir[] = "/tmp/notif-attack-XXXXXX", path[128];
    if (!mkdtemp(dir) || chmod(dir, 0711) != 0)
        die("mkdtemp: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/notif.sock", dir);
    notif_options *o = notif_options_new();
    notif_options_set_mode(o, 0666);
    notif_options_set_linger_ms(o, 100);
    h = notif_open_with(path, o);
    notif_options_free(o);
    if (!h)
        die("notif_open: %s", notif_last_error());
    /* the thread names itself once it runs */
    for (int i = 0; i < 500 && !(server_tid = find_server_thread()); i++)
        sleep_us(10000);
    if (!server_tid)
        die("no thread named notif-server in /proc/self/task");

    ash = mmap(NULL, sizeof *ash, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (ash == MAP_FAILED)
        die("mmap: %s", strerror(errno));

    pid_t reader = fork();
    if (reader == 0)
        reader_main(path);
    if (wait_subscribers(1, 30) != 0)
        die("the root subscriber did not connect");
    sleep_us(300000); /* past the library's 100 ms wait before writing through to a silent peer */

    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    char up[128];
    FILE *uf = fopen("/proc/loadavg", "r");
    if (!uf || !fgets(up, sizeof up, uf))
        snprintf(up, sizeof up, "?\n");
    if (uf)
        fclose(uf);
    printf("finding 1: notif_emit_len of %zu B at %ld/s per emitting thread for %ld s; attacker uid %ld, "
           "%ld dup()s x 2 epoll sets, %s; one root subscriber reading; loadavg %s",
           payload_len, rate, seconds, uid, dups, reconnect ? "reconnecting when cut off" : "once (ATTACK_RECONNECT=0)",
           up);
    printf("%-7s %-9s %6s %9s %9s %9s %9s %10s %7s %8s %7s %7s %7s %5s %s\n", "threads", "case", "emits",
           "p50 us", "p99 us", "max us", "mean us", "server ms", "srv %", "peer ms", "writes", "wthru", "wakeups",
           "costly", "attacker");
    int failed = 0;
    char *last_lines[4];
    int nlast = 0;
    for (int ti = 0; ti < 2; ti++) {
        int nthreads = ti == 0 ? 1 : 4;
        for (int kase = 0; kase < 3; kase++) {
            /* 0: no attack; 1: the control, a CPU hog of the attacker's user
             * with no connection (ATTACK_HOG=0 leaves it out); 2: the attack */
            int attack = kase == 2;
            if (kase == 1 && !hog)
                continue;
            pid_t att = 0;
            memset(ash, 0, sizeof *ash);
            if (kase == 1) {
                att = fork();
                if (att == 0)
                    hog_main(uid);
                sleep_us(100000);
            }
            if (attack) {
                att = fork();
                if (att == 0) {
                    attacker_main(path, uid, dups, reconnect);
                    _exit(0);
                }
                uint64_t deadline = now_ns() + 60000000000ull;
                while (!__atomic_load_n(&ash->armed_ns, __ATOMIC_SEQ_CST) && now_ns() < deadline)
                    sleep_us(5000);
                if (!ash->armed_ns) {
                    fprintf(stderr, "the attacker never got armed\n");
                    failed = 1;
                }
            }
            notif_stats s0, s1;
            stats(&s0);
            uint64_t cpu0 = server_cpu_ns(), peer0 = att ? process_cpu_ns(att) : 0, t0 = now_ns();
            emitter_t em[4];
            pthread_t th[4];
            for (int i = 0; i < nthreads; i++) {
                memset(&em[i], 0, sizeof em[i]);
                em[i].rate = rate;
                em[i].seconds = seconds;
                em[i].start = t0 + 1000000; /* 1 ms from now */
                em[i].lat = malloc(sizeof(double) * (size_t)(rate * seconds + 1));
                pthread_create(&th[i], NULL, emitter, &em[i]);
            }
            size_t total = 0;
            uint64_t errors = 0, slow = 0, slow_wall = 0, slow_cpu = 0, slow_runq = 0;
            for (int i = 0; i < nthreads; i++) {
                pthread_join(th[i], NULL);
                total += em[i].n;
                errors += em[i].errors;
                slow += em[i].slow;
                slow_wall += em[i].slow_wall;
                slow_cpu += em[i].slow_cpu;
                slow_runq += em[i].slow_runq;
            }
            uint64_t t1 = now_ns(), cpu1 = server_cpu_ns(), peer1 = att ? process_cpu_ns(att) : 0;
            stats(&s1);
            double *all = malloc(sizeof(double) * (total ? total : 1)), sum = 0;
            size_t k = 0;
            for (int i = 0; i < nthreads; i++) {
                for (size_t j = 0; j < em[i].n; j++) {
                    all[k++] = em[i].lat[j];
                    sum += em[i].lat[j];
                }
                free(em[i].lat);
            }
            qsort(all, total, sizeof *all, cmp_double);
            char who[512] = "-";
            if (kase == 1)
                snprintf(who, sizeof who, "a uid-%ld process spinning, not connected", uid);
            if (attack) {
                uint64_t cut = ash->first_cut_ns, armed = ash->armed_ns;
                snprintf(who, sizeof who,
                         "%" PRIu64 " registrations/conn, %" PRIu64 " connection(s), %" PRIu64
                         " cut off (%" PRIu64 " too_costly)%s",
                         ash->registrations, ash->connections, ash->cuts, ash->too_costly, "");
                if (cut) {
                    size_t l = strlen(who);
                    const char *reason = strstr(ash->last_line, "\"reason\"");
                    snprintf(who + l, sizeof who - l, "; first %.1f ms after it was armed, %s",
                             (double)(cut - armed) / 1e6, reason ? reason : "(no reason line)");
                    last_lines[nlast++] = strdup(ash->last_line);
                }
            }
            double wall = (double)(t1 - t0);
            printf("%-7d %-9s %6zu %9.1f %9.1f %9.1f %9.1f %10.1f %7.1f %8.0f %7" PRIu64 " %7" PRIu64
                   " %7" PRIu64 " %5" PRIu64 " %s\n",
                   nthreads, kase == 0 ? "no attack" : kase == 1 ? "cpu hog" : "attack", total, percentile_sorted(all, total, 50) / 1e3,
                   percentile_sorted(all, total, 99) / 1e3, total ? all[total - 1] / 1e3 : 0, total ? sum / (double)total / 1e3 : 0,
                   (double)(cpu1 - cpu0) / 1e6, 100.0 * (double)(cpu1 - cpu0) / wall, (double)(peer1 - peer0) / 1e6,
                   s1.writes - s0.writes,
                   s1.written_through - s0.written_through, s1.wakeups - s0.wakeups,
                   s1.disconnected_costly - s0.disconnected_costly, who);
            if (slow)
                printf("        %" PRIu64 " emit(s) over 1 ms: %.1f ms wall = %.1f on CPU + %.1f waiting for a CPU + "
                       "%.1f blocked\n",
                       slow, (double)slow_wall / 1e6, (double)slow_cpu / 1e6, (double)slow_runq / 1e6,
                       ((double)slow_wall - (double)slow_cpu - (double)slow_runq) / 1e6);
            fflush(stdout);
            if (errors) {
                fprintf(stderr, "%" PRIu64 " emits failed\n", errors);
                failed = 1;
            }
            free(all);
            if (att) {
                kill(att, SIGKILL);
                waitpid(att, NULL, 0);
                if (wait_subscribers(1, 30) != 0)
                    fprintf(stderr, "the attacker's connection was not closed within 30 s\n");
                sleep_us(300000);
            }
        }
    }
    for (int i = 0; i < nlast; i++)
        printf("the attacker's last line when first cut off: %s\n", last_lines[i]);
    kill(reader, SIGKILL);
    waitpid(reader, NULL, 0);
    notif_close(h);
    rmdir(dir);
    return failed;
}
