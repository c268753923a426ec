/*
 * Helpers for the C tests: checks that report and count failures, a temporary
 * directory, plain-socket subscribers, and waiting for the server thread.
 * Header-only (static functions) so each test is one translation unit.
 */
#ifndef NOTIF_TESTLIB_H
#define NOTIF_TESTLIB_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "notif.h"

static int tl_failures = 0;
static int tl_checks = 0;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        tl_checks++;                                                                      \
        if (!(cond)) {                                                                    \
            tl_failures++;                                                                \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, " (last error: \"%s\")\n", notif_last_error());               \
        }                                                                                 \
    } while (0)

/* An int result equals the expected value. */
#define CHECK_RC(expr, expected)                                                          \
    do {                                                                                  \
        int tl_rc_ = (expr);                                                              \
        int tl_expected_ = (expected);                                                    \
        CHECK(tl_rc_ == tl_expected_, "%s returned %d (%s), expected %d (%s)", #expr,     \
              tl_rc_, tl_rc_ < 0 ? notif_strerror(tl_rc_) : "ok", tl_expected_,            \
              tl_expected_ < 0 ? notif_strerror(tl_expected_) : "ok");                     \
    } while (0)

/* The last error message is set and contains `word`. */
#define CHECK_LAST_ERROR(word)                                                            \
    do {                                                                                  \
        const char *tl_msg_ = notif_last_error();                                         \
        CHECK(tl_msg_ != NULL && tl_msg_[0] != '\0' && strstr(tl_msg_, (word)) != NULL,   \
              "notif_last_error() should mention \"%s\"", (word));                        \
    } while (0)

#define FATAL(...)                                                                        \
    do {                                                                                  \
        fprintf(stderr, "FATAL %s:%d: ", __FILE__, __LINE__);                             \
        fprintf(stderr, __VA_ARGS__);                                                     \
        fprintf(stderr, " (errno %d: %s; last error: \"%s\")\n", errno, strerror(errno),  \
                notif_last_error());                                                      \
        exit(2);                                                                          \
    } while (0)

static inline int tl_finish(const char *name)
{
    if (tl_failures == 0) {
        printf("%s: all %d checks passed\n", name, tl_checks);
        return 0;
    }
    fprintf(stderr, "%s: %d of %d checks FAILED\n", name, tl_failures, tl_checks);
    return 1;
}

static inline long long tl_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static inline void tl_sleep_ms(long ms)
{
    struct timespec t;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* Timeouts stretch under valgrind: TEST_TIMEOUT_SCALE=10 multiplies them. */
static inline long tl_timeout(long ms)
{
    const char *scale = getenv("TEST_TIMEOUT_SCALE");
    long factor = scale ? atol(scale) : 1;
    return ms * (factor > 0 ? factor : 1);
}

/* A fresh directory under $TMPDIR (or /tmp); the caller removes it with tl_rmdir. */
static inline void tl_make_temp_dir(char *out, size_t size, const char *prefix)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    snprintf(out, size, "%s/%s-XXXXXX", tmp, prefix);
    if (mkdtemp(out) == NULL)
        FATAL("mkdtemp(%s)", out);
}

