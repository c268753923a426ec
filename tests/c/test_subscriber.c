/*
 * test_subscriber: the subscriber client through notif.h (notif_subscribe,
 * notif_recv, notif_subscriber_fd, notif_subscriber_dropped,
 * notif_unsubscribe) against a notif_open publisher in the same process:
 * argument errors, delivery, timeouts, filters, drop markers, reconnection
 * across a publisher restart, polling the descriptor.
 *
 * Build: see the Makefile. Exits non-zero if any check fails.
 */
#include <signal.h>

#include "testlib.h"

static char dir[256];

static void path_in_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static notif_subscriber *subscribe_or_die(const char *path, const char *request)
{
    notif_subscriber *s = notif_subscribe(path, request);
    if (s == NULL)
        FATAL("notif_subscribe(%s, %s)", path, request ? request : "NULL");
    return s;
}

/* The next event other than a timeout, waiting up to `ms` (scaled); 0 if none came. */
static int next_event(notif_subscriber *s, const char **msg, size_t *len, long ms)
{
    long long give_up = tl_now_ms() + tl_timeout(ms);
    for (;;) {
        long long left = give_up - tl_now_ms();
        int rc;
        if (left < 0)
            left = 0;
        rc = notif_recv(s, msg, len, (int)left);
        if (rc != NOTIF_RECV_TIMEOUT || left == 0)
            return rc;
    }
}

/* Checks that the next event is the notification `expected`. */
static void expect_message(notif_subscriber *s, const char *expected)
{
    const char *msg = NULL;
    size_t len = 0;
    int rc = next_event(s, &msg, &len, 5000);
    CHECK(rc == NOTIF_RECV_MESSAGE, "notif_recv returned %d, expected a message (%s)", rc,
          expected);
    if (rc != NOTIF_RECV_MESSAGE)
        return;
    CHECK(msg != NULL, "message pointer is NULL");
    if (msg == NULL)
        return;
    CHECK(len == strlen(expected) && memcmp(msg, expected, len) == 0,
          "got \"%.*s\", expected \"%s\"", (int)len, msg, expected);
    CHECK(msg[len] == '\0', "the message is not NUL-terminated");
}

/* Calls notif_recv with short timeouts until the publisher counts `count` subscribers. */
static void recv_until_subscribed(notif_handle *h, notif_subscriber *s, unsigned long long count)
{
    long long give_up = tl_now_ms() + tl_timeout(5000);
    while (tl_stats(h).subscribers != count) {
        const char *msg;
        size_t len;
        int rc = notif_recv(s, &msg, &len, 10);
        CHECK(rc == NOTIF_RECV_TIMEOUT || rc == NOTIF_RECV_RECONNECTED,
              "notif_recv returned %d while connecting", rc);
        if (tl_now_ms() > give_up)
            FATAL("the subscriber never connected");
    }
}

/* ------------------------------------------------------------------ arguments */

