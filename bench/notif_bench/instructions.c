/*
 * Section 6, instructions per emit: this program run under callgrind in its
 * --emit-loop mode, which is here too.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "notif_bench.h"

/* ------------------------------------------------------------------ 6. instructions per emit */

/*
 * Instructions callgrind counts inside notif_emit_len over this program's
 * `--emit-loop n FILE` (one reading subscriber, paced: no -EAGAIN), with
 * NOTIF_SIMD=simd (NULL: unset, the best kernel). Returns the total, -1 with
 * `why` when it could not run. `eagain` gets the loop's retries (each one more
 * call counted).
 */
static double callgrind_ir(const char *file, uint64_t n, const char *simd, uint64_t *eagain, char *why,
                           size_t cap)
{
    char out[PATH_MAX], log[PATH_MAX], opt[PATH_MAX + 32], count[32];
    snprintf(out, sizeof out, "%s/callgrind.out", tmpdir);
    snprintf(log, sizeof log, "%s/callgrind.log", tmpdir);
    snprintf(opt, sizeof opt, "--callgrind-out-file=%s", out);
    snprintf(count, sizeof count, "%" PRIu64, n);
    unlink(out);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        if (simd)
            setenv("NOTIF_SIMD", simd, 1);
        else
            unsetenv("NOTIF_SIMD");
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("valgrind", "valgrind", "-q", "--tool=callgrind", opt, "--toggle-collect=notif_emit_len",
               self_exe, "--emit-loop", count, file, (char *)NULL);
        _exit(127);
    }
    /* bounded: a loop that hangs fails the row instead of the run */
    uint64_t deadline = now_ns() + (quick ? 60 : 600) * 1000000000ull;
    int status = 0;
    pid_t w;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_ns() < deadline)
        sleep_us(20000);
    if (w == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        snprintf(why, cap, "valgrind timed out");
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
            snprintf(why, cap, "valgrind is not installed (apt-get install valgrind)");
        else
            snprintf(why, cap, "valgrind --emit-loop failed (status %d), see %s", status, log);
        return -1;
    }
    char line[512];
    FILE *f = fopen(log, "r");
    *eagain = 0;
    while (f && fgets(line, sizeof line, f)) {
        char *e = strstr(line, "EAGAIN ");
        if (strncmp(line, "emit loop:", 10) == 0 && e)
            *eagain = strtoull(e + 7, NULL, 10);
    }
    if (f)
        fclose(f);
    double total = -1;
    f = fopen(out, "r");
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "totals:", 7) == 0 || (total < 0 && strncmp(line, "summary:", 8) == 0))
            total = strtod(line + (line[0] == 't' ? 7 : 8), NULL);
    if (f)
        fclose(f);
    if (total < 0)
        snprintf(why, cap, "no totals: line in %s", out);
    return total;
}

/*
 * Per emit: the loop run with n and 2n emits, (Ir(2n) - Ir(n)) / n, so that
 * what only the first emits pay (the kernel choice, thread-local set-up) cancels.
 */
static double ir_per_emit(const char *file, uint64_t n, const char *simd, uint64_t *eagain, char *why,
                          size_t cap)
{
    uint64_t e1 = 0, e2 = 0;
    double a = callgrind_ir(file, n, simd, &e1, why, cap);
    double b = a < 0 ? -1 : callgrind_ir(file, 2 * n, simd, &e2, why, cap);
    *eagain = e1 + e2;
    if (a < 0 || b < 0)
        return -1;
    return (b - a) / (double)n;
}

void run_instructions(const char *fixtures)
{
    struct {
        const char *file, *name, *text;
        double limit;
    } cases[] = {
        {"nova-instance-update.json", "1.7KB", "<= 8,500", 8500},
        {"small.json", "268B", "<= 1,700", 1700},
        {"nova-instance-update.pretty.json", "2.4KB pretty", "<= 20,000", 20000},
    };
    uint64_t n = quick ? 100 : 5000;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[PATH_MAX], why[2][160] = {"", ""};
        snprintf(path, sizeof path, "%s/%s", fixtures, cases[i].file);
        uint64_t eagain[2] = {0, 0};
        double best = ir_per_emit(path, n, NULL, &eagain[0], why[0], sizeof why[0]);
        double ref = best < 0 ? -1 : ir_per_emit(path, n, "scalar", &eagain[1], why[1], sizeof why[1]);
        row_t *r = add_row("6", "instr", best > 0 ? best : 0, "scalar ref.", ref > 0 ? ref : 0,
                           "instructions per emit %s, 1 sub", cases[i].name);
        if (best < 0 || ref < 0)
            fail_row(r, "%s", best < 0 ? why[0] : why[1]);
        else if (eagain[0] || eagain[1])
            snprintf(r->note, sizeof r->note, "-EAGAIN retries %" PRIu64 "/%" PRIu64 " counted in", eagain[0],
                     eagain[1]);
        else
            snprintf(r->note, sizeof r->note, "Ir(%" PRIu64 " emits) - Ir(%" PRIu64 "), / %" PRIu64, 2 * n,
                     n, n);
        target_value(r, "<=", cases[i].limit, cases[i].text);
        if (best < 0)
            break; /* valgrind is missing or broken: one FAILED row says it */
    }
}

/* ------------------------------------------------------------------ emit loop, for profilers */

/*
 * --emit-loop N FILE: N emits of FILE's message to one reading subscriber
 * process (paced, nothing dropped), for `valgrind --tool=callgrind
 * --toggle-collect=notif_emit_len` (bench/bench.mk: profile).
 */
int emit_loop_main(uint64_t n, const char *file)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    const char *base = file;
    if (slash) {
        *slash = 0;
        base = slash + 1;
    } else {
        snprintf(dir, sizeof dir, ".");
    }
    payload_t m = load_payload(dir, base, base);
    pub_t p;
    subs_t subs = {.n = 0};
    pub_open(&p, SYS_NOTIF);
    spawn_subs(&subs, "stream", p.addr, 0, 1, n, MODE_COUNT, 0);
    if (pub_attach(&p, 0, 1) != 0)
        die("the subscriber did not attach");
    for (uint64_t i = 0; i < n; i++) {
        if (pub_send(&p, m.bytes, m.len) < 0)
            die("notif_emit: %s", notif_last_error());
        if ((i & 63) == 63)
            pace(0, 1, i + 1, window_for(m.len));
    }
    uint64_t done = wait_done(0, 1, 600);
    notif_stats stats;
    reap_subs(&subs);
    pub_close(&p, &stats);
    printf("emit loop: %" PRIu64 " x %zu B, received %s, EAGAIN %" PRIu64 ", dropped_slow %" PRIu64 "\n", n,
           m.len, done ? "all" : "NOT all", p.eagain, stats.dropped_slow);
    return done ? 0 : 1;
}

