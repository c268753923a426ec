/*
 * test_api: the C API through notif.h, against real sockets: every error code
 * of every function, the messages that go with them, options, stats, socket
 * file handling, and what subscribers receive.
 *
 * Build: see the Makefile (needs -DCARGO_VERSION="\"x.y.z\"" and
 * -DFIXTURES_DIR="\"tests/fixtures\""). Exits non-zero if any check fails.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#include "testlib.h"

#ifndef CARGO_VERSION
#error "build with -DCARGO_VERSION=\"\\\"x.y.z\\\"\" (the version in Cargo.toml)"
#endif

static char dir[256];

static void path_in_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", dir, name);
}

static int path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static notif_handle *open_or_die(const char *path, const notif_options *opts)
{
    notif_handle *handle = notif_open_with(path, opts);
    if (handle == NULL)
        FATAL("notif_open_with(%s)", path);
    return handle;
}

/* ---------------------------------------------------------------- version */

static void test_version(void)
{
    char from_macros[64];
    const char *version = notif_version();
    snprintf(from_macros, sizeof from_macros, "%d.%d.%d", NOTIF_VERSION_MAJOR,
             NOTIF_VERSION_MINOR, NOTIF_VERSION_PATCH);
    CHECK(version != NULL, "notif_version() is NULL");
    if (version == NULL)
        return;
    CHECK(strcmp(version, from_macros) == 0, "notif_version() \"%s\" != header macros \"%s\"",
          version, from_macros);
    CHECK(strcmp(version, CARGO_VERSION) == 0, "notif_version() \"%s\" != Cargo.toml \"%s\"",
          version, CARGO_VERSION);
    CHECK(notif_version() == version, "notif_version() should return the same static string");
}

/* --------------------------------------------------------------- strerror */

static void test_strerror(void)
{
    static const int known[] = {EINVAL, EMSGSIZE, EBADF,  EAGAIN, ENAMETOOLONG,
                                EEXIST, EADDRINUSE, ENOENT, ENOTDIR, EACCES,
                                EPERM,  ENOMEM,   EMFILE, ENFILE, EIO,
                                EUSERS, EPROTO};
    static const int junk[] = {INT_MIN, INT_MIN + 1, INT_MAX, -99999, 99999, 4095, -4095};
    size_t i;
    const char *text = notif_strerror(0);
    CHECK(text != NULL && strcmp(text, "success") == 0, "notif_strerror(0) = \"%s\"",
          text ? text : "(null)");
    for (i = 0; i < sizeof known / sizeof known[0]; i++) {
        const char *negative = notif_strerror(-known[i]);
        const char *positive = notif_strerror(known[i]);
        CHECK(negative != NULL && negative[0] != '\0', "notif_strerror(-%d) is empty", known[i]);
        CHECK(negative != NULL && strcmp(negative, "unknown error") != 0,
              "notif_strerror(-%d) does not know its own code", known[i]);
        CHECK(negative != NULL && positive != NULL && strcmp(negative, positive) == 0,
              "notif_strerror(%d) and (-%d) differ", known[i], known[i]);
    }
    CHECK(strstr(notif_strerror(-EMSGSIZE), "large") != NULL, "EMSGSIZE text: %s",
          notif_strerror(-EMSGSIZE));
    CHECK(strstr(notif_strerror(-EADDRINUSE), "already") != NULL, "EADDRINUSE text: %s",
          notif_strerror(-EADDRINUSE));
    CHECK(strstr(notif_strerror(-EUSERS), "max_subscribers") != NULL, "EUSERS text: %s",
          notif_strerror(-EUSERS));
    for (i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        text = notif_strerror(junk[i]);
        CHECK(text != NULL && text[0] != '\0', "notif_strerror(%d) is NULL or empty", junk[i]);
    }
    CHECK(strcmp(notif_strerror(-99999), "unknown error") == 0, "notif_strerror(-99999) = %s",
          notif_strerror(-99999));
    CHECK(strcmp(notif_strerror(INT_MAX), "unknown error") == 0, "notif_strerror(INT_MAX) = %s",
          notif_strerror(INT_MAX));
}

/* ------------------------------------------------------------ notif_open */

static void test_open_errors(void)
{
    char path[512], long_path[512];
    notif_handle *handle, *other;
    size_t len;
    int fd;

    errno = 0;
    CHECK(notif_open(NULL) == NULL, "notif_open(NULL) should fail");
    CHECK(errno == EINVAL, "notif_open(NULL): errno %d, expected EINVAL", errno);
    CHECK_LAST_ERROR("path");

    errno = 0;
    CHECK(notif_open_with(NULL, NULL) == NULL, "notif_open_with(NULL, NULL) should fail");
    CHECK(errno == EINVAL, "notif_open_with(NULL): errno %d, expected EINVAL", errno);

    errno = 0;
    CHECK(notif_open("") == NULL, "notif_open(\"\") should fail");
    CHECK(errno == EINVAL, "notif_open(\"\"): errno %d, expected EINVAL", errno);
    CHECK_LAST_ERROR("empty");

    errno = 0;
    CHECK(notif_open("@") == NULL, "notif_open(\"@\") should fail");
    CHECK(errno == EINVAL, "notif_open(\"@\"): errno %d, expected EINVAL", errno);
    CHECK_LAST_ERROR("abstract");

    /* 107 bytes is the longest path that fits in sockaddr_un; 108 is too long. */
    snprintf(long_path, sizeof long_path, "%s/", dir);
    len = strlen(long_path);
    if (len < 100) {
        memset(long_path + len, 'x', 107 - len);
        long_path[107] = '\0';
        handle = notif_open(long_path);
        CHECK(handle != NULL, "a 107-byte path should work (errno %d)", errno);
        notif_close(handle);
        CHECK(!path_exists(long_path), "the 107-byte socket should be gone after close");
        long_path[107] = 'x';
        long_path[108] = '\0';
        errno = 0;
        CHECK(notif_open(long_path) == NULL, "a 108-byte path should fail");
        CHECK(errno == ENAMETOOLONG, "108-byte path: errno %d, expected ENAMETOOLONG", errno);
        CHECK_LAST_ERROR("108");
        CHECK(!path_exists(long_path), "nothing should be created at a too-long path");
    } else {
        fprintf(stderr, "note: TMPDIR too long for the 107-byte boundary check\n");
    }
    memset(long_path, 'y', 300);
    long_path[0] = '/';
    long_path[300] = '\0';
    errno = 0;
    CHECK(notif_open(long_path) == NULL, "a 300-byte path should fail");
    CHECK(errno == ENAMETOOLONG, "300-byte path: errno %d, expected ENAMETOOLONG", errno);
    memset(long_path, 'z', 200);
    long_path[0] = '@';
    long_path[200] = '\0';
    errno = 0;
    CHECK(notif_open(long_path) == NULL, "a 200-byte abstract name should fail");
    CHECK(errno == ENAMETOOLONG, "long abstract name: errno %d, expected ENAMETOOLONG", errno);

    path_in_dir(path, sizeof path, "missing-dir/n.sock");
    errno = 0;
    CHECK(notif_open(path) == NULL, "a missing directory should fail");
    CHECK(errno == ENOENT, "missing directory: errno %d, expected ENOENT", errno);
    CHECK_LAST_ERROR("missing-dir");
    CHECK_LAST_ERROR("does not exist");

    /* A regular file at the path is left exactly as it was. */
    path_in_dir(path, sizeof path, "regular-file");
    {
        static const char content[] = "precious data, not a socket\n";
        struct stat before, after;
        char *back;
        size_t back_len;
        FILE *f = fopen(path, "wb");
        if (f == NULL)
            FATAL("fopen %s", path);
        fputs(content, f);
        fclose(f);
        chmod(path, 0644);
        stat(path, &before);
        errno = 0;
        CHECK(notif_open(path) == NULL, "a regular file at the path should fail");
        CHECK(errno == EEXIST, "regular file: errno %d, expected EEXIST", errno);
        CHECK_LAST_ERROR("regular file");
        CHECK(stat(path, &after) == 0 && S_ISREG(after.st_mode), "the file should still be there");
        CHECK(after.st_ino == before.st_ino && (after.st_mode & 07777) == 0644,
              "the file should be untouched (inode, mode)");
        back = tl_read_file(path, &back_len);
        CHECK(back_len == strlen(content) && memcmp(back, content, back_len) == 0,
              "the file's content changed");
        free(back);

        /* Its parent being a file: ENOTDIR. */
        path_in_dir(long_path, sizeof long_path, "regular-file/n.sock");
        errno = 0;
        CHECK(notif_open(long_path) == NULL, "a file as the parent directory should fail");
        CHECK(errno == ENOTDIR, "file as directory: errno %d, expected ENOTDIR", errno);
        unlink(path);
    }

    /* A directory at the path: EEXIST too, and it stays. */
    path_in_dir(path, sizeof path, "a-directory");
    mkdir(path, 0755);
    errno = 0;
    CHECK(notif_open(path) == NULL, "a directory at the path should fail");
    CHECK(errno == EEXIST, "directory: errno %d, expected EEXIST", errno);
    CHECK_LAST_ERROR("directory");
    {
        struct stat st;
        CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode), "the directory should still be there");
    }
    rmdir(path);

    /* A live publisher is never evicted. */
    path_in_dir(path, sizeof path, "live.sock");
    handle = open_or_die(path, NULL);
    errno = 0;
    other = notif_open(path);
    CHECK(other == NULL, "a second publisher on a live socket should fail");
    CHECK(errno == EADDRINUSE, "live publisher: errno %d, expected EADDRINUSE", errno);
    CHECK_LAST_ERROR("already publishing");
    notif_close(other);
    {
        /* The failed open probed the path with a connection of its own, which
           this publisher counts from its accept until it sees it hang up: wait
           for both (it may still be in the listen backlog while the count
           reads 0), so the next count is the subscriber's alone. */
        long long give_up = tl_now_ms() + tl_timeout(5000);
        while (tl_stats(handle).accepted < 1 && tl_now_ms() < give_up)
            tl_sleep_ms(2);
        CHECK(tl_stats(handle).accepted == 1, "the probe's connection was never accepted");
        CHECK(tl_wait_subscribers(handle, 0) == 0, "the probe's connection never went");
    }
    fd = tl_connect(path);
    CHECK(fd >= 0, "the first publisher should still accept subscribers (errno %d)", errno);
    if (fd >= 0) {
        CHECK(tl_wait_subscribers(handle, 1) == 0, "first publisher lost its subscriber");
        CHECK_RC(notif_emit(handle, "{\"still\":\"alive\"}"), 1);
        close(fd);
    }
    notif_close(handle);
    CHECK(!path_exists(path), "notif_close should remove %s", path);

    /* A live abstract name: EADDRINUSE. */
    snprintf(path, sizeof path, "@notif-test-api-busy-%ld", (long)getpid());
    handle = open_or_die(path, NULL);
    errno = 0;
    CHECK(notif_open(path) == NULL, "a second publisher on a live abstract name should fail");
    CHECK(errno == EADDRINUSE, "live abstract name: errno %d, expected EADDRINUSE", errno);
    CHECK_LAST_ERROR("in use");
    notif_close(handle);
    handle = notif_open(path);
    CHECK(handle != NULL, "the abstract name should be free again after close");
    notif_close(handle);
}

