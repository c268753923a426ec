/*
 * subscriber: reads notifications from a notif socket with plain POSIX
 * sockets; it does not use libnotif at all. Any language that can read lines
 * from a Unix socket can do the same.
 *
 *     subscriber SOCKET_PATH [MAX_MESSAGES] [SECONDS]
 *
 * Connects to SOCKET_PATH (a file path, or @name for an abstract socket),
 * retrying for a few seconds while it does not exist yet, and prints every
 * line (one JSON object each) to stdout. Stops after MAX_MESSAGES lines or
 * SECONDS seconds (0, the default, means no limit) or when the publisher
 * closes the connection. Lines may be of any length.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CONNECT_RETRY_MS 5000

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec t;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&t, NULL);
}

static int parse_count(const char *text, const char *what, unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    *out = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
        fprintf(stderr, "subscriber: %s must be a non-negative integer, not '%s'\n", what, text);
        return -1;
    }
    return 0;
}

/* Fills a sockaddr_un for a path or an abstract @name; returns its length or -1. */
static socklen_t make_address(const char *path, struct sockaddr_un *addr)
{
    size_t len = strlen(path);
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    if (path[0] == '@') {
        /* Abstract: a leading NUL, then the name, no terminator. */
        if (len - 1 > sizeof addr->sun_path - 1)
            return (socklen_t)-1;
        memcpy(addr->sun_path + 1, path + 1, len - 1);
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    }
    if (len >= sizeof addr->sun_path)
        return (socklen_t)-1;
    memcpy(addr->sun_path, path, len + 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
}

/* Connects, retrying while the socket is missing or nobody listens yet. */
static int connect_with_retry(const char *path, long long give_up_at)
{
    struct sockaddr_un addr;
    socklen_t len = make_address(path, &addr);
    if (len == (socklen_t)-1) {
        fprintf(stderr, "subscriber: socket path too long: %s\n", path);
        return -1;
    }
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        int err;
        if (fd < 0) {
            perror("subscriber: socket");
            return -1;
        }
        if (connect(fd, (struct sockaddr *)&addr, len) == 0)
            return fd;
        err = errno;
        close(fd);
        if ((err != ENOENT && err != ECONNREFUSED) || now_ms() >= give_up_at) {
            fprintf(stderr, "subscriber: cannot connect to %s: %s\n", path, strerror(err));
            return -1;
        }
        sleep_ms(100);
    }
}

int main(int argc, char **argv)
{
    const char *path;
    unsigned long max_messages = 0, seconds = 0, received = 0;
    long long deadline = -1, give_up_at;
    char *buffer = NULL;
    size_t capacity = 4096, used = 0;
    int fd, status = 0, done = 0;

    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s SOCKET_PATH [MAX_MESSAGES (0: no limit)] [SECONDS (0: no limit)]\n",
                argv[0]);
        return 2;
    }
    path = argv[1];
    if (argc > 2 && parse_count(argv[2], "MAX_MESSAGES", &max_messages) != 0)
        return 2;
    if (argc > 3 && parse_count(argv[3], "SECONDS", &seconds) != 0)
        return 2;
    if (seconds > 0)
        deadline = now_ms() + (long long)seconds * 1000;
    give_up_at = now_ms() + CONNECT_RETRY_MS;
    if (deadline >= 0 && deadline < give_up_at)
        give_up_at = deadline;

    fd = connect_with_retry(path, give_up_at);
    if (fd < 0)
        return 1;
    buffer = malloc(capacity);
    if (buffer == NULL) {
        perror("subscriber: malloc");
        close(fd);
        return 1;
    }

    while (!done && (max_messages == 0 || received < max_messages)) {
        struct pollfd pfd;
        int timeout = -1, ready;
        ssize_t n;
        char *start, *newline;

        if (deadline >= 0) {
            long long left = deadline - now_ms();
            if (left <= 0)
                break;
            timeout = left > 1000000 ? 1000000 : (int)left;
        }
        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        ready = poll(&pfd, 1, timeout);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            perror("subscriber: poll");
            status = 1;
            break;
        }
        if (ready == 0)
            continue; /* the deadline check above ends the loop */

        /* Grow the buffer when it is full: a line may be of any length. */
        if (used == capacity) {
            char *bigger;
            if (capacity > ((size_t)-1) / 2) {
                fprintf(stderr, "subscriber: line too long\n");
                status = 1;
                break;
            }
            bigger = realloc(buffer, capacity * 2);
            if (bigger == NULL) {
                perror("subscriber: realloc");
                status = 1;
                break;
            }
            buffer = bigger;
            capacity *= 2;
        }
        n = read(fd, buffer + used, capacity - used);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            perror("subscriber: read");
            status = 1;
            break;
        }
        if (n == 0) {
            if (used > 0)
                fprintf(stderr, "subscriber: %lu bytes of an unfinished line at the end\n",
                        (unsigned long)used);
            fprintf(stderr, "subscriber: the publisher closed the connection\n");
            break;
        }
        used += (size_t)n;

        /* Print every complete line; keep the unfinished rest. */
        start = buffer;
        while ((newline = memchr(start, '\n', used - (size_t)(start - buffer))) != NULL) {
            fwrite(start, 1, (size_t)(newline - start) + 1, stdout);
            start = newline + 1;
            received++;
            if (max_messages != 0 && received >= max_messages) {
                done = 1;
                break;
            }
        }
        used -= (size_t)(start - buffer);
        memmove(buffer, start, used);
        if (fflush(stdout) != 0) {
            perror("subscriber: stdout");
            status = 1;
            break;
        }
    }

    fprintf(stderr, "subscriber: received %lu notification%s\n", received,
            received == 1 ? "" : "s");
    free(buffer);
    close(fd);
    return status;
}
