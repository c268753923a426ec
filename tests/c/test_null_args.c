/*
 * The NULL rule of notif.h's opening comment, applied to every function the
 * header declares: each pointer argument is passed NULL on its own (the
 * others valid), and the documented result is checked. A NULL object, string
 * or buffer is EINVAL (-EINVAL, or NULL / 0 with errno EINVAL) and
 * notif_last_error() names the argument; the release functions take NULL as
 * a no-op; the arguments documented "may be NULL" mean the defaults.
 *
 * Complete by construction: the test reads include/notif.h (HEADER_PATH),
 * lists every function it declares, and fails naming any that no case here
 * exercised, so a new function cannot be added without its NULL cases.
 */
#include <stdint.h>

#include "testlib.h"

#ifndef HEADER_PATH
#error "build with -DHEADER_PATH='\"/path/to/notif.h\"'"
#endif

#define MAX_FUNCTIONS 128
static const char *covered[MAX_FUNCTIONS];
static int n_covered;

static void cover(const char *name)
{
    for (int i = 0; i < n_covered; i++)
        if (strcmp(covered[i], name) == 0)
            return;
    if (n_covered == MAX_FUNCTIONS)
        FATAL("more than %d functions", MAX_FUNCTIONS);
    covered[n_covered++] = name;
}