static void test_stale_socket_replaced(void)
{
    char path[512];
    struct sockaddr_un addr;
    socklen_t len;
    notif_handle *handle;
    struct stat st;
    int fd;

    /* A socket file whose listener is gone (a crashed daemon). */
    path_in_dir(path, sizeof path, "stale.sock");
    len = tl_address(path, &addr);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, 1) != 0)
        FATAL("making a stale socket");
    close(fd);
    CHECK(lstat(path, &st) == 0 && S_ISSOCK(st.st_mode), "the stale socket file should exist");

    handle = notif_open(path);
    CHECK(handle != NULL, "a stale socket file should be replaced (errno %d)", errno);
    if (handle == NULL)
        return;
    fd = tl_connect(path);
    CHECK(fd >= 0, "subscribers should reach the new publisher (errno %d)", errno);
    if (fd >= 0) {
        tl_reader reader;
        char *line;
        tl_reader_init(&reader, fd);
        CHECK(tl_wait_subscribers(handle, 1) == 0, "subscriber not counted");
        CHECK_RC(notif_emit(handle, "{\"replaced\":true}"), 1);
        line = tl_read_line(&reader, 5000);
        CHECK(line != NULL && strcmp(line, "{\"replaced\":true}") == 0, "got %s",
              line ? line : "(nothing)");
        free(line);
        tl_reader_free(&reader);
        close(fd);
    }
    notif_close(handle);
    CHECK(!path_exists(path), "notif_close should remove the socket file");
}

/* ---------------------------------------------------------------- options */

