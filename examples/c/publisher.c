/*
 * publisher: a small daemon that publishes oslo-shaped notifications with
 * libnotif.
 *
 *     publisher SOCKET_PATH [RATE_PER_SEC] [COUNT]
 *
 * Opens SOCKET_PATH (a file path, or @name for an abstract socket) with
 * notif_open_with and mode 0660, then emits RATE_PER_SEC notifications a
 * second (default 5) until SIGINT or SIGTERM, or until COUNT have been emitted
 * (default 0: no limit). With nobody connected a notification is simply
 * dropped: that is how notif works. At exit it prints the publisher's
 * counters to stderr and closes the handle, which removes the socket file.
 *
 * Watch it with: socat - UNIX-CONNECT:SOCKET_PATH | jq
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "notif.h"

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int signo)
{
    (void)signo;
    stop_requested = 1;
}

static int install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: let the sleep end early */
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0) {
        perror("publisher: sigaction");
        return -1;
    }
    return 0;
}

/* Parses a non-negative number; returns -1 on junk. */
static double parse_number(const char *text, const char *what)
{
    char *end = NULL;
    double value;
    errno = 0;
    value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || value < 0) {
        fprintf(stderr, "publisher: %s must be a non-negative number, not '%s'\n", what, text);
        return -1;
    }
    return value;
}

/* oslo's timestamp format, in UTC: "2026-11-27 08:00:00.123456". */
static void format_timestamp(char *out, size_t size)
{
    struct timespec now;
    struct tm utc;
    char seconds[32];
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &utc);
    strftime(seconds, sizeof seconds, "%Y-%m-%d %H:%M:%S", &utc);
    snprintf(out, size, "%s.%06ld", seconds, (long)(now.tv_nsec / 1000));
}

static void timespec_add_ns(struct timespec *t, long long ns)
{
    long long total = (long long)t->tv_nsec + ns;
    t->tv_sec += (time_t)(total / 1000000000LL);
    t->tv_nsec = (long)(total % 1000000000LL);
}

static const char *const event_types[] = {
    "compute.instance.create.start",
    "compute.instance.create.end",
    "compute.instance.update",
    "compute.instance.power_off.end",
    "compute.instance.delete.end",
};
static const char *const states[] = {"building", "active", "active", "stopped", "deleted"};

static void print_stats(notif_handle *handle)
{
    notif_stats stats;
    int rc = notif_get_stats(handle, &stats, sizeof(notif_stats));
    if (rc < 0) {
        fprintf(stderr, "publisher: notif_get_stats: %s (%s)\n", notif_strerror(rc),
                notif_last_error());
        return;
    }
    fprintf(stderr,
            "publisher: stats: subscribers=%llu accepted=%llu emitted=%llu delivered=%llu "
            "dropped_no_subscriber=%llu dropped_slow=%llu dropped_backlog=%llu rejected=%llu "
            "bytes_sent=%llu disconnected=%llu dropped_closed=%llu refused=%llu fanout=%llu "
            "filtered=%llu\n",
            (unsigned long long)stats.subscribers, (unsigned long long)stats.accepted,
            (unsigned long long)stats.emitted, (unsigned long long)stats.delivered,
            (unsigned long long)stats.dropped_no_subscriber,
            (unsigned long long)stats.dropped_slow, (unsigned long long)stats.dropped_backlog,
            (unsigned long long)stats.rejected, (unsigned long long)stats.bytes_sent,
            (unsigned long long)stats.disconnected, (unsigned long long)stats.dropped_closed,
            (unsigned long long)stats.refused, (unsigned long long)stats.fanout,
            (unsigned long long)stats.filtered);
}

int main(int argc, char **argv)
{
    const char *path;
    double rate = 5.0;
    double count_arg = 0.0;
    unsigned long long count, sent = 0, failures = 0;
    long long period_ns;
    notif_options *opts;
    notif_handle *handle;
    struct timespec next;
    int rc;

    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s SOCKET_PATH [RATE_PER_SEC (default 5)] [COUNT (default 0: until SIGINT/SIGTERM)]\n",
                argv[0]);
        return 2;
    }
    path = argv[1];
    if (argc > 2 && ((rate = parse_number(argv[2], "RATE_PER_SEC")) < 0))
        return 2;
    if (argc > 3 && ((count_arg = parse_number(argv[3], "COUNT")) < 0))
        return 2;
    if (rate <= 0 || rate > 1e6) {
        fprintf(stderr, "publisher: RATE_PER_SEC must be above 0 and at most 1000000\n");
        return 2;
    }
    count = (unsigned long long)count_arg;
    period_ns = (long long)(1e9 / rate);

    if (install_signal_handlers() != 0)
        return 1;

    opts = notif_options_new();
    if (opts == NULL) {
        fprintf(stderr, "publisher: notif_options_new: out of memory\n");
        return 1;
    }
    /* Owner and group may read notifications; give the group with notif_options_set_group. */
    rc = notif_options_set_mode(opts, 0660);
    if (rc < 0) {
        fprintf(stderr, "publisher: notif_options_set_mode: %s (%s)\n", notif_strerror(rc),
                notif_last_error());
        notif_options_free(opts);
        return 1;
    }
    handle = notif_open_with(path, opts);
    notif_options_free(opts); /* only read during notif_open_with */
    if (handle == NULL) {
        int err = errno;
        fprintf(stderr, "publisher: cannot open %s: %s (%s)\n", path, notif_strerror(err),
                notif_last_error());
        return 1;
    }
    fprintf(stderr, "publisher: publishing on %s at %g/s (libnotif %s); stop with Ctrl-C\n", path,
            rate, notif_version());

    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!stop_requested && (count == 0 || sent < count)) {
        char message[1024];
        char timestamp[64];
        size_t kind = (size_t)(sent % (sizeof event_types / sizeof event_types[0]));
        const char *priority = sent % 20 == 19 ? "ERROR" : sent % 10 == 9 ? "WARN" : "INFO";

        format_timestamp(timestamp, sizeof timestamp);
        snprintf(message, sizeof message,
                 "{\"message_id\": \"%08llx-0000-4000-8000-%012llx\", "
                 "\"publisher_id\": \"compute.host1\", \"event_type\": \"%s\", "
                 "\"priority\": \"%s\", "
                 "\"payload\": {\"instance_id\": \"0b1f6b2e-52f1-4c8b-9f3e-%012llx\", "
                 "\"state\": \"%s\", \"host\": \"host1\", \"memory_mb\": 2048, \"vcpus\": 2, "
                 "\"sequence\": %llu}, "
                 "\"timestamp\": \"%s\"}",
                 (unsigned long long)(sent >> 48), sent & 0xffffffffffffULL, event_types[kind],
                 priority, sent / 5, states[kind], sent, timestamp);

        rc = notif_emit(handle, message);
        if (rc < 0) {
            failures++;
            fprintf(stderr, "publisher: emit #%llu failed: %s (%s)\n", sent, notif_strerror(rc),
                    notif_last_error());
        }
        sent++;

        /* Steady rate: sleep until an absolute deadline, so the time spent
         * emitting does not slow the rate down. A signal ends the sleep. */
        timespec_add_ns(&next, period_ns);
        if (!stop_requested && (count == 0 || sent < count)) {
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
                if (stop_requested)
                    break;
            }
        }
    }

    fprintf(stderr, "publisher: %s after %llu notifications (%llu failed)\n",
            stop_requested ? "stopping on signal" : "done", sent, failures);
    print_stats(handle);
    notif_close(handle); /* flushes queued messages, removes the socket file */
    return failures == 0 ? 0 : 1;
}
