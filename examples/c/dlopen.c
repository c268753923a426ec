/*
 * dlopen: uses libnotif without linking to it, as a plugin host or a program
 * with optional notifications would: the library is loaded at run time with
 * dlopen() and every function is looked up with dlsym().
 *
 *     dlopen [LIBRARY (default "libnotif.so.0")] [SOCKET_PATH (default an abstract socket)]
 *
 * The default is the soname, which the runtime package installs: the
 * unversioned libnotif.so is the development link (in -dev packages only),
 * and a program that loads the soname keeps the ABI it was written for.
 *
 * It opens a publisher, connects to it with a plain socket, emits one
 * notification, reads it back, prints it, and closes everything.
 * notif.h is included for its types and version macros only.
 */
#include <dlfcn.h>
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

#include "notif.h"

typedef notif_handle *(*open_fn)(const char *path);
typedef int (*emit_fn)(notif_handle *handle, const char *json);
typedef void (*close_fn)(notif_handle *handle);
typedef const char *(*last_error_fn)(void);
typedef const char *(*version_fn)(void);

/* Looks a symbol up; converts the object pointer dlsym returns to a function
 * pointer with memcpy, which ISO C allows (a cast would not be pedantic-clean). */
static int resolve(void *library, const char *name, void *function_pointer, size_t size)
{
    void *symbol;
    const char *error;
    dlerror(); /* clear any old error */
    symbol = dlsym(library, name);
    error = dlerror();
    if (error != NULL || symbol == NULL) {
        fprintf(stderr, "dlopen: cannot find %s: %s\n", name, error ? error : "NULL symbol");
        return -1;
    }
    if (size != sizeof symbol) {
        fprintf(stderr, "dlopen: function pointers differ in size from void * here\n");
        return -1;
    }
    memcpy(function_pointer, &symbol, size);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec t;
    t.tv_sec = ms / 1000;
    t.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&t, NULL);
}

static int connect_to(const char *path)
{
    struct sockaddr_un addr;
    size_t len = strlen(path);
    socklen_t addr_len;
    int fd;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (len >= sizeof addr.sun_path)
        return -1;
    if (path[0] == '@') {
        memcpy(addr.sun_path + 1, path + 1, len - 1);
        addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    } else {
        memcpy(addr.sun_path, path, len + 1);
        addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, addr_len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads one line (up to '\n', excluded) into out; returns its length or -1. */
static long read_line(int fd, char *out, size_t size, int timeout_ms)
{
    size_t used = 0;
    while (used + 1 < size) {
        struct pollfd pfd;
        ssize_t n;
        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, timeout_ms) <= 0)
            return -1;
        n = read(fd, out + used, 1);
        if (n <= 0)
            return -1;
        if (out[used] == '\n') {
            out[used] = '\0';
            return (long)used;
        }
        used++;
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *library_path = argc > 1 ? argv[1] : "libnotif.so.0";
    char default_socket[64];
    const char *socket_path;
    void *library;
    open_fn notif_open_p;
    emit_fn notif_emit_p;
    close_fn notif_close_p;
    last_error_fn notif_last_error_p;
    version_fn notif_version_p;
    char header_version[32], line[512];
    notif_handle *handle;
    int fd, rc = -1, attempt, status = 1;
    const char *message = "{\"event_type\": \"plugin.loaded\", \"priority\": \"INFO\", "
                          "\"publisher_id\": \"dlopen.example\", \"payload\": {\"ok\": true}}";

    if (argc > 3) {
        fprintf(stderr, "usage: %s [LIBRARY] [SOCKET_PATH]\n", argv[0]);
        return 2;
    }
    snprintf(default_socket, sizeof default_socket, "@notif-dlopen-example-%ld", (long)getpid());
    socket_path = argc > 2 ? argv[2] : default_socket;

    library = dlopen(library_path, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        fprintf(stderr, "dlopen: cannot load %s: %s\n", library_path, dlerror());
        return 1;
    }
    if (resolve(library, "notif_open", &notif_open_p, sizeof notif_open_p) != 0 ||
        resolve(library, "notif_emit", &notif_emit_p, sizeof notif_emit_p) != 0 ||
        resolve(library, "notif_close", &notif_close_p, sizeof notif_close_p) != 0 ||
        resolve(library, "notif_last_error", &notif_last_error_p, sizeof notif_last_error_p) != 0 ||
        resolve(library, "notif_version", &notif_version_p, sizeof notif_version_p) != 0) {
        dlclose(library);
        return 1;
    }

    snprintf(header_version, sizeof header_version, "%d.%d.%d", NOTIF_VERSION_MAJOR,
             NOTIF_VERSION_MINOR, NOTIF_VERSION_PATCH);
    printf("dlopen: loaded %s: libnotif %s (header %s)\n", library_path, notif_version_p(),
           header_version);
    if (strcmp(notif_version_p(), header_version) != 0)
        fprintf(stderr, "dlopen: warning: the library's version differs from the header's\n");

    handle = notif_open_p(socket_path);
    if (handle == NULL) {
        fprintf(stderr, "dlopen: notif_open(%s): %s\n", socket_path, notif_last_error_p());
        dlclose(library);
        return 1;
    }
    fd = connect_to(socket_path);
    if (fd < 0) {
        fprintf(stderr, "dlopen: cannot connect to %s: %s\n", socket_path, strerror(errno));
    } else {
        /* The server thread accepts the connection asynchronously: until it
         * has, emit returns 0 (nobody connected) and drops the message. */
        for (attempt = 0; attempt < 500; attempt++) {
            rc = notif_emit_p(handle, message);
            if (rc != 0)
                break;
            sleep_ms(10);
        }
        if (rc < 0) {
            fprintf(stderr, "dlopen: notif_emit: %s\n", notif_last_error_p());
        } else if (rc == 0) {
            fprintf(stderr, "dlopen: the subscriber was never counted\n");
        } else if (read_line(fd, line, sizeof line, 5000) < 0) {
            fprintf(stderr, "dlopen: no line came back\n");
        } else {
            printf("dlopen: received %s\n", line);
            status = 0;
        }
        close(fd);
    }
    notif_close_p(handle);
    if (dlclose(library) != 0) {
        fprintf(stderr, "dlopen: dlclose: %s\n", dlerror());
        status = 1;
    }
    return status;
}