static void test_options(void)
{
    notif_options *opts = notif_options_new();
    char gid[32];
    if (opts == NULL)
        FATAL("notif_options_new");

    /* NULL options: -EINVAL from every setter. */
    CHECK_RC(notif_options_set_mode(NULL, 0600), -EINVAL);
    CHECK_LAST_ERROR("opts");
    CHECK_RC(notif_options_set_group(NULL, "0"), -EINVAL);
    CHECK_RC(notif_options_set_subscriber_buffer(NULL, 1 << 20), -EINVAL);
    CHECK_RC(notif_options_set_max_message(NULL, 1024), -EINVAL);
    CHECK_RC(notif_options_set_max_subscribers(NULL, 10), -EINVAL);
    CHECK_RC(notif_options_set_max_per_uid(NULL, 10), -EINVAL);
    CHECK_RC(notif_options_set_linger_ms(NULL, 10), -EINVAL);
    CHECK_LAST_ERROR("opts");
    CHECK_RC(notif_options_set_slow_policy(NULL, NOTIF_SLOW_DROP), -EINVAL);
    CHECK_RC(notif_options_set_backlog(NULL, 1 << 20), -EINVAL);
    notif_options_free(NULL); /* a no-op */

    CHECK_RC(notif_options_set_mode(opts, 0), 0);
    CHECK_RC(notif_options_set_mode(opts, 0777), 0);
    CHECK_RC(notif_options_set_mode(opts, 0660), 0);
    CHECK_RC(notif_options_set_mode(opts, 01000), -EINVAL);
    CHECK_LAST_ERROR("0777");
    CHECK_RC(notif_options_set_mode(opts, 04755), -EINVAL);
    CHECK_RC(notif_options_set_mode(opts, 0100600), -EINVAL); /* S_IFREG | 0600 */
    CHECK_RC(notif_options_set_mode(opts, (unsigned)-1), -EINVAL);

    CHECK_RC(notif_options_set_group(opts, NULL), -EINVAL);
    CHECK_LAST_ERROR("group");
    CHECK_RC(notif_options_set_group(opts, ""), -EINVAL);
    CHECK_LAST_ERROR("empty");
    CHECK_RC(notif_options_set_group(opts, "no-such-group-notif-test"), -ENOENT);
    CHECK_LAST_ERROR("no-such-group-notif-test");
    CHECK_RC(notif_options_set_group(opts, "99999999999999999999"), -EINVAL);
    /* (gid_t)-1 means "leave the group alone" to chown: not a group to give the file. */
    CHECK_RC(notif_options_set_group(opts, "4294967295"), -EINVAL);
    CHECK_LAST_ERROR("out of range");
    CHECK_RC(notif_options_set_group(opts, "4294967296"), -EINVAL);
    snprintf(gid, sizeof gid, "%ld", (long)getgid());
    CHECK_RC(notif_options_set_group(opts, gid), 0);

    CHECK_RC(notif_options_set_subscriber_buffer(opts, 0), -EINVAL);
    CHECK_RC(notif_options_set_subscriber_buffer(opts, 16 * 1024 - 1), -EINVAL);
    CHECK_LAST_ERROR("minimum");
    CHECK_RC(notif_options_set_subscriber_buffer(opts, 16 * 1024), 0);
    CHECK_RC(notif_options_set_subscriber_buffer(opts, 4 << 20), 0);

    CHECK_RC(notif_options_set_max_message(opts, 0), -EINVAL);
    CHECK_LAST_ERROR("max message");
    CHECK_RC(notif_options_set_max_message(opts, (64 << 20) + 1), -EINVAL);
    CHECK_RC(notif_options_set_max_message(opts, (size_t)-1), -EINVAL);
    /* 64 MiB is in range, but not with the 4 MiB subscriber buffer set above. */
    CHECK_RC(notif_options_set_max_message(opts, 64 << 20), -EINVAL);
    CHECK_LAST_ERROR("subscriber buffer");
    CHECK_RC(notif_options_set_max_message(opts, 2 << 20), 0);
    CHECK_RC(notif_options_set_max_message(opts, 1), 0);
    {
        notif_options *fresh = notif_options_new();
        /* Against default buffers it is only checked at open: they may be raised after. */
        CHECK_RC(notif_options_set_max_message(fresh, 64 << 20), 0);
        CHECK_RC(notif_options_set_subscriber_buffer(fresh, 128 << 20), 0);
        CHECK_RC(notif_options_set_backlog(fresh, 128 << 20), 0);
        notif_options_free(fresh);
    }

    CHECK_RC(notif_options_set_max_subscribers(opts, 0), -EINVAL);
    CHECK_LAST_ERROR("max subscribers");
    CHECK_RC(notif_options_set_max_subscribers(opts, (1 << 20) + 1), -EINVAL);
    CHECK_RC(notif_options_set_max_subscribers(opts, 1 << 20), 0);
    CHECK_RC(notif_options_set_max_subscribers(opts, 1), 0);
    CHECK_RC(notif_options_set_max_per_uid(opts, 0), -EINVAL);
    CHECK_RC(notif_options_set_max_per_uid(opts, (1 << 20) + 1), -EINVAL);
    CHECK_RC(notif_options_set_max_per_uid(opts, 1 << 20), 0);
    CHECK_RC(notif_options_set_max_per_uid(opts, 64), 0);

    CHECK_RC(notif_options_set_linger_ms(opts, 0), 0);
    CHECK_RC(notif_options_set_linger_ms(opts, UINT_MAX), 0);

    CHECK_RC(notif_options_set_slow_policy(opts, NOTIF_SLOW_DROP), 0);
    CHECK_RC(notif_options_set_slow_policy(opts, NOTIF_SLOW_DISCONNECT), 0);
    CHECK_RC(notif_options_set_slow_policy(opts, 2), -EINVAL);
    CHECK_LAST_ERROR("NOTIF_SLOW_DROP");
    CHECK_RC(notif_options_set_slow_policy(opts, -1), -EINVAL);

    CHECK_RC(notif_options_set_backlog(opts, 0), -EINVAL);
    CHECK_RC(notif_options_set_backlog(opts, 16 * 1024 - 1), -EINVAL);
    CHECK_LAST_ERROR("backlog");
    CHECK_RC(notif_options_set_backlog(opts, 16 * 1024), 0);

    notif_options_free(opts);

    /* A max_message and a subscriber buffer both set are checked against each
     * other by the second setter, in either order, which then changes nothing. */
    {
        char path[512];
        notif_handle *handle;
        notif_stats stats;
        opts = notif_options_new();
        CHECK_RC(notif_options_set_subscriber_buffer(opts, 64 * 1024), 0);
        CHECK_RC(notif_options_set_max_message(opts, 32 * 1024 + 1), -EINVAL);
        CHECK_LAST_ERROR("half the subscriber buffer");
        CHECK_RC(notif_options_set_max_message(opts, 32 * 1024), 0);
        CHECK_RC(notif_options_set_subscriber_buffer(opts, 64 * 1024 - 1), -EINVAL);
        CHECK_RC(notif_options_set_backlog(opts, 64 * 1024 - 1), -EINVAL);
        CHECK_LAST_ERROR("backlog");
        /* The refused values changed nothing: this opens with a 64 KiB buffer. */
        path_in_dir(path, sizeof path, "pair.sock");
        handle = open_or_die(path, opts);
        notif_close(handle);
        notif_options_free(opts);

        /* With max_message left at its default (1 MiB), any buffer of at least
         * 16 KiB opens: the default max_message follows it down to half. */
        opts = notif_options_new();
        CHECK_RC(notif_options_set_subscriber_buffer(opts, 64 * 1024), 0);
        path_in_dir(path, sizeof path, "small-buffer.sock");
        handle = open_or_die(path, opts);
        {
            int fd = tl_connect(path);
            char message[40 * 1024];
            if (fd < 0)
                FATAL("connect");
            CHECK(tl_wait_subscribers(handle, 1) == 0, "subscriber not counted");
            memset(message, 'x', sizeof message);
            memcpy(message, "{\"k\":\"", 6);
            strcpy(message + 32 * 1024 - 2, "\"}");
            CHECK_RC(notif_emit(handle, message), 1);
            message[32 * 1024 - 2] = 'x';
            strcpy(message + 32 * 1024 - 1, "\"}");
            CHECK_RC(notif_emit(handle, message), -EMSGSIZE);
            close(fd);
        }
        stats = tl_stats(handle);
        CHECK(stats.rejected == 1, "rejected=%llu", (unsigned long long)stats.rejected);
        notif_close(handle);
        notif_options_free(opts);
        opts = notif_options_new();
        CHECK_RC(notif_options_set_backlog(opts, 16 * 1024), 0);
        path_in_dir(path, sizeof path, "small-backlog.sock");
        handle = open_or_die(path, opts);
        notif_close(handle);
        notif_options_free(opts);
    }

    /* Options that can only be checked together at open (a max_message over
     * half the default buffer) fail there, leaving nothing behind. */
    {
        char path[512];
        opts = notif_options_new();
        path_in_dir(path, sizeof path, "inconsistent.sock");
        CHECK_RC(notif_options_set_max_message(opts, 2 * 1024 * 1024 + 1), 0);
        errno = 0;
        CHECK(notif_open_with(path, opts) == NULL,
              "max_message over half the subscriber buffer should fail at open");
        CHECK(errno == EINVAL, "inconsistent options: errno %d, expected EINVAL", errno);
        CHECK_LAST_ERROR("half");
        CHECK(!path_exists(path), "a failed open should leave no file");
        notif_options_free(opts);
    }
}

/* The socket file gets exactly the mode asked for, whatever the umask. */
static void test_socket_mode(void)
{
    static const unsigned modes[] = {0600, 0660, 0640, 0666, 0777, 0};
    static const mode_t umasks[] = {0, 077, 022};
    char path[512];
    size_t u, m;
    struct stat st;
    mode_t saved = umask(0);

    path_in_dir(path, sizeof path, "mode.sock");
    for (u = 0; u < sizeof umasks / sizeof umasks[0]; u++) {
        notif_handle *handle;
        umask(umasks[u]);
        /* The default, 0600. */
        handle = open_or_die(path, NULL);
        CHECK(lstat(path, &st) == 0 && S_ISSOCK(st.st_mode), "no socket at %s", path);
        CHECK((st.st_mode & 07777) == 0600, "default mode with umask %03o: %04o, expected 0600",
              (unsigned)umasks[u], (unsigned)(st.st_mode & 07777));
        notif_close(handle);
        for (m = 0; m < sizeof modes / sizeof modes[0]; m++) {
            notif_options *opts = notif_options_new();
            CHECK_RC(notif_options_set_mode(opts, modes[m]), 0);
            handle = open_or_die(path, opts);
            notif_options_free(opts);
            CHECK(lstat(path, &st) == 0 && S_ISSOCK(st.st_mode), "no socket at %s", path);
            CHECK((st.st_mode & 07777) == modes[m], "mode %04o with umask %03o: got %04o",
                  modes[m], (unsigned)umasks[u], (unsigned)(st.st_mode & 07777));
            notif_close(handle);
        }
    }
    umask(saved);

    /* The group option: our own group always works; root may give it away. */
    {
        notif_options *opts = notif_options_new();
        char gid[32];
        gid_t wanted = getuid() == 0 ? 1 : getgid();
        notif_handle *handle;
        snprintf(gid, sizeof gid, "%ld", (long)wanted);
        CHECK_RC(notif_options_set_group(opts, gid), 0);
        CHECK_RC(notif_options_set_mode(opts, 0660), 0);
        handle = open_or_die(path, opts);
        notif_options_free(opts);
        CHECK(lstat(path, &st) == 0 && st.st_gid == wanted && (st.st_mode & 07777) == 0660,
              "group %ld / mode 0660 expected, got group %ld mode %04o", (long)wanted,
              (long)st.st_gid, (unsigned)(st.st_mode & 07777));
        notif_close(handle);
    }
}

