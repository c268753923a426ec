/*
 * subscriber_lib: reads notifications with libnotif's subscriber client,
 * which reconnects by itself and can ask the publisher for a filter, drop
 * markers and heartbeats (docs/subscription-protocol.md).
 *
 *     subscriber_lib SOCKET_PATH [REQUEST_JSON] [MAX_MESSAGES] [SECONDS]
 *
 * Connects to SOCKET_PATH (a file path, or @name for an abstract socket; the
 * publisher may start later) and prints every notification to stdout, one
 * per line. REQUEST_JSON is a subscription request, e.g.
 *     '{"subscribe":{"event_types":["compute.instance.*"]},"markers":true}'
 * ("" or "-": the plain stream). Stops after MAX_MESSAGES notifications or
 * SECONDS seconds (0, the default, means no limit). Reconnections and drops
 * are reported on stderr; it exits 0 when it stopped at a limit, 1 on error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notif.h"

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int parse_count(const char *text, const char *what, unsigned long *out)
{
    char *end = NULL;
    errno = 0;
    *out = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
        fprintf(stderr, "subscriber_lib: %s must be a non-negative integer, not '%s'\n", what,
                text);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *path, *request = NULL;
    unsigned long max_messages = 0, seconds = 0, received = 0;
    long long deadline = -1;
    notif_subscriber *s;
    int status = 0;

    if (argc < 2 || argc > 5) {
        fprintf(stderr,
                "usage: %s SOCKET_PATH [REQUEST_JSON (\"\": none)] [MAX_MESSAGES (0: no limit)] "
                "[SECONDS (0: no limit)]\n",
                argv[0]);
        return 2;
    }
    path = argv[1];
    if (argc > 2 && argv[2][0] != '\0' && strcmp(argv[2], "-") != 0)
        request = argv[2];
    if (argc > 3 && parse_count(argv[3], "MAX_MESSAGES", &max_messages) != 0)
        return 2;
    if (argc > 4 && parse_count(argv[4], "SECONDS", &seconds) != 0)
        return 2;
    if (seconds > 0)
        deadline = now_ms() + (long long)seconds * 1000;

    s = notif_subscribe(path, request);
    if (s == NULL) {
        fprintf(stderr, "subscriber_lib: %s: %s\n", path, notif_last_error());
        return 1;
    }

    while (max_messages == 0 || received < max_messages) {
        const char *msg;
        size_t len;
        int timeout = -1, rc;

        if (deadline >= 0) {
            long long left = deadline - now_ms();
            if (left <= 0)
                break;
            timeout = left > 1000000 ? 1000000 : (int)left;
        }
        rc = notif_recv(s, &msg, &len, timeout);
        if (rc == NOTIF_RECV_MESSAGE) {
            /* msg is NUL-terminated too, but len is all that is needed. */
            fwrite(msg, 1, len, stdout);
            fputc('\n', stdout);
            fflush(stdout);
            received++;
        } else if (rc == NOTIF_RECV_RECONNECTED) {
            fprintf(stderr, "subscriber_lib: reconnected to %s (notifications may have been missed)\n",
                    path);
        } else if (rc == NOTIF_RECV_DROPPED) {
            fprintf(stderr, "subscriber_lib: the publisher dropped notifications for us: %llu in total\n",
                    (unsigned long long)notif_subscriber_dropped(s));
        } else if (rc < 0) {
            fprintf(stderr, "subscriber_lib: %s (%s)\n", notif_strerror(rc), notif_last_error());
            if (rc == -EPROTO) {
                status = 1; /* a refused request: retrying cannot help */
                break;
            }
            /* Anything else happened while reconnecting: the next call tries again. */
        }
    }

    fprintf(stderr, "subscriber_lib: received %lu notifications, %llu dropped\n", received,
            (unsigned long long)notif_subscriber_dropped(s));
    notif_unsubscribe(s);
    return status;
}