static void test_arguments(void)
{
    char path[512];
    const char *msg = "untouched";
    size_t len = 99;
    notif_subscriber *s;

    path_in_dir(path, sizeof path, "args.sock");

    errno = 0;
    CHECK(notif_subscribe(NULL, NULL) == NULL, "NULL path accepted");
    CHECK(errno == EINVAL, "errno %d for a NULL path", errno);
    CHECK_LAST_ERROR("path");

    errno = 0;
    CHECK(notif_subscribe("", NULL) == NULL, "empty path accepted");
    CHECK(errno == EINVAL, "errno %d for an empty path", errno);

    errno = 0;
    CHECK(notif_subscribe(path, "not json") == NULL, "bad request JSON accepted");
    CHECK(errno == EINVAL, "errno %d for bad request JSON", errno);
    CHECK_LAST_ERROR("not valid JSON");

    errno = 0;
    CHECK(notif_subscribe(path, "{\"subscribe\":{\"event_types\":[]}}") == NULL,
          "an empty list accepted");
    CHECK(errno == EINVAL, "errno %d for an empty list", errno);
    CHECK_LAST_ERROR("empty");

    errno = 0;
    CHECK(notif_subscribe(path, "{\"heartbeat_s\":0}") == NULL, "heartbeat 0 accepted");
    CHECK(errno == EINVAL, "errno %d for heartbeat 0", errno);
    CHECK_LAST_ERROR("heartbeat_s");

    errno = 0;
    CHECK(notif_subscribe(path, "{\"stats\":true}") == NULL, "a stats request accepted");
    CHECK(errno == EINVAL, "errno %d for a stats request", errno);
    CHECK_LAST_ERROR("stats");

    CHECK_RC(notif_recv(NULL, &msg, &len, 0), -EINVAL);
    CHECK_LAST_ERROR("NULL");
    CHECK_RC(notif_subscriber_fd(NULL), -EINVAL);
    CHECK(notif_subscriber_dropped(NULL) == 0, "dropped of NULL is not 0");
    notif_unsubscribe(NULL); /* a no-op */

    /* Nobody there yet: it succeeds and keeps trying. */
    s = subscribe_or_die(path, NULL);
    CHECK_RC(notif_recv(s, NULL, &len, 0), -EINVAL);
    CHECK_LAST_ERROR("msg");
    CHECK_RC(notif_recv(s, &msg, NULL, 0), -EINVAL);
    CHECK_LAST_ERROR("len");
    CHECK_RC(notif_recv(s, &msg, &len, 0), NOTIF_RECV_TIMEOUT);
    CHECK(msg == NULL && len == 0, "a timeout leaves *msg/*len set");
    CHECK(notif_subscriber_fd(s) >= 0, "no descriptor while waiting to reconnect: %d",
          notif_subscriber_fd(s));
    notif_unsubscribe(s);
    /* A request line may end with its newline. */
    s = subscribe_or_die(path, "{\"markers\":true}\n");
    notif_unsubscribe(s);
}

/* ------------------------------------------------------------------ delivery */

static void test_delivery_and_timeout(void)
{
    char path[512];
    char expected[128];
    const char *msg;
    size_t len;
    long long started, waited;
    int i;
    notif_handle *h;
    notif_subscriber *s;

    path_in_dir(path, sizeof path, "delivery.sock");
    h = notif_open(path);
    if (h == NULL)
        FATAL("notif_open(%s)", path);
    s = subscribe_or_die(path, NULL);
    if (tl_wait_subscribers(h, 1) != 0)
        FATAL("subscriber not counted");

    for (i = 0; i < 50; i++) {
        snprintf(expected, sizeof expected, "{\"event_type\":\"test\",\"n\":%d}", i);
        CHECK_RC(notif_emit(h, expected), 1);
    }
    CHECK_RC(notif_emit(h, "{ \"pretty\" : [ 1, 2 ] }"), 1);
    for (i = 0; i < 50; i++) {
        snprintf(expected, sizeof expected, "{\"event_type\":\"test\",\"n\":%d}", i);
        expect_message(s, expected);
    }
    expect_message(s, "{\"pretty\":[1,2]}");

    CHECK_RC(notif_recv(s, &msg, &len, 0), NOTIF_RECV_TIMEOUT);
    started = tl_now_ms();
    CHECK_RC(notif_recv(s, &msg, &len, 50), NOTIF_RECV_TIMEOUT);
    waited = tl_now_ms() - started;
    CHECK(waited >= 49 && waited < tl_timeout(5000), "a 50 ms timeout took %lld ms", waited);
    CHECK(notif_subscriber_dropped(s) == 0, "drops without markers");

    notif_unsubscribe(s);
    notif_close(h);
}