/* ------------------------------------------------------------------ emit */

static void test_emit_errors(void)
{
    static const char *const invalid[] = {
        "empty.txt",          "invalid-utf8.txt",      "nan.txt",
        "raw-newline-in-string.txt", "top-level-array.txt", "top-level-string.txt",
        "trailing-comma.txt", "trailing-garbage.txt",   "truncated.txt",
        "two-objects.txt",    "unquoted-key.txt",
    };
    char path[512], fixture[512];
    notif_options *opts = notif_options_new();
    notif_handle *handle;
    notif_stats stats;
    tl_reader reader;
    size_t i;
    int fd, rejected = 0;
    char *line;

    /* NULL handle: -EINVAL naming it, whatever else is wrong (the NULL rule). */
    CHECK_RC(notif_emit(NULL, "{}"), -EINVAL);
    CHECK_LAST_ERROR("NULL");
    CHECK_RC(notif_emit(NULL, NULL), -EINVAL);
    CHECK_RC(notif_emit_len(NULL, "{}", 2), -EINVAL);
    CHECK_LAST_ERROR("handle");

    path_in_dir(path, sizeof path, "emit.sock");
    notif_options_set_max_message(opts, 64);
    handle = open_or_die(path, opts);
    notif_options_free(opts);

    /* NULL json: -EINVAL even with nobody connected. */
    CHECK_RC(notif_emit(handle, NULL), -EINVAL);
    CHECK_LAST_ERROR("json");
    CHECK_RC(notif_emit_len(handle, NULL, 5), -EINVAL);
    CHECK_LAST_ERROR("json");

    /* Nobody connected: 0, and the input is not even looked at. */
    CHECK_RC(notif_emit(handle, "{\"a\":1}"), 0);
    CHECK_RC(notif_emit(handle, "not json at all"), 0);
    CHECK_RC(notif_emit_len(handle, "[1,2]", 5), 0);
    stats = tl_stats(handle);
    CHECK(stats.dropped_no_subscriber == 3 && stats.rejected == 0 && stats.emitted == 0,
          "no subscriber: dropped_no_subscriber=%llu rejected=%llu emitted=%llu",
          (unsigned long long)stats.dropped_no_subscriber, (unsigned long long)stats.rejected,
          (unsigned long long)stats.emitted);

    fd = tl_connect(path);
    if (fd < 0)
        FATAL("connect %s", path);
    tl_reader_init(&reader, fd);
    if (tl_wait_subscribers(handle, 1) != 0)
        FATAL("subscriber not counted");

    for (i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        size_t len;
        char *data;
        snprintf(fixture, sizeof fixture, "%s/invalid/%s", FIXTURES_DIR, invalid[i]);
        data = tl_read_file(fixture, &len);
        {
            int rc = notif_emit_len(handle, data, len);
            CHECK(rc == -EINVAL, "emit_len(%s) = %d (%s), expected -EINVAL", invalid[i], rc,
                  notif_strerror(rc));
            CHECK_LAST_ERROR("rejected");
            rejected++;
            if (memchr(data, '\0', len) == NULL) {
                rc = notif_emit(handle, data);
                CHECK(rc == -EINVAL, "emit(%s) = %d (%s), expected -EINVAL", invalid[i], rc,
                      notif_strerror(rc));
                rejected++;
            }
        }
        free(data);
    }
    /* A NUL byte inside the given length is invalid JSON. */
    CHECK_RC(notif_emit_len(handle, "{\"a\":\"b\0c\"}", 11), -EINVAL);
    rejected++;
    /* The name "notif" is reserved as the first member, in every spelling:
     * such a line would pose as a control line of the protocol. */
    CHECK_RC(notif_emit(handle, "{\"notif\":{\"dropped\":1000000}}"), -EINVAL);
    CHECK_LAST_ERROR("reserved");
    rejected++;
    CHECK_RC(notif_emit(handle, " { \"notif\" : {\"error\":\"x\"}}"), -EINVAL);
    rejected++;
    CHECK_RC(notif_emit(handle, "{\"\\u006eotif\":{\"dropped\":1}}"), -EINVAL);
    rejected++;
    /* The length is honoured: the bytes after it are not read. */
    CHECK_RC(notif_emit_len(handle, "{\"len\":1}garbage", 9), 1);

    /* max_message is 64 bytes of the compact form. */
    {
        char message[256];
        /* {"k":"..."} is 8 bytes plus the string. */
        memset(message, 0, sizeof message);
        strcpy(message, "{\"k\":\"");
        memset(message + 6, 'x', 56);
        strcat(message, "\"}");
        CHECK(strlen(message) == 64, "test bug: %lu", (unsigned long)strlen(message));
        CHECK_RC(notif_emit(handle, message), 1);
        message[6 + 56] = 'x';
        strcpy(message + 6 + 57, "\"}");
        CHECK_RC(notif_emit(handle, message), -EMSGSIZE);
        CHECK_LAST_ERROR("max_message");
        CHECK_LAST_ERROR("65");
        rejected++;
        /* Counted once compact: 70 bytes of pretty input that compacts to 64 pass. */
        snprintf(message, sizeof message, "{ \"k\" :   \"%056d\" \n }", 0);
        CHECK(strlen(message) > 64, "test bug");
        CHECK_RC(notif_emit(handle, message), 1);
    }

    /* What went through, in order; nothing of the rejected ones. */
    {
        static const char *const expected[] = {"{\"len\":1}", NULL, NULL};
        char big[128];
        snprintf(big, sizeof big, "{\"k\":\"%056d\"}", 0);
        line = tl_read_line(&reader, 5000);
        CHECK(line && strcmp(line, expected[0]) == 0, "line 1: %s", line ? line : "(none)");
        free(line);
        line = tl_read_line(&reader, 5000);
        CHECK(line && strlen(line) == 64 && strncmp(line, "{\"k\":\"xxx", 9) == 0, "line 2: %s",
              line ? line : "(none)");
        free(line);
        line = tl_read_line(&reader, 5000);
        CHECK(line && strcmp(line, big) == 0, "line 3: %s", line ? line : "(none)");
        free(line);
        line = tl_read_line(&reader, 200);
        CHECK(line == NULL, "unexpected extra line: %s", line);
        free(line);
    }

    stats = tl_stats(handle);
    CHECK(stats.rejected == (unsigned long long)rejected, "rejected=%llu, expected %d",
          (unsigned long long)stats.rejected, rejected);
    CHECK(stats.emitted == 3, "emitted=%llu, expected 3", (unsigned long long)stats.emitted);

    /* NULL handle after a real error: the message changes to the new failure. */
    CHECK_RC(notif_emit(NULL, "{}"), -EINVAL);
    CHECK_LAST_ERROR("handle");

    tl_reader_free(&reader);
    close(fd);
    notif_close(handle);
}

/* -------------------------------------------------------------- get_stats */

