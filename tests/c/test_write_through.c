/*
 * test_write_through: a C host whose threads call notif_emit while the server
 * thread sleeps, so that they write each notification to the subscribers
 * themselves (write-through), with SIGPIPE at its default disposition. Two
 * emitting threads pause about a millisecond between most notifications (and
 * emit some in bursts, and some larger than a socket buffer, whose one send
 * the kernel cuts short); one subscriber reads everything, one closes with
 * unread data, one shuts its reading side. The process must survive, every
 * line the reader gets must be whole and in each thread's order, nothing may
 * be lost, and the counters must add up. Run under valgrind and ASan too.
 */
#include <pthread.h>
#include <signal.h>

#include "testlib.h"

#define THREADS 2
#define EACH 300
#define LARGE_EVERY 25
#define LARGE_SIZE (300 * 1024)

static notif_handle *handle;

/* Notification i of thread t: small, or every LARGE_EVERY-th a large one. */
static char *message(int t, int i)
{
    size_t fill = (i % LARGE_EVERY == LARGE_EVERY - 1) ? LARGE_SIZE : (size_t)(i % 40);
    char *m = malloc(fill + 64);
    int head;
    if (m == NULL)
        FATAL("malloc");
    head = sprintf(m, "{\"t\":%d,\"i\":%d,\"fill\":\"", t, i);
    memset(m + head, 'a' + (char)(i % 26), fill);
    strcpy(m + head + fill, "\"}");
    return m;
}

static void *emitter(void *arg)
{
    int t = (int)(intptr_t)arg, i;
    for (i = 0; i < EACH; i++) {
        char *m = message(t, i);
        int rc = notif_emit(handle, m);
        /* Every subscriber but the reader may be gone: 1 to 3. */
        CHECK(rc >= 1 && rc <= 3, "emit %d/%d: %d (%s)", t, i, rc, notif_strerror(rc));
        free(m);
        if (i % 5 != 4)
            tl_sleep_ms(1); /* quiet: far more than write-through's 5 us per subscriber */
    }
    return NULL;
}

int main(void)
{
    char dir[256], path[512];
    pthread_t threads[THREADS];
    struct sigaction before, after;
    int reader_fd, leaver, shutter, t, next[THREADS] = {0}, lines = 0, ok = 1;
    tl_reader reader, leaver_reader, shutter_reader;
    notif_stats stats;
    long long give_up;

    signal(SIGPIPE, SIG_DFL);
    sigaction(SIGPIPE, NULL, &before);

    tl_make_temp_dir(dir, sizeof dir, "notif-test-write-through");
    snprintf(path, sizeof path, "%s/wt.sock", dir);
    handle = notif_open(path);
    if (handle == NULL)
        FATAL("notif_open(%s)", path);

    reader_fd = tl_connect(path);
    leaver = tl_connect(path);
    shutter = tl_connect(path);
    if (reader_fd < 0 || leaver < 0 || shutter < 0)
        FATAL("connect");
    tl_reader_init(&reader, reader_fd);
    tl_reader_init(&leaver_reader, leaver);
    tl_reader_init(&shutter_reader, shutter);
    if (tl_wait_subscribers(handle, 3) != 0)
        FATAL("subscribers not counted");

    for (t = 0; t < THREADS; t++)
        if (pthread_create(&threads[t], NULL, emitter, (void *)(intptr_t)t) != 0)
            FATAL("pthread_create");

    while (lines < THREADS * EACH && ok) {
        char *line = tl_read_line(&reader, 20000);
        int lt = -1, li = -1;
        if (line == NULL) {
            CHECK(0, "the reader got %d lines of %d, then %s", lines, THREADS * EACH,
                  reader.eof ? "end of stream" : "nothing for 20 s");
            break;
        }
        if (sscanf(line, "{\"t\":%d,\"i\":%d,", &lt, &li) != 2 || lt < 0 || lt >= THREADS) {
            CHECK(0, "not a notification of ours: %.80s", line);
            ok = 0;
        } else {
            char *expected = message(lt, li);
            CHECK(strcmp(line, expected) == 0, "line %d/%d differs (cut or corrupt)", lt, li);
            CHECK(li == next[lt], "thread %d: got %d, expected %d (lost or reordered)", lt, li,
                  next[lt]);
            if (li != next[lt])
                ok = 0;
            next[lt] = li + 1;
            free(expected);
        }
        free(line);
        lines++;
        if (lines == 60) {
            /* Reads a line, then closes with the rest unread: a reset. */
            char *first = tl_read_line(&leaver_reader, 20000);
            CHECK(first != NULL && strncmp(first, "{\"t\":", 5) == 0, "the leaver's first line");
            free(first);
            tl_reader_free(&leaver_reader);
            close(leaver);
        }
        if (lines < 200) {
            /* Reads what it got so far, then shuts its reading side: the
               publisher's next send to it fails (EPIPE, not SIGPIPE). */
            char *got;
            while ((got = tl_read_line(&shutter_reader, 0)) != NULL)
                free(got);
        } else if (lines == 200) {
            shutdown(shutter, SHUT_RD);
        }
    }
    for (t = 0; t < THREADS; t++)
        pthread_join(threads[t], NULL);

    /* The shutter may still be counted: with its socket full when it shut
       its reading side, nothing tells the publisher. Closing tells it. */
    tl_reader_free(&shutter_reader);
    close(shutter);
    if (tl_wait_subscribers(handle, 1) != 0)
        CHECK(0, "the leaver and the shutter should be gone");
    stats = tl_stats(handle);
    give_up = tl_now_ms() + tl_timeout(10000);
    while (stats.fanout != stats.delivered + stats.dropped_slow + stats.dropped_closed &&
           tl_now_ms() < give_up) {
        tl_sleep_ms(5);
        stats = tl_stats(handle);
    }
    CHECK(stats.fanout == stats.delivered + stats.dropped_slow + stats.dropped_closed,
          "fanout=%llu delivered=%llu dropped_slow=%llu dropped_closed=%llu",
          (unsigned long long)stats.fanout, (unsigned long long)stats.delivered,
          (unsigned long long)stats.dropped_slow, (unsigned long long)stats.dropped_closed);
    CHECK(stats.emitted == THREADS * EACH, "emitted=%llu", (unsigned long long)stats.emitted);
    CHECK(stats.written_through > 0, "write-through never happened");
    CHECK(stats.written_through <= stats.delivered, "written_through=%llu > delivered=%llu",
          (unsigned long long)stats.written_through, (unsigned long long)stats.delivered);
    CHECK(stats.dropped_backlog == 0, "dropped_backlog=%llu",
          (unsigned long long)stats.dropped_backlog);
    sigaction(SIGPIPE, NULL, &after);
    CHECK(after.sa_handler == SIG_DFL && before.sa_handler == SIG_DFL,
          "the library changed the SIGPIPE disposition");
    printf("test_write_through: %d lines read; written_through=%llu of delivered=%llu, "
           "wakeups=%llu, writes=%llu, dropped_closed=%llu\n",
           lines, (unsigned long long)stats.written_through, (unsigned long long)stats.delivered,
           (unsigned long long)stats.wakeups, (unsigned long long)stats.writes,
           (unsigned long long)stats.dropped_closed);

    notif_close(handle);
    tl_reader_free(&reader);
    close(reader_fd);
    tl_remove_dir(dir);
    return tl_finish("test_write_through");
}