/* A 200 KiB line arrives whole. */
static void test_long_line(void)
{
    char path[512];
    size_t size = 200 * 1024, i;
    char *big = malloc(size + 64);
    notif_handle *h;
    notif_subscriber *s;

    if (big == NULL)
        FATAL("malloc");
    strcpy(big, "{\"fill\":\"");
    for (i = strlen(big); i < size; i++)
        big[i] = 'x';
    strcpy(big + size, "\"}");

    path_in_dir(path, sizeof path, "long.sock");
    h = notif_open(path);
    if (h == NULL)
        FATAL("notif_open(%s)", path);
    s = subscribe_or_die(path, NULL);
    if (tl_wait_subscribers(h, 1) != 0)
        FATAL("subscriber not counted");
    CHECK_RC(notif_emit(h, big), 1);
    CHECK_RC(notif_emit(h, "{\"after\":true}"), 1);
    expect_message(s, big);
    expect_message(s, "{\"after\":true}");
    notif_unsubscribe(s);
    notif_close(h);
    free(big);
}

/* ------------------------------------------------------------------ filters, markers */

static void test_filter(void)
{
    char path[512];
    notif_handle *h;
    notif_subscriber *s;
    const char *msg;
    size_t len;

    path_in_dir(path, sizeof path, "filter.sock");
    h = notif_open(path);
    if (h == NULL)
        FATAL("notif_open(%s)", path);
    s = subscribe_or_die(path, "{\"subscribe\":{\"event_types\":[\"compute.*\"],"
                               "\"priorities\":[\"ERROR\"]}}");
    if (tl_wait_subscribers(h, 1) != 0)
        FATAL("subscriber not counted");
    CHECK_RC(notif_emit(h, "{\"event_type\":\"image.update\",\"priority\":\"ERROR\"}"), 1);
    CHECK_RC(notif_emit(h, "{\"event_type\":\"compute.a\",\"priority\":\"INFO\"}"), 1);
    CHECK_RC(notif_emit(h, "{\"event_type\":\"compute.b\",\"priority\":\"error\"}"), 1);
    expect_message(s, "{\"event_type\":\"compute.b\",\"priority\":\"error\"}");
    CHECK_RC(notif_recv(s, &msg, &len, 20), NOTIF_RECV_TIMEOUT);
    notif_unsubscribe(s);
    notif_close(h);
}

/* Every message handed to a subscriber has an outcome: nothing is queued. */
static int quiet(notif_handle *h)
{
    notif_stats stats = tl_stats(h);
    return stats.fanout == stats.delivered + stats.dropped_slow + stats.dropped_closed;
}

/* A subscriber that does not read falls behind: with markers it is told how
 * many notifications it missed, and the count matches the publisher's. */