static void test_get_stats(void)
{
    char path[512];
    notif_handle *handle;
    unsigned char raw[sizeof(notif_stats) + 64];
    notif_stats stats;
    size_t i;

    path_in_dir(path, sizeof path, "stats.sock");
    handle = open_or_die(path, NULL);

    CHECK_RC(notif_get_stats(NULL, &stats, sizeof stats), -EINVAL);
    CHECK_LAST_ERROR("NULL");
    CHECK_RC(notif_get_stats(handle, NULL, sizeof stats), -EINVAL);
    CHECK_LAST_ERROR("out");
    CHECK_RC(notif_get_stats(handle, &stats, 0), -EINVAL);
    CHECK_LAST_ERROR("sizeof(notif_stats)");
    CHECK_RC(notif_get_stats(handle, &stats, 8), -EINVAL);
    /* The first published struct had 10 fields: 80 bytes is the smallest size accepted. */
    CHECK_RC(notif_get_stats(handle, &stats, 79), -EINVAL);

    notif_emit(handle, "{}"); /* nobody there: dropped_no_subscriber = 1 */

    memset(raw, 0xAB, sizeof raw);
    CHECK_RC(notif_get_stats(handle, (notif_stats *)(void *)raw, 80), 0);
    for (i = 80; i < sizeof raw; i++)
        if (raw[i] != 0xAB)
            break;
    CHECK(i == sizeof raw, "a size of 80 wrote past 80 bytes (byte %lu)", (unsigned long)i);

    memset(raw, 0xAB, sizeof raw);
    CHECK_RC(notif_get_stats(handle, (notif_stats *)(void *)raw, sizeof(notif_stats) + 64), 0);
    for (i = sizeof(notif_stats); i < sizeof raw; i++)
        if (raw[i] != 0xAB)
            break;
    CHECK(i == sizeof raw, "a larger size wrote past sizeof(notif_stats) (byte %lu)",
          (unsigned long)i);

    memset(&stats, 0xAB, sizeof stats);
    CHECK_RC(notif_get_stats(handle, &stats, sizeof(notif_stats)), 0);
    CHECK(stats.subscribers == 0 && stats.accepted == 0 && stats.emitted == 0 &&
              stats.delivered == 0 && stats.dropped_no_subscriber == 1 &&
              stats.dropped_slow == 0 && stats.dropped_backlog == 0 && stats.rejected == 0 &&
              stats.bytes_sent == 0 && stats.disconnected == 0 && stats.dropped_closed == 0 &&
              stats.refused == 0 && stats.fanout == 0,
          "fresh publisher's stats are not as expected");
    /* Nobody connected: the emit wrote nothing and woke nobody. */
    CHECK(stats.writes == 0 && stats.wakeups == 0 && stats.written_through == 0,
          "writes=%llu wakeups=%llu written_through=%llu with nobody connected",
          (unsigned long long)stats.writes, (unsigned long long)stats.wakeups,
          (unsigned long long)stats.written_through);
    notif_close(handle);
}

/* The counters of system calls: one reading subscriber gets N notifications,
 * each read before the next is emitted. Each is written in at most one system
 * call (plus one for the acknowledgement of a request), whoever writes it;
 * an emit wakes the server thread at most once. Nothing here says who writes
 * (the server thread or the emitting thread), so wakeups has no lower bound
 * and written_through none but delivered. */
static void write_counters_with(const char *request)
{
    enum { N = 200 };
    static const char CONTROL[] = "{\"notif\":"; /* 9 bytes, the prefix of control lines */
    char path[512];
    notif_handle *handle;
    notif_stats before, after;
    tl_reader reader;
    int fd, i;
    long long give_up;

    path_in_dir(path, sizeof path, "writes.sock");
    handle = open_or_die(path, NULL);
    fd = tl_connect(path);
    if (fd < 0)
        FATAL("connect");
    tl_reader_init(&reader, fd);
    if (request != NULL) {
        char *ack;
        if (write(fd, request, strlen(request)) != (ssize_t)strlen(request))
            FATAL("write the request");
        ack = tl_read_line(&reader, 5000);
        CHECK(ack != NULL && strncmp(ack, CONTROL, 9) == 0 &&
                  strstr(ack, "\"subscribed\":true") != NULL,
              "%s: no acknowledgement (%s)", request, ack ? ack : "none");
        free(ack);
    }
    CHECK(tl_wait_subscribers(handle, 1) == 0, "one subscriber expected");
    before = tl_stats(handle);

    for (i = 0; i < N; i++) {
        char message[64];
        char *line;
        snprintf(message, sizeof message, "{\"seq\":%d,\"who\":\"all\"}", i);
        CHECK_RC(notif_emit(handle, message), 1);
        /* Control lines (seq lines with cursors) are not the notification. */
        while ((line = tl_read_line(&reader, 5000)) != NULL && strncmp(line, CONTROL, 9) == 0)
            free(line);
        CHECK(line != NULL && strcmp(line, message) == 0, "notification %d: got %s", i,
              line ? line : "(none)");
        free(line);
    }
    give_up = tl_now_ms() + tl_timeout(5000);
    do {
        after = tl_stats(handle);
    } while (after.delivered < N && tl_now_ms() < give_up && (tl_sleep_ms(2), 1));
    CHECK(after.delivered == N, "delivered=%llu, expected %d", (unsigned long long)after.delivered,
          N);
    CHECK(after.writes - before.writes >= 1 && after.writes - before.writes <= N + 2,
          "%s: %llu writes for %d notifications read one by one", request ? request : "plain",
          (unsigned long long)(after.writes - before.writes), N);
    CHECK(after.wakeups - before.wakeups <= N, "%s: %llu wakeups for %d emits",
          request ? request : "plain", (unsigned long long)(after.wakeups - before.wakeups), N);
    CHECK(after.written_through <= after.delivered, "written_through=%llu > delivered=%llu",
          (unsigned long long)after.written_through, (unsigned long long)after.delivered);
    CHECK(after.fanout == after.delivered + after.dropped_slow + after.dropped_closed,
          "fanout=%llu != delivered=%llu + dropped_slow=%llu + dropped_closed=%llu",
          (unsigned long long)after.fanout, (unsigned long long)after.delivered,
          (unsigned long long)after.dropped_slow, (unsigned long long)after.dropped_closed);
    printf("write counters (%s): %d notifications read one by one: %llu writes, %llu wakeups, "
           "%llu written through\n",
           request ? "cursor" : "plain", N, (unsigned long long)(after.writes - before.writes),
           (unsigned long long)(after.wakeups - before.wakeups),
           (unsigned long long)(after.written_through - before.written_through));

    /* It leaves: emits with nobody connected write nothing and wake nobody. */
    tl_reader_free(&reader);
    close(fd);
    CHECK(tl_wait_subscribers(handle, 0) == 0, "the subscriber should be gone");
    before = tl_stats(handle);
    for (i = 0; i < 50; i++)
        CHECK_RC(notif_emit(handle, "{\"nobody\":true}"), 0);
    after = tl_stats(handle);
    CHECK(after.writes == before.writes && after.wakeups == before.wakeups &&
              after.written_through == before.written_through,
          "nobody connected: writes %llu -> %llu, wakeups %llu -> %llu",
          (unsigned long long)before.writes, (unsigned long long)after.writes,
          (unsigned long long)before.wakeups, (unsigned long long)after.wakeups);
    CHECK(after.dropped_no_subscriber == before.dropped_no_subscriber + 50,
          "dropped_no_subscriber=%llu", (unsigned long long)after.dropped_no_subscriber);
    notif_close(handle);
}

static void test_write_counters(void)
{
    write_counters_with(NULL);
    write_counters_with("{\"cursor\":true}\n");
}

/* ----------------------------------------------------------- delivery */