/* Removes a directory and the files directly in it (the tests make no deeper trees). */
static inline void tl_remove_dir(const char *dir)
{
    char path[1024];
    struct dirent *entry;
    DIR *d = opendir(dir);
    if (d != NULL) {
        while ((entry = readdir(d)) != NULL) {
            if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
            if (unlink(path) != 0)
                rmdir(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static inline socklen_t tl_address(const char *path, struct sockaddr_un *addr)
{
    size_t len = strlen(path);
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    if (len >= sizeof addr->sun_path)
        FATAL("address too long for a test: %s", path);
    if (path[0] == '@') {
        memcpy(addr->sun_path + 1, path + 1, len - 1);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    }
    memcpy(addr->sun_path, path, len + 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

/* Connects a plain-socket subscriber; -1 with errno on failure. */
static inline int tl_connect(const char *path)
{
    struct sockaddr_un addr;
    socklen_t len = tl_address(path, &addr);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, len) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static inline notif_stats tl_stats(notif_handle *handle)
{
    notif_stats stats;
    memset(&stats, 0, sizeof stats);
    if (notif_get_stats(handle, &stats, sizeof(notif_stats)) != 0)
        FATAL("notif_get_stats");
    return stats;
}

/* Waits until the server thread counts exactly `count` subscribers. */
static inline int tl_wait_subscribers(notif_handle *handle, unsigned long long count)
{
    long long give_up = tl_now_ms() + tl_timeout(5000);
    while (tl_stats(handle).subscribers != count) {
        if (tl_now_ms() > give_up) {
            fprintf(stderr, "timed out waiting for %llu subscribers (have %llu)\n", count,
                    (unsigned long long)tl_stats(handle).subscribers);
            return -1;
        }
        tl_sleep_ms(2);
    }
    return 0;
}

/* A line reader over a socket with a growable buffer. */
typedef struct {
    int fd;
    char *data;
    size_t used;
    size_t capacity;
    int eof;
} tl_reader;

static inline void tl_reader_init(tl_reader *r, int fd)
{
    r->fd = fd;
    r->used = 0;
    r->capacity = 4096;
    r->data = malloc(r->capacity);
    r->eof = 0;
    if (r->data == NULL)
        FATAL("malloc");
}

static inline void tl_reader_free(tl_reader *r)
{
    free(r->data);
    r->data = NULL;
}

/* Reads one line without its '\n' into a new malloc'd string (caller frees).
 * Returns NULL on timeout or end of stream (r->eof says which). */
static inline char *tl_read_line(tl_reader *r, long timeout_ms)
{
    long long give_up = tl_now_ms() + tl_timeout(timeout_ms);
    for (;;) {
        char *newline = r->used ? memchr(r->data, '\n', r->used) : NULL;
        struct pollfd pfd;
        long long left;
        ssize_t n;
        if (newline != NULL) {
            size_t len = (size_t)(newline - r->data);
            char *line = malloc(len + 1);
            if (line == NULL)
                FATAL("malloc");
            memcpy(line, r->data, len);
            line[len] = '\0';
            r->used -= len + 1;
            memmove(r->data, newline + 1, r->used);
            return line;
        }
        if (r->eof)
            return NULL;
        left = give_up - tl_now_ms();
        if (left < 0)
            left = 0;
        pfd.fd = r->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, (int)left) <= 0) {
            if (left == 0)
                return NULL; /* timed out (or nothing there for a zero timeout) */
            continue;
        }
        if (r->used == r->capacity) {
            char *bigger = realloc(r->data, r->capacity * 2);
            if (bigger == NULL)
                FATAL("realloc");
            r->data = bigger;
            r->capacity *= 2;
        }
        n = read(r->fd, r->data + r->used, r->capacity - r->used);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            r->eof = 1;
            continue;
        }
        r->used += (size_t)n;
    }
}

/* Whole file into a malloc'd buffer (NUL added, not counted in *len). */
static inline char *tl_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t used = 0, capacity = 0, n;
    if (f == NULL)
        FATAL("cannot open %s", path);
    do {
        if (capacity - used < 4096) {
            capacity = capacity ? capacity * 2 : 8192;
            data = realloc(data, capacity);
            if (data == NULL)
                FATAL("realloc");
        }
        n = fread(data + used, 1, capacity - used - 1, f);
        used += n;
    } while (n > 0);
    fclose(f);
    data[used] = '\0';
    if (len)
        *len = used;
    return data;
}

#ifndef FIXTURES_DIR
#define FIXTURES_DIR "tests/fixtures"
#endif

#endif /* NOTIF_TESTLIB_H */
