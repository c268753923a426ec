/*
 * The subscriber processes: this program re-executed as
 * `notif_bench --sub KIND ADDRESS SHM SLOT EXPECT MODE ARG`, each reporting
 * through its slot of a shared memory file; and the parent's side, which
 * starts them, paces the publisher to the slowest and reaps them.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "notif_bench.h"

/* ------------------------------------------------------------------ shared memory with subscribers */

slot_t *slots;
char shm_path[128];

void *map_slots(const char *path, int create)
{
    int fd = open(path, O_RDWR | (create ? O_CREAT | O_TRUNC : 0), 0600);
    if (fd < 0)
        die("open %s: %s", path, strerror(errno));
    if (create && ftruncate(fd, sizeof(slot_t) * MAX_SLOTS) != 0)
        die("ftruncate: %s", strerror(errno));
    void *p = mmap(NULL, sizeof(slot_t) * MAX_SLOTS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    close(fd);
    return p;
}

/* ------------------------------------------------------------------ subscriber processes */

/* connect_unix (harness.c) or die */
static int connect_or_die(const char *path)
{
    int fd = connect_unix(path);
    if (fd < 0)
        die("cannot connect to %s: %s", path, strerror(errno));
    return fd;
}

static void finish(slot_t *s, uint64_t count, uint64_t expect)
{
    uint64_t t = now_ns();
    st(&s->last_ns, t);
    st(&s->count, count);
    if (count >= expect && ld(&s->done_ns) == 0)
        st(&s->done_ns, t);
}

/*
 * Once connected: says so in the slot; a subscriber that never reads
 * (MODE_STALL) stops there for good, the others get their read buffer.
 */
static char *connected(slot_t *s, int mode, size_t cap)
{
    st(&s->ready, 1);
    if (mode == MODE_STALL) {
        for (;;)
            pause();
    }
    return malloc(cap);
}

/* A plain socket reader (notif and raw): counts newlines. */
static int sub_stream(const char *path, slot_t *s, uint64_t expect, int mode, int arg)
{
    int fd = connect_or_die(path);
    size_t cap = 1 << 20;
    char *buf = connected(s, mode, cap);
    uint64_t count = 0;
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        st(&s->reads, ld(&s->reads) + 1);
        st(&s->bytes, ld(&s->bytes) + (uint64_t)n);
        uint64_t before = count;
        for (char *p = buf, *end = buf + n; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
            count++;
        if (count != before) {
            finish(s, count, expect);
            if (mode == MODE_ECHO)
                for (uint64_t i = before; i < count; i++)
                    if (write(arg, "x", 1) != 1)
                        return 1;
            if (mode == MODE_COUNT && count >= expect)
                break;
        }
    }
    return 0;
}

/* Holds `nsock` connections and reads them all; count is the least any got. */
static int sub_hold(const char *path, slot_t *s, int nsock)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    uint64_t *counts = calloc((size_t)nsock, sizeof *counts);
    int *fds = calloc((size_t)nsock, sizeof *fds);
    for (int i = 0; i < nsock; i++) {
        fds[i] = connect_or_die(path);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0)
            die("epoll_ctl: %s", strerror(errno));
    }
    st(&s->ready, 1);
    char *buf = malloc(1 << 16);
    struct epoll_event evs[256];
    int open_socks = nsock;
    while (open_socks > 0) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        for (int e = 0; e < n; e++) {
            int i = (int)evs[e].data.u32;
            ssize_t r = read(fds[i], buf, 1 << 16);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
                close(fds[i]);
                open_socks--;
                counts[i] = UINT64_MAX;
                continue;
            }
            for (char *p = buf, *end = buf + r; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
                counts[i]++;
        }
        uint64_t least = UINT64_MAX;
        for (int i = 0; i < nsock; i++)
            if (counts[i] < least)
                least = counts[i];
        st(&s->count, least);
    }
    return 0;
}

static int sub_zmq(const char *endpoint, slot_t *s, uint64_t expect, int mode, int arg)
{
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sock, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_SUBSCRIBE, "", 0);
    if (zmq_connect(sock, endpoint) != 0)
        die("zmq_connect %s: %s", endpoint, zmq_strerror(zmq_errno()));
    size_t cap = 1 << 20;
    char *buf = connected(s, mode, cap);
    uint64_t count = 0;
    for (;;) {
        int n = zmq_recv(sock, buf, cap, 0);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (n == 1) { /* a sync message from the publisher's warm-up */
            st(&s->synced, 1);
            continue;
        }
        count++;
        finish(s, count, expect);
        if (mode == MODE_ECHO && write(arg, "x", 1) != 1)
            break;
        if (mode == MODE_COUNT && count >= expect)
            break;
    }
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_close(sock);
    zmq_ctx_shutdown(ctx); /* not zmq_ctx_term: see pub_close */
    return 0;
}