/* Reads `count` lines of {"seq":i} in order from a reader. */
static int expect_sequence(tl_reader *reader, int count, const char *who)
{
    int i, bad = 0;
    for (i = 0; i < count && !bad; i++) {
        char expected[64];
        char *line = tl_read_line(reader, 5000);
        snprintf(expected, sizeof expected, "{\"seq\":%d,\"who\":\"all\"}", i);
        if (line == NULL || strcmp(line, expected) != 0) {
            CHECK(0, "%s: line %d is %s, expected %s", who, i, line ? line : "(none)", expected);
            bad = 1;
        }
        free(line);
    }
    return bad ? -1 : 0;
}

static void test_delivery_and_stats(void)
{
    enum { MESSAGES = 2000 };
    char path[512];
    notif_handle *handle;
    notif_stats stats;
    tl_reader a, b;
    int fa, fb, i, accepted = 0;
    unsigned long long bytes = 0;
    long long give_up;

    path_in_dir(path, sizeof path, "delivery.sock");
    handle = open_or_die(path, NULL);
    CHECK_RC(notif_emit(handle, "{\"before\":\"anyone\"}"), 0);

    fa = tl_connect(path);
    fb = tl_connect(path);
    if (fa < 0 || fb < 0)
        FATAL("connect");
    tl_reader_init(&a, fa);
    tl_reader_init(&b, fb);
    CHECK(tl_wait_subscribers(handle, 2) == 0, "two subscribers expected");

    for (i = 0; i < MESSAGES; i++) {
        char message[64];
        int rc;
        /* Pretty on even numbers: the wire always carries the compact form. */
        snprintf(message, sizeof message, i % 2 ? "{\"seq\":%d,\"who\":\"all\"}"
                                                : "{ \"seq\" : %d,\n \"who\" : \"all\" }", i);
        rc = notif_emit(handle, message);
        CHECK(rc == 2, "emit #%d returned %d (%s), expected 2", i, rc, notif_strerror(rc));
        if (rc == 2) {
            accepted++;
            snprintf(message, sizeof message, "{\"seq\":%d,\"who\":\"all\"}", i);
            bytes += strlen(message) + 1;
        }
    }
    expect_sequence(&a, MESSAGES, "subscriber A");
    expect_sequence(&b, MESSAGES, "subscriber B");

    /* Everything has been read, so every pair has been delivered. */
    give_up = tl_now_ms() + tl_timeout(5000);
    do {
        stats = tl_stats(handle);
    } while (stats.delivered < 2ULL * accepted && tl_now_ms() < give_up && (tl_sleep_ms(2), 1));
    CHECK(stats.subscribers == 2, "subscribers=%llu", (unsigned long long)stats.subscribers);
    CHECK(stats.accepted == 2, "accepted=%llu", (unsigned long long)stats.accepted);
    CHECK(stats.emitted == (unsigned long long)accepted, "emitted=%llu, expected %d",
          (unsigned long long)stats.emitted, accepted);
    CHECK(stats.delivered == 2ULL * accepted, "delivered=%llu, expected %d",
          (unsigned long long)stats.delivered, 2 * accepted);
    CHECK(stats.fanout == 2ULL * accepted, "fanout=%llu, expected %d",
          (unsigned long long)stats.fanout, 2 * accepted);
    CHECK(stats.fanout == stats.delivered + stats.dropped_slow + stats.dropped_closed,
          "fanout != delivered + dropped_slow + dropped_closed");
    CHECK(stats.bytes_sent == 2 * bytes, "bytes_sent=%llu, expected %llu",
          (unsigned long long)stats.bytes_sent, 2 * bytes);
    CHECK(stats.dropped_no_subscriber == 1, "dropped_no_subscriber=%llu",
          (unsigned long long)stats.dropped_no_subscriber);
    CHECK(stats.rejected == 0 && stats.dropped_slow == 0 && stats.dropped_backlog == 0 &&
              stats.disconnected == 0 && stats.refused == 0,
          "unexpected drops");

    /* One leaves: the count follows, the other keeps receiving. */
    tl_reader_free(&b);
    close(fb);
    CHECK(tl_wait_subscribers(handle, 1) == 0, "the count should drop to 1");
    CHECK_RC(notif_emit(handle, "{\"seq\":0,\"who\":\"all\"}"), 1);
    expect_sequence(&a, 1, "subscriber A after B left");

    /* Queued messages are flushed by close (linger), then the stream ends. */
    for (i = 0; i < 100; i++) {
        char message[64];
        snprintf(message, sizeof message, "{\"seq\":%d,\"who\":\"all\"}", i);
        CHECK_RC(notif_emit(handle, message), 1);
    }
    notif_close(handle);
    CHECK(!path_exists(path), "notif_close should remove the socket file");
    expect_sequence(&a, 100, "subscriber A after close");
    {
        char *line = tl_read_line(&a, 5000);
        CHECK(line == NULL && a.eof, "the stream should end after close, got %s",
              line ? line : "a timeout");
        free(line);
    }
    tl_reader_free(&a);
    close(fa);
}

/* The fixtures: pretty input arrives as one compact line, equal to the compact fixture. */
static void test_fixtures(void)
{
    static const char *const names[] = {"nova-instance-update.json", "small.json",
                                        "unicode.json"};
    char path[512], file[512];
    notif_handle *handle;
    tl_reader reader;
    char *pretty, *compact, *line;
    size_t i, len;
    int fd;

    path_in_dir(path, sizeof path, "fixtures.sock");
    handle = open_or_die(path, NULL);
    fd = tl_connect(path);
    if (fd < 0)
        FATAL("connect");
    tl_reader_init(&reader, fd);
    CHECK(tl_wait_subscribers(handle, 1) == 0, "subscriber not counted");

    snprintf(file, sizeof file, "%s/nova-instance-update.pretty.json", FIXTURES_DIR);
    pretty = tl_read_file(file, &len);
    CHECK(strchr(pretty, '\n') != NULL, "the pretty fixture should span lines");
    snprintf(file, sizeof file, "%s/nova-instance-update.json", FIXTURES_DIR);
    compact = tl_read_file(file, NULL);
    CHECK_RC(notif_emit(handle, pretty), 1);
    line = tl_read_line(&reader, 5000);
    CHECK(line != NULL && strcmp(line, compact) == 0,
          "the pretty fixture should arrive as the compact fixture; got %s",
          line ? line : "(nothing)");
    free(line);
    free(pretty);
    free(compact);

    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(file, sizeof file, "%s/%s", FIXTURES_DIR, names[i]);
        compact = tl_read_file(file, &len);
        CHECK_RC(notif_emit_len(handle, compact, len), 1);
        line = tl_read_line(&reader, 5000);
        CHECK(line != NULL && strcmp(line, compact) == 0, "%s arrived changed: %s", names[i],
              line ? line : "(nothing)");
        free(line);
        free(compact);
    }
    tl_reader_free(&reader);
    close(fd);
    notif_close(handle);
}

/* ------------------------------------------------------------- abstract */

static void test_abstract(void)
{
    char name[128];
    notif_handle *handle;
    tl_reader reader;
    char *line;
    int fd;

    snprintf(name, sizeof name, "@notif-test-api-%ld", (long)getpid());
    handle = notif_open(name);
    CHECK(handle != NULL, "abstract socket %s: errno %d", name, errno);
    if (handle == NULL)
        return;
    CHECK(!path_exists(name), "an abstract socket must not create a file named %s", name);
    fd = tl_connect(name);
    CHECK(fd >= 0, "connect to %s: errno %d", name, errno);
    if (fd >= 0) {
        tl_reader_init(&reader, fd);
        CHECK(tl_wait_subscribers(handle, 1) == 0, "subscriber not counted");
        CHECK_RC(notif_emit(handle, "{\"abstract\": true}"), 1);
        line = tl_read_line(&reader, 5000);
        CHECK(line != NULL && strcmp(line, "{\"abstract\":true}") == 0, "got %s",
              line ? line : "(nothing)");
        free(line);
        tl_reader_free(&reader);
        close(fd);
    }
    notif_close(handle);
}

/* ----------------------------------------------------------------- close */

