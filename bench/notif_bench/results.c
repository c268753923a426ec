/*
 * The results: one row per figure (section, measurement, notif's value, what
 * it is compared with, the target and whether it was met), printed as the
 * table `make bench` shows and bench/results/latest.md holds, and as JSON.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "notif_bench.h"

static const char *st_name[] = {"", "MET", "MISSED", "FAILED"};

#define MAX_ROWS 96
static row_t rows[MAX_ROWS];
static int nrows;

row_t *add_row(const char *section, const char *unit, double notif, const char *cmp_name,
               double cmp, const char *what_fmt, ...)
{
    if (nrows == MAX_ROWS)
        die("too many rows");
    row_t *r = &rows[nrows++];
    memset(r, 0, sizeof *r);
    snprintf(r->section, sizeof r->section, "%s", section);
    snprintf(r->unit, sizeof r->unit, "%s", unit);
    snprintf(r->cmp_name, sizeof r->cmp_name, "%s", cmp_name ? cmp_name : "");
    r->notif = notif;
    r->cmp = cmp;
    va_list ap;
    va_start(ap, what_fmt);
    vsnprintf(r->what, sizeof r->what, what_fmt, ap);
    va_end(ap);
    return r;
}

double ratio(const row_t *r) { return r->cmp > 0 ? r->notif / r->cmp : 0; }

/* Targets on the ratio ("<=" or ">=") or on the value itself. */
void target_ratio(row_t *r, const char *op, double limit)
{
    snprintf(r->target, sizeof r->target, "%s %.2gx %s", op, limit, r->cmp_name);
    if (r->status == ST_FAILED)
        return;
    double x = ratio(r);
    int ok = op[0] == '<' ? x <= limit : x >= limit;
    r->status = ok ? ST_MET : ST_MISSED;
}

void target_value(row_t *r, const char *op, double limit, const char *text)
{
    snprintf(r->target, sizeof r->target, "%s", text);
    if (r->status == ST_FAILED)
        return;
    int ok = op[0] == '<' ? r->notif <= limit : r->notif >= limit;
    r->status = ok ? ST_MET : ST_MISSED;
}

void fail_row(row_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note, sizeof r->note, fmt, ap);
    va_end(ap);
    r->status = ST_FAILED;
    failures++;
    fprintf(stderr, "FAILED: %s: %s\n", r->what, r->note);
}

static void fmt_value(char *out, size_t cap, const char *unit, double v)
{
    if (strcmp(unit, "/msg") == 0) { /* 0 system calls is a figure, not a missing one */
        snprintf(out, cap, v < 10 ? "%.3f" : "%.1f", v);
    } else if (v <= 0 && strcmp(unit, "x") != 0) {
        snprintf(out, cap, "-");
    } else if (strcmp(unit, "instr") == 0) {
        snprintf(out, cap, "%.0f", v);
    } else if (strcmp(unit, "ns") == 0) {
        if (v < 100)
            snprintf(out, cap, "%.1f ns", v);
        else if (v < 10000)
            snprintf(out, cap, "%.0f ns", v);
        else
            snprintf(out, cap, "%.1f us", v / 1000);
    } else if (strcmp(unit, "msg/s") == 0) {
        snprintf(out, cap, "%.0fk/s", v / 1000);
    } else if (strcmp(unit, "MiB") == 0) {
        snprintf(out, cap, "%.1f MiB", v);
    } else if (strcmp(unit, "KiB") == 0) {
        snprintf(out, cap, "%.1f KiB", v);
    } else if (strcmp(unit, "x") == 0) {
        snprintf(out, cap, "%.2fx", v);
    } else {
        snprintf(out, cap, "%g %s", v, unit);
    }
}

void print_table(FILE *f, int markdown)
{
    char a[32], b[32], x[32];
    if (markdown) {
        fprintf(f, "| # | measurement | notif | compared with | ratio | target | |\n");
        fprintf(f, "| --- | --- | --- | --- | --- | --- | --- |\n");
    } else {
        fprintf(f, "%-3s %-56s %11s  %-22s %7s  %-22s %s\n", "#", "measurement", "notif",
                "compared with", "ratio", "target", "");
    }
    for (int i = 0; i < nrows; i++) {
        row_t *r = &rows[i];
        fmt_value(a, sizeof a, r->unit, r->notif);
        char cmp[48] = "";
        if (r->cmp_name[0]) {
            fmt_value(b, sizeof b, r->unit, r->cmp);
            snprintf(cmp, sizeof cmp, "%s %s", r->cmp_name, b);
        }
        if (r->cmp > 0)
            snprintf(x, sizeof x, "%.2fx", ratio(r));
        else
            snprintf(x, sizeof x, "%s", "");
        if (markdown)
            fprintf(f, "| %s | %s | %s | %s | %s | %s | %s%s%s |\n", r->section, r->what, a, cmp, x,
                    r->target, st_name[r->status], r->note[0] ? " " : "", r->note);
        else
            fprintf(f, "%-3s %-56s %11s  %-22s %7s  %-22s %s%s%s\n", r->section, r->what, a, cmp, x,
                    r->target, st_name[r->status], r->note[0] ? "  " : "", r->note);
    }
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

char machine[512];

void describe_machine(void)
{
    char model[128] = "unknown CPU", line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    snprintf(model, sizeof model, "%s", c + 2);
                    model[strcspn(model, "\n")] = 0;
                }
                break;
            }
        fclose(f);
    }
    struct utsname u;
    uname(&u);
    int zmaj, zmin, zpat;
    zmq_version(&zmaj, &zmin, &zpat);
    long mem_mib = sysconf(_SC_PHYS_PAGES) / 1024 * sysconf(_SC_PAGESIZE) / 1024;
    snprintf(machine, sizeof machine, "%s, %ld CPUs, %ld MiB RAM, Linux %s; notif %s, libzmq %d.%d.%d",
             model, sysconf(_SC_NPROCESSORS_ONLN), mem_mib, u.release, notif_version(), zmaj, zmin,
             zpat);
}

void write_json(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s: %s\n", path, strerror(errno));
        failures++;
        return;
    }
    time_t t = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    fprintf(f, "{\n  \"date\": \"%s\",\n  \"quick\": %s,\n  \"machine\": ", date, quick ? "true" : "false");
    json_str(f, machine);
    fprintf(f, ",\n  \"rows\": [\n");
    for (int i = 0; i < nrows; i++) {
        row_t *r = &rows[i];
        fprintf(f, "    {\"section\": ");
        json_str(f, r->section);
        fprintf(f, ", \"measurement\": ");
        json_str(f, r->what);
        fprintf(f, ", \"unit\": ");
        json_str(f, r->unit);
        fprintf(f, ", \"notif\": %.6g, \"compared_with\": ", r->notif);
        json_str(f, r->cmp_name);
        fprintf(f, ", \"comparison\": %.6g, \"ratio\": %.4g, \"target\": ", r->cmp, ratio(r));
        json_str(f, r->target);
        fprintf(f, ", \"status\": ");
        json_str(f, st_name[r->status]);
        fprintf(f, ", \"note\": ");
        json_str(f, r->note);
        fprintf(f, "}%s\n", i + 1 < nrows ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
}