/* An int-returning call given a NULL `arg`: -EINVAL, naming it. */
#define NULL_RC(fn, arg, call)                                                            \
    do {                                                                                  \
        cover(#fn);                                                                       \
        CHECK_RC(call, -EINVAL);                                                          \
        CHECK_LAST_ERROR(arg " is NULL");                                                 \
    } while (0)

/* A pointer-returning call given a NULL `arg`: NULL with errno EINVAL, naming it. */
#define NULL_PTR(fn, arg, call)                                                           \
    do {                                                                                  \
        cover(#fn);                                                                       \
        errno = 0;                                                                        \
        const void *tl_p_ = (call);                                                       \
        int tl_e_ = errno;                                                                \
        CHECK(tl_p_ == NULL, "%s returned %p, expected NULL", #call, tl_p_);             \
        CHECK(tl_e_ == EINVAL, "%s set errno %d, expected EINVAL", #call, tl_e_);        \
        CHECK_LAST_ERROR(arg " is NULL");                                                 \
    } while (0)

/* The functions notif.h declares: identifiers notif_* followed by "(" on a
 * line that is not a comment. */
static int declared(char names[][64], int max)
{
    size_t len;
    char *text = tl_read_file(HEADER_PATH, &len);
    if (text == NULL)
        FATAL("cannot read %s", HEADER_PATH);
    int n = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        const char *s = line;
        while (*s == ' ')
            s++;
        if (*s == '*' || *s == '/' || *s == '#')
            continue;
        const char *at = strstr(s, "notif_");
        while (at != NULL) {
            const char *end = at;
            while ((*end >= 'a' && *end <= 'z') || *end == '_' || (*end >= '0' && *end <= '9'))
                end++;
            if (*end == '(' && (at == s || at[-1] == ' ' || at[-1] == '*')) {
                if (n == max)
                    FATAL("more than %d declarations", max);
                snprintf(names[n], 64, "%.*s", (int)(end - at), at);
                n++;
                break;
            }
            at = strstr(end, "notif_");
        }
    }
    free(text);
    return n;
}

static void release_functions(void)
{
    /* NULL is a no-op, and sets no error. */
    const char *before = "untouched";
    errno = 0;
    cover("notif_close");
    notif_close(NULL);
    cover("notif_options_free");
    notif_options_free(NULL);
    cover("notif_unsubscribe");
    notif_unsubscribe(NULL);
    CHECK(errno == 0, "a release function given NULL set errno %d", errno);
    (void)before;
}

static void publisher_functions(const char *dir)
{
    char path[320];
    snprintf(path, sizeof path, "%s/p.sock", dir);
    notif_options *opts = notif_options_new();
    cover("notif_options_new");
    if (opts == NULL)
        FATAL("notif_options_new");

    NULL_PTR(notif_open, "path", notif_open(NULL));
    NULL_PTR(notif_open_with, "path", notif_open_with(NULL, opts));
    /* opts may be NULL: the defaults. */
    notif_handle *h = notif_open_with(path, NULL);
    CHECK(h != NULL, "notif_open_with(path, NULL) uses the defaults");
    if (h == NULL)
        FATAL("notif_open_with");

    NULL_RC(notif_emit, "handle", notif_emit(NULL, "{}"));
    NULL_RC(notif_emit, "json", notif_emit(h, NULL));
    NULL_RC(notif_emit_len, "handle", notif_emit_len(NULL, "{}", 2));
    NULL_RC(notif_emit_len, "json", notif_emit_len(h, NULL, 0));
    NULL_RC(notif_emit_len, "json", notif_emit_len(h, NULL, 5));
    NULL_RC(notif_subscribers, "handle", notif_subscribers(NULL));
    NULL_RC(notif_skip, "handle", notif_skip(NULL));
    notif_stats st;
    NULL_RC(notif_get_stats, "handle", notif_get_stats(NULL, &st, sizeof st));
    NULL_RC(notif_get_stats, "out", notif_get_stats(h, NULL, sizeof st));
    /* A NULL json is a caller error: not counted in rejected. */
    CHECK_RC(notif_get_stats(h, &st, sizeof st), 0);
    CHECK(st.rejected == 0, "rejected counted a NULL json: %llu", (unsigned long long)st.rejected);
    /* And the handle still works after all that. */
    CHECK_RC(notif_emit(h, "{\"ok\":1}"), 0);
    notif_close(h);

    /* notif_open_fd: opts may be NULL (the defaults). */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr;
    char fd_path[320];
    snprintf(fd_path, sizeof fd_path, "%s/fd.sock", dir);
    socklen_t alen = tl_address(fd_path, &addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, alen) != 0 || listen(fd, 16) != 0)
        FATAL("a listening socket");
    cover("notif_open_fd");
    notif_handle *hf = notif_open_fd(fd, NULL);
    CHECK(hf != NULL, "notif_open_fd(fd, NULL) uses the defaults");
    notif_close(hf);

    /* Every setter: NULL opts; notif_options_set_group also a NULL group. */
    NULL_RC(notif_options_set_mode, "opts", notif_options_set_mode(NULL, 0600));
    NULL_RC(notif_options_set_group, "opts", notif_options_set_group(NULL, "0"));
    NULL_RC(notif_options_set_group, "group", notif_options_set_group(opts, NULL));
    NULL_RC(notif_options_set_subscriber_buffer, "opts",
            notif_options_set_subscriber_buffer(NULL, 1 << 20));
    NULL_RC(notif_options_set_memory_limit, "opts", notif_options_set_memory_limit(NULL, 1 << 24));
    NULL_RC(notif_options_set_replay, "opts", notif_options_set_replay(NULL, 1 << 20));
    NULL_RC(notif_options_set_max_message, "opts", notif_options_set_max_message(NULL, 1024));
    NULL_RC(notif_options_set_max_subscribers, "opts", notif_options_set_max_subscribers(NULL, 8));
    NULL_RC(notif_options_set_max_per_uid, "opts", notif_options_set_max_per_uid(NULL, 8));
    NULL_RC(notif_options_set_linger_ms, "opts", notif_options_set_linger_ms(NULL, 10));
    NULL_RC(notif_options_set_slow_policy, "opts",
            notif_options_set_slow_policy(NULL, NOTIF_SLOW_DROP));
    NULL_RC(notif_options_set_backlog, "opts", notif_options_set_backlog(NULL, 1 << 20));
    NULL_RC(notif_options_allow_uid, "opts", notif_options_allow_uid(NULL, 0));
    NULL_RC(notif_options_allow_gid, "opts", notif_options_allow_gid(NULL, 0));
    /* The object is unchanged by the refused NULL group and still opens. */
    notif_handle *h2 = notif_open_with(path, opts);
    CHECK(h2 != NULL, "options still usable after a NULL group was refused");
    notif_close(h2);
    notif_options_free(opts);
}

static void subscriber_functions(const char *dir)
{
    char path[320];
    snprintf(path, sizeof path, "%s/s.sock", dir);
    notif_handle *h = notif_open(path);
    if (h == NULL)
        FATAL("notif_open");

    NULL_PTR(notif_subscribe, "path", notif_subscribe(NULL, NULL));
    /* request_json may be NULL: every notification. */
    notif_subscriber *s = notif_subscribe(path, NULL);
    CHECK(s != NULL, "notif_subscribe(path, NULL) subscribes to everything");
    if (s == NULL)
        FATAL("notif_subscribe");

    const char *msg = "untouched";
    size_t len = 42;
    NULL_RC(notif_recv, "s", notif_recv(NULL, &msg, &len, 0));
    NULL_RC(notif_recv, "msg", notif_recv(s, NULL, &len, 0));
    NULL_RC(notif_recv, "len", notif_recv(s, &msg, NULL, 0));
    NULL_RC(notif_subscriber_fd, "s", notif_subscriber_fd(NULL));
    NULL_PTR(notif_subscriber_cursor, "s", notif_subscriber_cursor(NULL));

    cover("notif_subscriber_dropped");
    errno = 0;
    uint64_t dropped = notif_subscriber_dropped(NULL);
    int e = errno;
    CHECK(dropped == 0, "notif_subscriber_dropped(NULL) returned %llu", (unsigned long long)dropped);
    CHECK(e == EINVAL, "notif_subscriber_dropped(NULL) set errno %d, expected EINVAL", e);
    CHECK_LAST_ERROR("s is NULL");

    /* The subscriber is unharmed: it still receives. */
    CHECK(tl_wait_subscribers(h, 1) == 0, "the subscriber connected");
    CHECK_RC(notif_emit(h, "{\"n\":1}"), 1);
    int rc;
    long long deadline = tl_now_ms() + tl_timeout(10000);
    do {
        rc = notif_recv(s, &msg, &len, 100);
    } while (rc == NOTIF_RECV_TIMEOUT && tl_now_ms() < deadline);
    CHECK(rc == NOTIF_RECV_MESSAGE && len == 7 && memcmp(msg, "{\"n\":1}", 7) == 0,
          "after the NULL calls, notif_recv got rc %d", rc);
    CHECK(notif_subscriber_cursor(s) != NULL, "a cursor after a notification");
    CHECK(notif_subscriber_dropped(s) == 0, "nothing dropped");
    CHECK(notif_subscriber_fd(s) >= 0, "a descriptor");
    notif_unsubscribe(s);
    notif_close(h);
}

static void functions_without_pointers(void)
{
    /* Nothing to pass NULL to: they never fail (never NULL either). */
    cover("notif_last_error");
    CHECK(notif_last_error() != NULL, "notif_last_error is never NULL");
    cover("notif_strerror");
    CHECK(notif_strerror(-EINVAL) != NULL && strstr(notif_strerror(-EINVAL), "NULL") != NULL,
          "notif_strerror(-EINVAL) mentions a NULL argument");
    CHECK(notif_strerror(INT32_MIN) != NULL, "notif_strerror(INT_MIN)");
    cover("notif_version");
    CHECK(notif_version() != NULL, "notif_version");
}

int main(void)
{
    char dir[256];
    tl_make_temp_dir(dir, sizeof dir, "null");
    release_functions();
    publisher_functions(dir);
    subscriber_functions(dir);
    functions_without_pointers();
    tl_remove_dir(dir);

    char names[MAX_FUNCTIONS][64];
    int n = declared(names, MAX_FUNCTIONS);
    CHECK(n >= 30, "only %d functions found in %s: is the parser still right?", n, HEADER_PATH);
    int missing = 0;
    for (int i = 0; i < n; i++) {
        int found = 0;
        for (int j = 0; j < n_covered; j++)
            found |= strcmp(names[i], covered[j]) == 0;
        if (!found) {
            fprintf(stderr, "FAIL: %s (declared in notif.h) has no NULL case here\n", names[i]);
            missing++;
        }
    }
    for (int j = 0; j < n_covered; j++) {
        int found = 0;
        for (int i = 0; i < n; i++)
            found |= strcmp(names[i], covered[j]) == 0;
        CHECK(found, "%s is exercised but not declared in notif.h", covered[j]);
    }
    CHECK(missing == 0, "%d of %d declared functions have no NULL case", missing, n);
    printf("test_null_args: %d of %d declared functions covered\n", n - missing, n);
    return tl_finish("test_null_args");
}