static void test_drop_markers(void)
{
    char path[512];
    char line[2048];
    notif_options *opts = notif_options_new();
    notif_handle *h;
    notif_subscriber *s;
    const char *msg;
    size_t len;
    int i, rc, got_final = 0, final_sent = 0, messages = 0, markers = 0;
    long long give_up;
    notif_stats stats;

    if (opts == NULL)
        FATAL("notif_options_new");
    CHECK_RC(notif_options_set_max_message(opts, 4096), 0);
    CHECK_RC(notif_options_set_subscriber_buffer(opts, 16 * 1024), 0);
    path_in_dir(path, sizeof path, "drops.sock");
    h = notif_open_with(path, opts);
    notif_options_free(opts);
    if (h == NULL)
        FATAL("notif_open_with(%s)", path);
    s = subscribe_or_die(path, "{\"subscribe\":{\"event_types\":[\"fill\"]},\"markers\":true}");
    if (tl_wait_subscribers(h, 1) != 0)
        FATAL("subscriber not counted");
    /* Drops are reported once the publisher has read the request: it has when
     * it filters a notification out for us. */
    give_up = tl_now_ms() + tl_timeout(5000);
    while (tl_stats(h).filtered == 0) {
        if (tl_now_ms() > give_up)
            FATAL("the publisher never applied the filter");
        notif_emit(h, "{\"event_type\":\"probe\"}");
        tl_sleep_ms(2);
    }

    memset(line, 0, sizeof line);
    strcpy(line, "{\"event_type\":\"fill\",\"x\":\"");
    memset(line + strlen(line), 'x', 1000);
    strcat(line, "\"}");
    for (i = 0; i < 500; i++)
        CHECK(notif_emit(h, line) >= 0, "emit %d failed", i);
    give_up = tl_now_ms() + tl_timeout(5000);
    while (tl_stats(h).dropped_slow == 0 && tl_now_ms() < give_up)
        tl_sleep_ms(2);
    CHECK(tl_stats(h).dropped_slow > 0, "nothing was dropped for a subscriber that does not read");

    /* Read everything, then one more notification after the drops. */
    give_up = tl_now_ms() + tl_timeout(10000);
    while (!got_final && tl_now_ms() < give_up) {
        rc = notif_recv(s, &msg, &len, 20);
        if (rc == NOTIF_RECV_MESSAGE && strcmp(msg, "{\"event_type\":\"fill\",\"final\":true}") == 0)
            got_final = 1;
        else if (rc == NOTIF_RECV_MESSAGE)
            messages++;
        else if (rc == NOTIF_RECV_DROPPED)
            markers++;
        else if (rc == NOTIF_RECV_TIMEOUT && !final_sent && quiet(h)) {
            /* The publisher's queue for us is empty: one more notification
             * fits, and the drop marker must come before it. */
            CHECK_RC(notif_emit(h, "{\"event_type\":\"fill\",\"final\":true}"), 1);
            final_sent = 1;
        }
        else
            CHECK(rc == NOTIF_RECV_TIMEOUT, "notif_recv returned %d", rc);
    }
    CHECK(got_final, "the notification after the drops never came");
    CHECK(markers > 0, "no drop marker");
    stats = tl_stats(h);
    CHECK(notif_subscriber_dropped(s) == stats.dropped_slow,
          "subscriber counted %llu drops, publisher %llu",
          (unsigned long long)notif_subscriber_dropped(s), (unsigned long long)stats.dropped_slow);
    CHECK(messages + (int)notif_subscriber_dropped(s) == 500, "%d received + %llu dropped != 500",
          messages, (unsigned long long)notif_subscriber_dropped(s));
    notif_unsubscribe(s);
    notif_close(h);
}

/* ------------------------------------------------------------------ reconnection, poll */

static void test_reconnect_and_poll(void)
{
    char path[512];
    notif_handle *h;
    notif_subscriber *s;
    const char *msg;
    size_t len;
    int rc, fd;
    struct pollfd pfd;

    path_in_dir(path, sizeof path, "restart.sock");
    /* The subscriber comes first. */
    s = subscribe_or_die(path, NULL);
    CHECK_RC(notif_recv(s, &msg, &len, 10), NOTIF_RECV_TIMEOUT);
    h = notif_open(path);
    if (h == NULL)
        FATAL("notif_open(%s)", path);
    recv_until_subscribed(h, s, 1);
    CHECK_RC(notif_emit(h, "{\"n\":1}"), 1);
    expect_message(s, "{\"n\":1}");

    /* Poll the descriptor. */
    fd = notif_subscriber_fd(s);
    CHECK(fd >= 0, "notif_subscriber_fd: %d", fd);
    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    CHECK_RC(poll(&pfd, 1, 0), 0);
    CHECK_RC(notif_emit(h, "{\"n\":2}"), 1);
    CHECK_RC(poll(&pfd, 1, (int)tl_timeout(5000)), 1);
    rc = notif_recv(s, &msg, &len, 0);
    CHECK(rc == NOTIF_RECV_MESSAGE && strcmp(msg, "{\"n\":2}") == 0, "after poll: %d", rc);

    /* Restart the publisher: the subscriber reports the reconnection. */
    notif_close(h);
    h = notif_open(path);
    if (h == NULL)
        FATAL("notif_open(%s) again", path);
    rc = next_event(s, &msg, &len, 10000);
    CHECK_RC(rc, NOTIF_RECV_RECONNECTED);
    /* It resumed after its cursor, of the earlier open: the new one cannot
       say what was missed, so an unknown drop comes first (the total stays). */
    rc = next_event(s, &msg, &len, 10000);
    CHECK_RC(rc, NOTIF_RECV_DROPPED);
    CHECK(notif_subscriber_dropped(s) == 0, "an unknown count added %llu",
          (unsigned long long)notif_subscriber_dropped(s));
    if (tl_wait_subscribers(h, 1) != 0)
        FATAL("subscriber not counted after the restart");
    CHECK_RC(notif_emit(h, "{\"n\":3}"), 1);
    expect_message(s, "{\"n\":3}");

    notif_unsubscribe(s);
    notif_close(h);
}

