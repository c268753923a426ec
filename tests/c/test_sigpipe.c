/*
 * test_sigpipe: subscribers vanish mid-stream while the publisher emits many
 * large messages, with SIGPIPE left at its default disposition (which would
 * kill the process if the library ever raised it). The process must survive,
 * the library must not change the SIGPIPE disposition, and the subscribers
 * that stay must keep receiving whole lines.
 *
 * Subscribers vanish in two ways: sockets of this process closed with unread
 * data (the peer sees a reset), and child processes killed with SIGKILL
 * while they read.
 */
#include <signal.h>
#include <sys/wait.h>

#include "testlib.h"

#define ROUNDS 12
#define LOCAL_PER_ROUND 4
#define CHILDREN_PER_ROUND 2
#define MESSAGES_PER_ROUND 60
#define MESSAGE_SIZE (128 * 1024)

static char *big_message(size_t size, int seq)
{
    char *m = malloc(size + 1);
    int head;
    if (m == NULL)
        FATAL("malloc");
    head = sprintf(m, "{\"seq\":%d,\"fill\":\"", seq);
    memset(m + head, 'p', size - (size_t)head - 2);
    strcpy(m + size - 2, "\"}");
    return m;
}

/* A child that reads a little and then waits to be killed. */
static pid_t spawn_reader(const char *path)
{
    pid_t pid = fork();
    if (pid < 0)
        FATAL("fork");
    if (pid == 0) {
        char buffer[65536];
        int fd = tl_connect(path);
        if (fd < 0)
            _exit(3);
        for (;;) {
            ssize_t n = read(fd, buffer, sizeof buffer);
            if (n <= 0)
                _exit(0);
            tl_sleep_ms(1);
        }
    }
    return pid;
}

