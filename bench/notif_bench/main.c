/*
 * notif side by side with ZeroMQ PUB/SUB (ipc://) and a raw Unix-socket
 * baseline. Built and run by `make bench` (bench/bench.mk); BENCH_QUICK=1 runs
 * every measurement with tiny counts, only to check that everything works.
 *
 *   notif_bench [--quick] [--json FILE] [--fixtures DIR]
 *
 * Subscribers are separate processes: this program re-executed (through
 * /proc/self/exe) as `notif_bench --sub KIND ADDRESS SHM SLOT EXPECT MODE ARG`.
 * Each subscriber reports through a shared memory file: ready, messages
 * received, the CLOCK_MONOTONIC time its last message arrived and the time it
 * had received all EXPECT messages. CLOCK_MONOTONIC is one clock for every
 * process on the machine, so the times compare across processes.
 *
 * Nothing here is asserted against the targets: the machine is shared and
 * noisy. The program fails (exit 1) only when a measurement could not run or
 * lost messages it must not lose.
 *
 * notif_bench.h lists the parts.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "notif_bench.h"

/* ------------------------------------------------------------------ the run's settings */

char self_exe[PATH_MAX];
char tmpdir[64];
int quick;
int failures;
/*
 * BENCH_SUB_UID=N (section 3 only): the subscriber processes of the idle
 * latency runs drop to uid N (and gid BENCH_SUB_GID, default N) before they
 * exec, so that notif serves an untrusted subscriber (neither root nor the
 * publisher's user): no write-through, its server thread sends. -1: unset,
 * subscribers run as this process's user. g_drop_uid is what spawn_subs
 * applies; only section 3 sets it.
 */
long g_sub_uid = -1, g_sub_gid = -1;
long g_drop_uid = -1, g_drop_gid = -1;
char g_sub_label[64];

/* ------------------------------------------------------------------ payloads */

payload_t load_payload(const char *dir, const char *file, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    payload_t p = {name, NULL, 0};
    p.bytes = load_message(path, &p.len);
    return p;
}

/* ------------------------------------------------------------------ main */

static void cleanup(void)
{
    if (tmpdir[0]) {
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

int main(int argc, char **argv)
{
    harness_init("notif_bench", 2);
    if (argc > 1 && strcmp(argv[1], "--sub") == 0)
        return subscriber_main(argc, argv);
    const char *json_path = NULL, *fixtures = "tests/fixtures";
    uint64_t emit_loop = 0;
    const char *emit_file = NULL;
    if (getenv("BENCH_WINDOW_KIB"))
        g_window_bytes = strtoull(getenv("BENCH_WINDOW_KIB"), NULL, 10) * 1024;
    quick = getenv("BENCH_QUICK") && strcmp(getenv("BENCH_QUICK"), "0") != 0;
    if (getenv("BENCH_NO_PERF") && strcmp(getenv("BENCH_NO_PERF"), "0") != 0)
        snprintf(perf_missing, sizeof perf_missing, "BENCH_NO_PERF is set");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json_path = argv[++i];
        else if (strcmp(argv[i], "--fixtures") == 0 && i + 1 < argc)
            fixtures = argv[++i];
        else if (strcmp(argv[i], "--emit-loop") == 0 && i + 2 < argc) {
            emit_loop = strtoull(argv[++i], NULL, 10);
            emit_file = argv[++i];
        }
        else
            die("usage: notif_bench [--quick] [--json FILE] [--fixtures DIR] | --emit-loop N FILE");
    }
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0)
        die("readlink /proc/self/exe: %s", strerror(errno));
    self_exe[n] = 0;
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/notif-bench-XXXXXX");
    if (!mkdtemp(tmpdir))
        die("mkdtemp: %s", strerror(errno));
    atexit(cleanup);
    snprintf(shm_path, sizeof shm_path, "%s/slots", tmpdir);
    slots = map_slots(shm_path, 1);
    if (getenv("BENCH_SUB_UID") && *getenv("BENCH_SUB_UID")) {
        g_sub_uid = strtol(getenv("BENCH_SUB_UID"), NULL, 10);
        g_sub_gid = getenv("BENCH_SUB_GID") && *getenv("BENCH_SUB_GID") ? strtol(getenv("BENCH_SUB_GID"), NULL, 10)
                                                                          : g_sub_uid;
        if (g_sub_uid < 0 || g_sub_gid < 0 || geteuid() != 0)
            die("BENCH_SUB_UID needs root and a uid >= 0");
        int trusted = (uid_t)g_sub_uid == 0 || (uid_t)g_sub_uid == geteuid();
        snprintf(g_sub_label, sizeof g_sub_label, " %s", trusted ? "trusted" : "untrusted");
        /* the other user reaches the sockets in tmpdir and the shared memory file */
        if (chmod(tmpdir, 0711) != 0 || chmod(shm_path, 0666) != 0)
            die("chmod %s: %s", tmpdir, strerror(errno));
    }
    if (emit_loop)
        return emit_loop_main(emit_loop, emit_file);

    payload_t nova = load_payload(fixtures, "nova-instance-update.json", "1.7KB");
    payload_t small = load_payload(fixtures, "small.json", "268B");
    describe_machine();
    fprintf(stderr, "notif_bench%s: %s\npayloads: nova %zu B, small %zu B\n", quick ? " (quick)" : "",
            machine, nova.len, small.len);

    double one_sub[2] = {0, 0};
    uint64_t t0 = now_ns();
#define SECTION(text) fprintf(stderr, "[%5.1f s] %s\n", (double)(now_ns() - t0) / 1e9, text)
    /* BENCH_ONLY=2,3: only those sections (section 5 needs section 1's cost) */
    const char *only = getenv("BENCH_ONLY");
#define WANTED(c) (!only || !*only || strchr(only, c) != NULL)
    if (WANTED('1') || WANTED('5')) {
        SECTION("1. emit cost");
        run_cost(&nova, &one_sub[0]);
        run_cost(&small, &one_sub[1]);
    }
    if (WANTED('2')) {
        SECTION("2. throughput");
        run_throughput(&nova);
        run_throughput(&small);
    }
    if (WANTED('3')) {
        SECTION("3. idle latency");
        run_latency(&nova);
        run_latency(&small);
    }
    if (WANTED('4')) {
        SECTION("4. a subscriber that never reads");
        run_stalled(&nova);
    }
    if (WANTED('5')) {
        SECTION("5. 1,000 idle subscribers");
        run_thousand(&nova, one_sub[0]);
    }
    if (WANTED('6')) {
        SECTION("6. instructions per emit (callgrind)");
        run_instructions(fixtures);
    }
    SECTION("done");

    printf("\nnotif benchmark%s on %s\n", quick ? " (BENCH_QUICK: counts too small to mean anything)" : "",
           machine);
    printf("ratio = notif / comparison. 1: per call, batches of %d calls; 3: one-way, stamped by the "
           "subscriber (CLOCK_MONOTONIC)\n\n",
           BATCH);
    print_table(stdout, 0);
    if (json_path) {
        write_json(json_path);
        printf("\nJSON: %s\n", json_path);
        /* the markdown version, for README.md */
        char md[PATH_MAX];
        snprintf(md, sizeof md, "%.*s.md", (int)(strlen(json_path) > 5 ? strlen(json_path) - 5 : 0),
                 json_path);
        FILE *f = fopen(md, "w");
        if (f) {
            print_table(f, 1);
            fclose(f);
        }
    }
    if (failures)
        printf("\n%d measurement(s) FAILED to run properly (see above)\n", failures);
    return failures ? 1 : 0;
}