/* ------------------------------------------------------- refusals (fake) */

/* A fake publisher refuses with `line` and closes: notif_recv maps its reason
 * to `expected`, permanently, and the subscriber does not connect again. */
static void expect_refusal(const char *name, const char *line, int expected)
{
    char path[512];
    struct sockaddr_un addr;
    socklen_t addr_len;
    notif_subscriber *s;
    const char *msg;
    size_t len;
    int listener, conn, rc, again;
    long long give_up;

    path_in_dir(path, sizeof path, name);
    addr_len = tl_address(path, &addr);
    listener = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, addr_len) != 0 ||
        listen(listener, 8) != 0)
        FATAL("fake publisher at %s", path);
    s = subscribe_or_die(path, NULL);
    give_up = tl_now_ms() + tl_timeout(5000);
    while ((conn = accept(listener, NULL, NULL)) < 0) {
        if (tl_now_ms() > give_up)
            FATAL("the subscriber never connected to %s", path);
        tl_sleep_ms(2);
    }
    if (write(conn, line, strlen(line)) != (ssize_t)strlen(line))
        FATAL("write");
    close(conn);
    rc = next_event(s, &msg, &len, 5000);
    CHECK(rc == -expected, "%s: notif_recv returned %d (%s), expected %d", name, rc,
          notif_strerror(rc), -expected);
    CHECK(msg == NULL && len == 0, "%s: msg set on an error", name);
    CHECK_RC(notif_recv(s, &msg, &len, 300), -expected);
    CHECK_RC(notif_subscriber_fd(s), -ENOTCONN);
    /* The back-off starts at 100 ms: a reconnection would have come by now. */
    again = accept(listener, NULL, NULL);
    CHECK(again < 0, "%s: the subscriber connected again after the refusal", name);
    if (again >= 0)
        close(again);
    notif_unsubscribe(s);
    close(listener);
    unlink(path);
}

static void test_refusals(void)
{
    expect_refusal("denied.sock",
                   "{\"notif\":{\"error\":\"uid 1 is not allowed\",\"reason\":\"denied\"}}\n",
                   EACCES);
    CHECK(strstr(notif_last_error(), "allow-lists") != NULL, "message: %s", notif_last_error());
    expect_refusal("full.sock",
                   "{\"notif\":{\"error\":\"1 subscriber already\",\"reason\":\"full\"}}\n",
                   EUSERS);
    CHECK(strstr(notif_last_error(), "max_subscribers") != NULL, "message: %s",
          notif_last_error());
    expect_refusal("bad.sock", "{\"notif\":{\"error\":\"bad request\"}}\n", EPROTO);
}

/* ------------------------------------------------------------------ resume */

/* Waits until the publisher's server thread has numbered `n` notifications. */
static void wait_numbered(notif_handle *h, unsigned long long n)
{
    long long give_up = tl_now_ms() + tl_timeout(5000);
    while (tl_stats(h).next_seq != n && tl_now_ms() < give_up)
        tl_sleep_ms(2);
    CHECK(tl_stats(h).next_seq == n, "never numbered %llu notifications", n);
}

/* A replay ring, cursors and resume through notif.h: notif_options_set_replay,
   notif_subscribe with {"replay":true} and {"after":CURSOR},
   notif_subscriber_cursor, and the new counters. */