int main(void)
{
    char dir[256], path[512];
    notif_options *opts;
    notif_handle *handle;
    struct sigaction before, after;
    int round, emitted = 0, eagain = 0, keeper;
    tl_reader keeper_reader;
    unsigned long long keeper_lines = 0;
    notif_stats stats;

    /* SIGPIPE at its default: the process dies if anyone raises it. */
    signal(SIGPIPE, SIG_DFL);
    sigaction(SIGPIPE, NULL, &before);

    tl_make_temp_dir(dir, sizeof dir, "notif-test-sigpipe");
    snprintf(path, sizeof path, "%s/sigpipe.sock", dir);
    opts = notif_options_new();
    notif_options_set_linger_ms(opts, 0);
    handle = notif_open_with(path, opts);
    notif_options_free(opts);
    if (handle == NULL)
        FATAL("notif_open_with(%s)", path);

    /* One subscriber stays all along and reads everything it gets. */
    keeper = tl_connect(path);
    if (keeper < 0)
        FATAL("connect keeper");
    tl_reader_init(&keeper_reader, keeper);
    if (tl_wait_subscribers(handle, 1) != 0)
        FATAL("keeper not counted");

    for (round = 0; round < ROUNDS; round++) {
        int local[LOCAL_PER_ROUND];
        pid_t children[CHILDREN_PER_ROUND];
        int i, m;

        for (i = 0; i < LOCAL_PER_ROUND; i++) {
            local[i] = tl_connect(path);
            if (local[i] < 0)
                FATAL("connect");
        }
        for (i = 0; i < CHILDREN_PER_ROUND; i++)
            children[i] = spawn_reader(path);
        /* Not waiting for all of them to be counted is fine: some join mid-stream. */
        for (m = 0; m < MESSAGES_PER_ROUND; m++) {
            char *message = big_message(MESSAGE_SIZE, round * MESSAGES_PER_ROUND + m);
            int rc = notif_emit(handle, message);
            free(message);
            if (rc == -EAGAIN) {
                eagain++; /* the server thread is busy: dropped and counted, fine */
            } else if (rc < 0) {
                CHECK(0, "emit failed: %d (%s)", rc, notif_strerror(rc));
            } else {
                emitted++;
            }
            /* Vanish mid-stream, at different points. */
            if (m == MESSAGES_PER_ROUND / 4)
                close(local[0]);
            if (m == MESSAGES_PER_ROUND / 3)
                kill(children[0], SIGKILL);
            if (m == MESSAGES_PER_ROUND / 2) {
                /* Half-closed: it stops reading but its socket lives on a little. */
                shutdown(local[1], SHUT_RD);
                close(local[2]);
            }
            if (m == 2 * MESSAGES_PER_ROUND / 3)
                kill(children[1], SIGKILL);
            /* The keeper drains what is there without blocking for long. */
            for (;;) {
                char *line = tl_read_line(&keeper_reader, 0);
                if (line == NULL)
                    break;
                CHECK(line[0] == '{' && line[strlen(line) - 1] == '}',
                      "the keeper got a broken line of %lu bytes", (unsigned long)strlen(line));
                keeper_lines++;
                free(line);
            }
        }
        close(local[1]);
        close(local[3]);
        for (i = 0; i < CHILDREN_PER_ROUND; i++) {
            int status;
            waitpid(children[i], &status, 0);
        }
    }

    /* Still alive. Every subscriber but the keeper is gone; the keeper still
       receives. A child killed right after its connect completed left its
       connection in the listen backlog: the server thread may accept it
       after the count was 1, and count it until it reads its end of file
       (emit then rightly returns 2). A probe drains the backlog first: the
       backlog is first in, first out, so once the probe's request is
       acknowledged every connection made before it has been accepted. */
    {
        static const char request[] = "{\"cursor\":true}\n";
        int probe = tl_connect(path);
        tl_reader probe_reader;
        char *ack;
        if (probe < 0)
            FATAL("connect the probe");
        tl_reader_init(&probe_reader, probe);
        if (write(probe, request, strlen(request)) != (ssize_t)strlen(request))
            FATAL("write the probe's request");
        ack = NULL;
        for (;;) {
            free(ack);
            ack = tl_read_line(&probe_reader, 5000);
            if (ack == NULL || strstr(ack, "\"subscribed\":true") != NULL)
                break;
        }
        CHECK(ack != NULL, "the probe got no acknowledgement");
        free(ack);
        tl_reader_free(&probe_reader);
        close(probe);
    }
    CHECK(tl_wait_subscribers(handle, 1) == 0, "only the keeper should be left");
    {
        /* The keeper may still be behind from the last round (its buffer
           full: what is offered meanwhile is dropped for it, and counted) and
           the backlog full of it (EAGAIN): emit "last" until the keeper, which
           reads all along, has one, for up to 10 s. */
        long long give_up = tl_now_ms() + tl_timeout(10000), started = tl_now_ms();
        int got_last = 0, tries = 0;
        while (!got_last && tl_now_ms() < give_up) {
            int rc = notif_emit(handle, "{\"last\":true}");
            CHECK(rc == 1 || rc == -EAGAIN, "emit last: %d (%s)", rc, notif_strerror(rc));
            tries++;
            for (;;) {
                char *line = tl_read_line(&keeper_reader, 100);
                if (line == NULL)
                    break;
                if (strcmp(line, "{\"last\":true}") == 0)
                    got_last = 1;
                else
                    keeper_lines++;
                free(line);
            }
        }
        CHECK(got_last, "the keeper never got the last message");
        fprintf(stderr, "test_sigpipe: the keeper had \"last\" after %lld ms and %d emits\n",
                tl_now_ms() - started, tries);
    }
    stats = tl_stats(handle);
    sigaction(SIGPIPE, NULL, &after);
    CHECK(after.sa_handler == SIG_DFL && before.sa_handler == SIG_DFL,
          "the library changed the SIGPIPE disposition");
    /* A child killed before it connected is not counted: between the two
       bounds (the keeper and the probe are the 2). */
    CHECK(stats.accepted >= 2 + ROUNDS * LOCAL_PER_ROUND &&
              stats.accepted <= 2 + ROUNDS * (LOCAL_PER_ROUND + CHILDREN_PER_ROUND),
          "accepted=%llu", (unsigned long long)stats.accepted);
    CHECK(keeper_lines > 0, "the keeper received nothing");

    printf("test_sigpipe: survived %d rounds: %d messages of %d bytes emitted, %d dropped "
           "with -EAGAIN, keeper read %llu; delivered=%llu dropped_slow=%llu "
           "dropped_closed=%llu\n",
           ROUNDS, emitted, MESSAGE_SIZE, eagain, keeper_lines,
           (unsigned long long)stats.delivered, (unsigned long long)stats.dropped_slow,
           (unsigned long long)stats.dropped_closed);

    tl_reader_free(&keeper_reader);
    close(keeper);
    notif_close(handle);
    tl_remove_dir(dir);
    return tl_finish("test_sigpipe");
}