int subscriber_main(int argc, char **argv)
{
    /* --sub KIND ADDRESS SHM SLOT EXPECT MODE ARG */
    if (argc != 9)
        die("usage: --sub KIND ADDRESS SHM SLOT EXPECT MODE ARG");
    const char *kind = argv[2], *addr = argv[3];
    slot_t *all = map_slots(argv[4], 0);
    slot_t *s = &all[atoi(argv[5])];
    uint64_t expect = strtoull(argv[6], NULL, 10);
    int mode = atoi(argv[7]), arg = atoi(argv[8]);
    signal(SIGPIPE, SIG_IGN);
    if (mode == MODE_HOLD)
        return sub_hold(addr, s, arg);
    if (strcmp(kind, "zmq") == 0)
        return sub_zmq(addr, s, expect, mode, arg);
    return sub_stream(addr, s, expect, mode, arg);
}

/* ------------------------------------------------------------------ the parent's side */

void spawn_subs(subs_t *subs, const char *kind, const char *addr, int first_slot, int n,
                uint64_t expect, int mode, int arg)
{
    for (int i = 0; i < n; i++) {
        int slot = first_slot + i;
        memset(&slots[slot], 0, sizeof slots[slot]);
        char s_slot[16], s_expect[32], s_mode[16], s_arg[16];
        snprintf(s_slot, sizeof s_slot, "%d", slot);
        snprintf(s_expect, sizeof s_expect, "%" PRIu64, expect);
        snprintf(s_mode, sizeof s_mode, "%d", mode);
        snprintf(s_arg, sizeof s_arg, "%d", arg);
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            if (g_drop_uid >= 0 &&
                (setgroups(0, NULL) != 0 || setgid((gid_t)g_drop_gid) != 0 || setuid((uid_t)g_drop_uid) != 0)) {
                fprintf(stderr, "notif_bench: subscriber: cannot drop to uid %ld gid %ld: %s\n", g_drop_uid,
                        g_drop_gid, strerror(errno));
                _exit(126);
            }
            execl(self_exe, self_exe, "--sub", kind, addr, shm_path, s_slot, s_expect, s_mode, s_arg,
                  (char *)NULL);
            _exit(127);
        }
        subs->pid[subs->n++] = pid;
    }
}

void reap_subs(subs_t *subs)
{
    for (int i = 0; i < subs->n; i++)
        kill(subs->pid[i], SIGKILL);
    for (int i = 0; i < subs->n; i++)
        waitpid(subs->pid[i], NULL, 0);
    subs->n = 0;
}

int wait_ready(int first, int n, double seconds)
{
    uint64_t deadline = now_ns() + (uint64_t)(seconds * 1e9);
    for (int i = first; i < first + n; i++)
        while (!ld(&slots[i].ready)) {
            if (now_ns() > deadline)
                return -1;
            sleep_us(200);
        }
    return 0;
}

uint64_t min_count(int first, int n)
{
    uint64_t m = UINT64_MAX;
    for (int i = first; i < first + n; i++) {
        uint64_t c = ld(&slots[i].count);
        if (c < m)
            m = c;
    }
    return m;
}

/* Keeps the publisher at most `window` messages ahead of the slowest reader. */
void pace(int first, int n, uint64_t sent, uint64_t window)
{
    /* Bounded: a subscriber that stops making progress (it died, or messages
     * it waits for were never delivered) fails the run with the figures
     * instead of hanging it. */
    uint64_t deadline = now_ns() + 60000000000ull;
    while (sent > window && min_count(first, n) < sent - window) {
        if (now_ns() > deadline)
            die("subscribers stopped making progress: the slowest has %" PRIu64 " of %" PRIu64
                " sent (window %" PRIu64 ")",
                min_count(first, n), sent, window);
        sleep_us(20);
    }
}

/* Waits until every reader reports done; returns the latest done time, 0 on timeout. */
uint64_t wait_done(int first, int n, double seconds)
{
    uint64_t deadline = now_ns() + (uint64_t)(seconds * 1e9), last = 0;
    for (int i = first; i < first + n; i++) {
        uint64_t d;
        while ((d = ld(&slots[i].done_ns)) == 0) {
            if (now_ns() > deadline)
                return 0;
            sleep_us(200);
        }
        if (d > last)
            last = d;
    }
    return last;
}