static void test_close(void)
{
    char path[512];
    notif_handle *handle;
    struct stat st;
    FILE *f;

    notif_close(NULL); /* a no-op */

    path_in_dir(path, sizeof path, "close.sock");
    handle = open_or_die(path, NULL);
    CHECK(lstat(path, &st) == 0 && S_ISSOCK(st.st_mode), "the socket file should exist");
    notif_close(handle);
    CHECK(!path_exists(path), "notif_close should remove the socket file");

    /* close removes only the file it created: a file put there since stays. */
    handle = open_or_die(path, NULL);
    unlink(path);
    f = fopen(path, "w");
    if (f == NULL)
        FATAL("fopen");
    fputs("someone else's", f);
    fclose(f);
    notif_close(handle);
    CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode),
          "notif_close must not remove a file it did not create");
    unlink(path);

    /* Reopen at once on the same path. */
    handle = open_or_die(path, NULL);
    notif_close(handle);
    handle = open_or_die(path, NULL);
    notif_close(handle);
    CHECK(!path_exists(path), "the socket file should be gone");
}

/* max_subscribers: connections over the limit are accepted and closed. */
static void test_max_subscribers(void)
{
    char path[512];
    notif_options *opts = notif_options_new();
    notif_handle *handle;
    notif_stats stats;
    long long give_up;
    int first, second;

    path_in_dir(path, sizeof path, "max.sock");
    notif_options_set_max_subscribers(opts, 1);
    handle = open_or_die(path, opts);
    notif_options_free(opts);
    first = tl_connect(path);
    CHECK(tl_wait_subscribers(handle, 1) == 0, "first subscriber");
    second = tl_connect(path);
    CHECK(second >= 0, "the second connect itself succeeds (then is closed)");
    if (second >= 0) {
        /* It is told why (after the grace a stats probe gets), then closed. */
        tl_reader reader;
        char *line;
        tl_reader_init(&reader, second);
        line = tl_read_line(&reader, 5000);
        CHECK(line != NULL && strncmp(line, "{\"notif\":{\"error\":", 18) == 0 &&
                  strstr(line, "\"reason\":\"full\"") != NULL,
              "the connection over the limit should be told the publisher is full: %s",
              line ? line : "(nothing)");
        free(line);
        line = tl_read_line(&reader, 5000);
        CHECK(line == NULL && reader.eof, "then closed");
        free(line);
        tl_reader_free(&reader);
        close(second);
    }
    give_up = tl_now_ms() + tl_timeout(5000);
    do {
        stats = tl_stats(handle);
    } while (stats.refused == 0 && tl_now_ms() < give_up && (tl_sleep_ms(2), 1));
    CHECK(stats.refused == 1 && stats.accepted == 2 && stats.subscribers == 1,
          "refused=%llu accepted=%llu subscribers=%llu", (unsigned long long)stats.refused,
          (unsigned long long)stats.accepted, (unsigned long long)stats.subscribers);
    CHECK_RC(notif_emit(handle, "{}"), 1);
    close(first);
    notif_close(handle);
}

/* Many threads emit on one handle at once: every message arrives whole, and
 * each thread's messages arrive in the order it emitted them. */
enum { EMIT_THREADS = 4, PER_THREAD = 500 };

struct emitter {
    notif_handle *handle;
    int id;
    int failures;
};

static void *emit_from_thread(void *arg)
{
    struct emitter *e = arg;
    int i;
    for (i = 0; i < PER_THREAD; i++) {
        char message[64];
        snprintf(message, sizeof message, "{\"thread\":%d,\"seq\":%d}", e->id, i);
        if (notif_emit(e->handle, message) != 1)
            e->failures++;
    }
    return NULL;
}

static void test_concurrent_emitters(void)
{
    char path[512];
    notif_handle *handle;
    pthread_t threads[EMIT_THREADS];
    struct emitter emitters[EMIT_THREADS];
    int next[EMIT_THREADS] = {0};
    tl_reader reader;
    int fd, i, received = 0, disorder = 0;

    path_in_dir(path, sizeof path, "threads.sock");
    handle = open_or_die(path, NULL);
    fd = tl_connect(path);
    if (fd < 0)
        FATAL("connect");
    tl_reader_init(&reader, fd);
    CHECK(tl_wait_subscribers(handle, 1) == 0, "subscriber not counted");
    for (i = 0; i < EMIT_THREADS; i++) {
        emitters[i].handle = handle;
        emitters[i].id = i;
        emitters[i].failures = 0;
        if (pthread_create(&threads[i], NULL, emit_from_thread, &emitters[i]) != 0)
            FATAL("pthread_create");
    }
    for (i = 0; i < EMIT_THREADS; i++) {
        pthread_join(threads[i], NULL);
        CHECK(emitters[i].failures == 0, "thread %d: %d emits did not return 1", i,
              emitters[i].failures);
    }
    while (received < EMIT_THREADS * PER_THREAD) {
        int thread = -1, seq = -1;
        char *line = tl_read_line(&reader, 5000);
        if (line == NULL)
            break;
        if (sscanf(line, "{\"thread\":%d,\"seq\":%d}", &thread, &seq) != 2 || thread < 0 ||
            thread >= EMIT_THREADS) {
            CHECK(0, "a garbled line: %s", line);
            free(line);
            break;
        }
        if (seq != next[thread])
            disorder++;
        next[thread] = seq + 1;
        received++;
        free(line);
    }
    CHECK(received == EMIT_THREADS * PER_THREAD, "received %d of %d lines", received,
          EMIT_THREADS * PER_THREAD);
    CHECK(disorder == 0, "%d lines out of their thread's order", disorder);
    tl_reader_free(&reader);
    close(fd);
    notif_close(handle);
}

/* A subscriber that never reads: with NOTIF_SLOW_DROP it stays connected and
 * loses messages, but what it gets is whole lines; with NOTIF_SLOW_DISCONNECT
 * it is closed. Either way emit never blocks and the counters add up. */
