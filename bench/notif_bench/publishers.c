/*
 * The publishers behind one interface: notif (notif_open_with), ZeroMQ PUB
 * (ipc://) and a raw Unix socket that batches 64 KiB writes to each
 * subscriber. pub_send is in notif_bench.h (inlined in the measuring loops).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "notif_bench.h"

const char *sys_name[] = {"notif", "zmq", "raw"};

size_t g_sub_buffer = 4u << 20;
/* How far (bytes) notif and zmq publishers may run ahead of their slowest reader. */
uint64_t g_window_bytes = 2u << 20;

/* The window in messages; 0 (BENCH_WINDOW_KIB=0): no pacing at all. */
uint64_t window_for(size_t len)
{
    return g_window_bytes ? g_window_bytes / (len + 1) + 1 : UINT64_MAX;
}

void pub_open(pub_t *p, int sys)
{
    memset(p, 0, sizeof *p);
    p->sys = sys;
    p->listen_fd = -1;
    if (sys == SYS_NOTIF) {
        snprintf(p->addr, sizeof p->addr, "%s/notif.sock", tmpdir);
        notif_options *o = notif_options_new();
        notif_options_set_subscriber_buffer(o, g_sub_buffer);
        notif_options_set_linger_ms(o, 100);
        if (g_drop_uid >= 0)
            notif_options_set_mode(o, 0666); /* so that the other user may connect */
        p->h = notif_open_with(p->addr, o);
        notif_options_free(o);
        if (!p->h)
            die("notif_open: %s", notif_last_error());
    } else if (sys == SYS_ZMQ) {
        snprintf(p->addr, sizeof p->addr, "ipc://%s/zmq.sock", tmpdir);
        p->zctx = zmq_ctx_new();
        p->zpub = zmq_socket(p->zctx, ZMQ_PUB);
        int zero = 0;
        zmq_setsockopt(p->zpub, ZMQ_SNDHWM, &zero, sizeof zero);
        if (zmq_bind(p->zpub, p->addr) != 0)
            die("zmq_bind %s: %s", p->addr, zmq_strerror(zmq_errno()));
        if (g_drop_uid >= 0 && chmod(p->addr + strlen("ipc://"), 0666) != 0)
            die("chmod %s: %s", p->addr, strerror(errno));
    } else {
        snprintf(p->addr, sizeof p->addr, "%s/raw.sock", tmpdir);
        unlink(p->addr);
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof sa);
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", p->addr);
        p->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (bind(p->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(p->listen_fd, 128) != 0)
            die("raw bind/listen %s: %s", p->addr, strerror(errno));
        if (g_drop_uid >= 0 && chmod(p->addr, 0666) != 0)
            die("chmod %s: %s", p->addr, strerror(errno));
        p->buf = malloc(64 * 1024);
    }
}

/*
 * After the subscribers in slots [first, first+n) were started: wait until the
 * publisher knows them all (`conns` connections: more than n for holders).
 */
int pub_attach_conns(pub_t *p, int first, int n, int conns)
{
    if (wait_ready(first, n, 30) != 0)
        return -1;
    uint64_t deadline = now_ns() + 30000000000ull;
    if (p->sys == SYS_NOTIF) {
        notif_stats stats;
        do {
            notif_get_stats(p->h, &stats, sizeof stats);
            if (stats.subscribers >= (uint64_t)conns)
                return 0;
            sleep_us(200);
        } while (now_ns() < deadline);
        return -1;
    }
    if (p->sys == SYS_ZMQ) {
        /* PUB/SUB's slow joiner: ping until every SUB has its subscription in place. */
        for (;;) {
            zmq_send(p->zpub, "S", 1, 0);
            int all = 1;
            for (int i = first; i < first + n; i++)
                all &= ld(&slots[i].synced) != 0;
            if (all)
                return 0;
            if (now_ns() > deadline)
                return -1;
            sleep_us(1000);
        }
    }
    while (p->nfd < n) {
        int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            return -1;
        p->fds[p->nfd++] = fd;
    }
    return 0;
}

int pub_attach(pub_t *p, int first, int n) { return pub_attach_conns(p, first, n, n); }

void raw_flush(pub_t *p)
{
    for (int i = 0; i < p->nfd; i++) {
        size_t off = 0;
        while (off < p->used) {
            ssize_t w = send(p->fds[i], p->buf + off, p->used - off, MSG_NOSIGNAL);
            p->raw_writes++;
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                die("raw write: %s", strerror(errno));
            off += (size_t)w;
        }
    }
    p->used = 0;
}

void pub_flush(pub_t *p)
{
    if (p->sys == SYS_RAW && p->used)
        raw_flush(p);
}

void pub_close(pub_t *p, notif_stats *final)
{
    if (p->sys == SYS_NOTIF) {
        if (final)
            notif_get_stats(p->h, final, sizeof *final);
        notif_close(p->h);
    } else if (p->sys == SYS_ZMQ) {
        int zero = 0;
        zmq_setsockopt(p->zpub, ZMQ_LINGER, &zero, sizeof zero);
        zmq_close(p->zpub);
        /* Not zmq_ctx_term: with libzmq 4.3.4 it sometimes blocks forever in
         * poll() even with linger 0 once the subscribers have gone (seen here:
         * the smoke run hung in pub_close until its 240 s limit). Shutting the
         * context down never blocks; its idle I/O thread ends with the process. */
        zmq_ctx_shutdown(p->zctx);
    } else {
        for (int i = 0; i < p->nfd; i++)
            close(p->fds[i]);
        close(p->listen_fd);
        unlink(p->addr);
        free(p->buf);
    }
}

const char *sub_kind(int sys) { return sys == SYS_ZMQ ? "zmq" : "stream"; }

