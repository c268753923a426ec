/* What the C measurement programs under bench/ share: harness.h. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *harness_program = "bench";
static int harness_die_status = 2;

void harness_init(const char *program, int die_status)
{
    harness_program = program;
    harness_die_status = die_status;
}

void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", harness_program);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(harness_die_status);
}

long status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    size_t n = strlen(field);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kib = atol(line + n + 1);
            break;
        }
    fclose(f);
    return kib;
}

long vmrss_kib(void) { return status_kib("VmRSS"); }

uint64_t stat_cpu_ns(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    unsigned long long ut = 0, stt = 0;
    if (!f)
        return 0;
    if (fgets(line, sizeof line, f)) {
        char *s = strrchr(line, ')');
        /* after "pid (comm)": state is field 3; utime and stime are 14 and 15 */
        if (!s || sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) != 2)
            ut = stt = 0;
    }
    fclose(f);
    return (ut + stt) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
}

int in_child(void (*fn)(void *ctx, void *out), void *ctx, void *out, size_t size)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        fn(ctx, out);
        ssize_t w = write(fds[1], out, size);
        _exit(w == (ssize_t)size ? 0 : 1);
    }
    close(fds[1]);
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fds[0], (char *)out + got, size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fds[0]);
    waitpid(pid, NULL, 0);
    return got == size ? 0 : -1;
}

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double percentile_sorted(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p / 100.0 * (double)n);
    if (i >= n)
        i = n - 1;
    return v[i];
}

double percentile(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_double);
    return percentile_sorted(v, n, p);
}

int connect_unix(const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    for (int tries = 0; tries < 5000; tries++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            return fd;
        int saved = errno;
        close(fd);
        errno = saved;
        sleep_us(1000);
    }
    return -1;
}

char *load_message(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open %s: %s", path, strerror(errno));
    char *bytes = malloc(1 << 20);
    size_t n = fread(bytes, 1, (1 << 20) - 1, f);
    fclose(f);
    while (n && (bytes[n - 1] == '\n' || bytes[n - 1] == ' '))
        n--;
    bytes[n] = 0;
    *len = n;
    return bytes;
}