static void test_slow_subscriber(int policy)
{
    enum { MESSAGE = 4000, COUNT = 400 };
    char path[512];
    char *message = malloc(MESSAGE + 1);
    notif_options *opts = notif_options_new();
    notif_handle *handle;
    notif_stats stats;
    tl_reader reader;
    long long give_up;
    int fd, i, lines = 0, sent;
    char *line;

    if (message == NULL)
        FATAL("malloc");
    path_in_dir(path, sizeof path, "slow.sock");
    CHECK_RC(notif_options_set_subscriber_buffer(opts, 64 * 1024), 0);
    CHECK_RC(notif_options_set_max_message(opts, 8 * 1024), 0);
    CHECK_RC(notif_options_set_slow_policy(opts, policy), 0);
    handle = open_or_die(path, opts);
    notif_options_free(opts);
    fd = tl_connect(path);
    if (fd < 0)
        FATAL("connect");
    tl_reader_init(&reader, fd);
    CHECK(tl_wait_subscribers(handle, 1) == 0, "subscriber not counted");

    /* 1.6 MB at a subscriber that reads nothing, through a 64 KiB buffer. One
     * message at a time: each is handed out before the next is emitted. */
    for (i = 0; i < COUNT; i++) {
        int head = snprintf(message, MESSAGE, "{\"seq\":%d,\"fill\":\"", i);
        unsigned long long before = tl_stats(handle).fanout;
        int rc;
        memset(message + head, 's', (size_t)(MESSAGE - head - 2));
        strcpy(message + MESSAGE - 2, "\"}");
        rc = notif_emit(handle, message);
        CHECK(rc >= 0, "emit #%d: %d (%s)", i, rc, notif_strerror(rc));
        if (rc != 1)
            break; /* disconnected */
        give_up = tl_now_ms() + tl_timeout(5000);
        while (tl_stats(handle).fanout == before && tl_stats(handle).subscribers == 1) {
            if (tl_now_ms() > give_up) {
                CHECK(0, "message %d was never handed out", i);
                break;
            }
            tl_sleep_ms(1);
        }
    }
    sent = i;
    stats = tl_stats(handle);
    CHECK(stats.dropped_slow > 0, "policy %d: nothing was dropped for the slow subscriber", policy);
    if (policy == NOTIF_SLOW_DISCONNECT)
        CHECK(tl_wait_subscribers(handle, 0) == 0 && tl_stats(handle).disconnected == 1,
              "the slow subscriber should be disconnected");
    else
        CHECK(stats.subscribers == 1 && stats.disconnected == 0 && sent == COUNT,
              "with NOTIF_SLOW_DROP the slow subscriber stays");

    /* Now read: whole lines only, in increasing order. */
    {
        int last = -1, bad = 0;
        while ((line = tl_read_line(&reader, policy == NOTIF_SLOW_DROP ? 300 : 5000)) != NULL) {
            int seq = -1;
            if (strlen(line) != MESSAGE || sscanf(line, "{\"seq\":%d,", &seq) != 1 || seq <= last)
                bad++;
            last = seq;
            lines++;
            free(line);
        }
        CHECK(bad == 0, "policy %d: %d broken or out-of-order lines", policy, bad);
        CHECK(lines > 0 && lines < sent, "policy %d: read %d lines of %d", policy, lines, sent);
        if (policy == NOTIF_SLOW_DISCONNECT && reader.used != 0)
            printf("note: after the slow-subscriber disconnect the stream ended with %lu bytes "
                   "of an unfinished line (clients must drop an unterminated last line)\n",
                   (unsigned long)reader.used);
    }
    stats = tl_stats(handle);
    CHECK(stats.fanout == stats.delivered + stats.dropped_slow + stats.dropped_closed,
          "policy %d: fanout %llu != delivered %llu + dropped_slow %llu + dropped_closed %llu",
          policy, (unsigned long long)stats.fanout, (unsigned long long)stats.delivered,
          (unsigned long long)stats.dropped_slow, (unsigned long long)stats.dropped_closed);
    CHECK(stats.delivered >= (unsigned long long)lines, "delivered %llu < lines read %d",
          (unsigned long long)stats.delivered, lines);
    tl_reader_free(&reader);
    close(fd);
    notif_close(handle);
    free(message);
}

/* After fork() the child's copy of the handle answers -EBADF, and closing it
 * there leaves the parent's socket file and server thread alone. */
static void test_fork(void)
{
    char path[512];
    notif_handle *handle;
    int fd, status = 0;
    pid_t child;

    path_in_dir(path, sizeof path, "fork.sock");
    handle = open_or_die(path, NULL);
    fd = tl_connect(path);
    if (fd < 0)
        FATAL("connect");
    CHECK(tl_wait_subscribers(handle, 1) == 0, "subscriber not counted");
    fflush(NULL);
    child = fork();
    if (child < 0)
        FATAL("fork");
    if (child == 0) {
        notif_stats stale;
        int rc = notif_emit(handle, "{\"from\":\"child\"}");
        /* The counters are the parent's, frozen at fork(): not this process's. */
        int stats_rc = notif_get_stats(handle, &stale, sizeof stale);
        notif_close(handle);
        if (rc != -EBADF)
            _exit(10 + (rc < 0 ? -rc : rc) % 100);
        if (stats_rc != -EBADF)
            _exit(8);
        /* Exec, as a daemon's child would: what the parent's server thread had
         * allocated stays in the child until exec (documented), which valgrind
         * would report as lost if the child exited instead. */
        execl("/bin/sh", "sh", "-c", "exit 0", (char *)NULL);
        _exit(9);
    }
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "in the child, emit and get_stats should return -EBADF (child exit status %d)",
          WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    CHECK(path_exists(path), "the child's notif_close removed the parent's socket file");
    CHECK_RC(notif_emit(handle, "{\"from\":\"parent\"}"), 1);
    {
        tl_reader reader;
        char *line;
        tl_reader_init(&reader, fd);
        line = tl_read_line(&reader, 5000);
        CHECK(line != NULL && strcmp(line, "{\"from\":\"parent\"}") == 0,
              "the parent should still publish after the child closed its copy: %s",
              line ? line : "(nothing)");
        free(line);
        tl_reader_free(&reader);
    }
    close(fd);
    notif_close(handle);
    CHECK(!path_exists(path), "the parent's notif_close removes the file");
}

/* notif_last_error is per thread. */
static void *fail_in_thread(void *arg)
{
    (void)arg;
    notif_emit(NULL, "{}");
    return (void *)(strstr(notif_last_error(), "handle") != NULL ? (void *)1 : NULL);
}

static void test_last_error_per_thread(void)
{
    pthread_t thread;
    void *result = NULL;
    notif_options *opts = notif_options_new();
    CHECK_RC(notif_options_set_slow_policy(opts, 7), -EINVAL);
    CHECK_LAST_ERROR("slow policy 7");
    if (pthread_create(&thread, NULL, fail_in_thread, NULL) != 0)
        FATAL("pthread_create");
    pthread_join(thread, &result);
    CHECK(result != NULL, "the other thread should see its own error");
    CHECK_LAST_ERROR("slow policy 7");
    notif_options_free(opts);
}

/* notif_subscribers / notif_skip, and the memory limit and replay options. */
static void test_subscribers_skip_and_limits(void)
{
    char path[512];
    notif_options *opts = notif_options_new();
    notif_handle *handle;
    notif_stats stats;
    int subscriber;

    CHECK_RC(notif_subscribers(NULL), -EINVAL);
    CHECK_RC(notif_skip(NULL), -EINVAL);
    CHECK_RC(notif_options_set_memory_limit(opts, 1000), -EINVAL);
    CHECK(strstr(notif_last_error(), "memory limit") != NULL, "%s", notif_last_error());
    CHECK_RC(notif_options_set_memory_limit(opts, 1 << 20), 0);
    CHECK_RC(notif_options_set_replay(opts, 1 << 20), 0);
    path_in_dir(path, sizeof path, "limits.sock");
    /* A ring larger than half the memory limit it is counted in cannot work. */
    errno = 0;
    CHECK(notif_open_with(path, opts) == NULL && errno == EINVAL, "replay over half the limit: errno %d",
          errno);
    CHECK(strstr(notif_last_error(), "replay") != NULL, "%s", notif_last_error());
    CHECK_RC(notif_options_set_replay(opts, 0), 0);
    handle = open_or_die(path, opts);
    notif_options_free(opts);
    CHECK_RC(notif_subscribers(handle), 0);
    CHECK_RC(notif_skip(handle), 0);
    CHECK_RC(notif_skip(handle), 0);
    stats = tl_stats(handle);
    CHECK(stats.dropped_no_subscriber == 2, "dropped_no_subscriber=%llu",
          (unsigned long long)stats.dropped_no_subscriber);
    subscriber = tl_connect(path);
    CHECK(tl_wait_subscribers(handle, 1) == 0, "one subscriber");
    CHECK_RC(notif_subscribers(handle), 1);
    close(subscriber);
    CHECK(tl_wait_subscribers(handle, 0) == 0, "none again");
    CHECK_RC(notif_subscribers(handle), 0);
    notif_close(handle);
}

int main(void)
{
    /* The library must never raise SIGPIPE; keep the default to prove it. */
    signal(SIGPIPE, SIG_DFL);
    tl_make_temp_dir(dir, sizeof dir, "notif-test-api");

    test_version();
    test_strerror();
    test_open_errors();
    test_stale_socket_replaced();
    test_options();
    test_socket_mode();
    test_emit_errors();
    test_get_stats();
    test_write_counters();
    test_delivery_and_stats();
    test_fixtures();
    test_abstract();
    test_close();
    test_max_subscribers();
    test_subscribers_skip_and_limits();
    test_last_error_per_thread();
    test_concurrent_emitters();
    test_slow_subscriber(NOTIF_SLOW_DROP);
    test_slow_subscriber(NOTIF_SLOW_DISCONNECT);
    test_fork();

    tl_remove_dir(dir);
    return tl_finish("test_api");
}