static void test_replay_and_resume(void)
{
    char path[512], cursor[64], message[64], request[128];
    notif_options *opts = notif_options_new();
    notif_handle *h;
    notif_subscriber *s;
    notif_stats stats;
    const char *got;
    int i;

    path_in_dir(path, sizeof path, "replay.sock");
    CHECK_RC(notif_options_set_replay(opts, 1 << 20), 0);
    h = notif_open_with(path, opts);
    notif_options_free(opts);
    if (h == NULL)
        FATAL("notif_open_with(%s): %s", path, notif_last_error());
    /* Nobody listens: the ring keeps them all the same. */
    for (i = 0; i < 5; i++) {
        snprintf(message, sizeof message, "{\"n\":%d}", i);
        CHECK_RC(notif_emit(h, message), 0);
    }
    wait_numbered(h, 5);
    s = subscribe_or_die(path, "{\"replay\":true}");
    CHECK(notif_subscriber_cursor(s) == NULL, "a cursor before the first notification");
    CHECK(notif_subscriber_cursor(NULL) == NULL, "a cursor for NULL");
    for (i = 0; i < 5; i++) {
        snprintf(message, sizeof message, "{\"n\":%d}", i);
        expect_message(s, message);
    }
    got = notif_subscriber_cursor(s);
    CHECK(got != NULL && strlen(got) == 18 && got[16] == '-' && strcmp(got + 17, "4") == 0,
          "the cursor of the fifth notification: %s", got ? got : "NULL");
    snprintf(cursor, sizeof cursor, "%s", got ? got : "");
    notif_unsubscribe(s);
    CHECK(tl_wait_subscribers(h, 0) == 0, "the replaying subscriber left");
    for (i = 5; i < 8; i++) {
        snprintf(message, sizeof message, "{\"n\":%d}", i);
        CHECK_RC(notif_emit(h, message), 0);
    }
    /* Once the server thread has them in the ring, they are replayed. */
    wait_numbered(h, 8);
    /* Resumes exactly after its cursor, from another subscriber. */
    snprintf(request, sizeof request, "{\"after\":\"%s\"}", cursor);
    s = subscribe_or_die(path, request);
    for (i = 5; i < 8; i++) {
        snprintf(message, sizeof message, "{\"n\":%d}", i);
        expect_message(s, message);
    }
    CHECK(tl_wait_subscribers(h, 1) == 0, "the resumed subscriber is counted");
    CHECK_RC(notif_emit(h, "{\"n\":8}"), 1);
    expect_message(s, "{\"n\":8}");
    got = notif_subscriber_cursor(s);
    CHECK(got != NULL && strcmp(got + 17, "8") == 0, "cursor %s", got ? got : "NULL");
    wait_numbered(h, 9);
    stats = tl_stats(h);
    CHECK(stats.next_seq == 9 && stats.replay_messages == 9 && stats.replay_oldest == 0,
          "next_seq=%llu replay_messages=%llu replay_oldest=%llu",
          (unsigned long long)stats.next_seq, (unsigned long long)stats.replay_messages,
          (unsigned long long)stats.replay_oldest);
    CHECK(stats.replayed == 8 && stats.replay_bytes > 0 && stats.replay_bytes <= (1 << 20),
          "replayed=%llu replay_bytes=%llu", (unsigned long long)stats.replayed,
          (unsigned long long)stats.replay_bytes);
    notif_unsubscribe(s);
    /* A malformed cursor is refused before anything is sent. */
    CHECK(notif_subscribe(path, "{\"after\":\"nonsense\"}") == NULL && errno == EINVAL,
          "a malformed cursor: errno %d", errno);
    notif_close(h);
}

int main(void)
{
    /* The library must never raise SIGPIPE; keep the default to prove it. */
    signal(SIGPIPE, SIG_DFL);
    tl_make_temp_dir(dir, sizeof dir, "notif-test-sub");

    test_arguments();
    test_delivery_and_timeout();
    test_long_line();
    test_filter();
    test_drop_markers();
    test_reconnect_and_poll();
    test_refusals();
    test_replay_and_resume();

    tl_remove_dir(dir);
    return tl_finish("test_subscriber");
}
