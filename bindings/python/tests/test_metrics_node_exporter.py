"""docs/metrics.md's recipe read by a real node_exporter, over a real oslo
service with {pid} workers that die and restart.

node_exporter is built from its tagged module through the Go module proxy
(`go install`, into build/node_exporter/) the first time, run with only the
textfile collector on a test directory and scraped over 127.0.0.1. The service
is the real oslo.messaging Notifier with docs/metrics.md's ini (only the socket
directory changed). Each phase runs the recipe's ExecStart line, then scrapes:
the notif series must be the same set in every phase (no series per pid), with
the counts of publishers and stale sockets of the phase."""

import grp
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("oslo_messaging")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from conftest import REPO_ROOT, ScriptService, notif_cli, oslo_service, wait_for  # noqa: E402
from test_stats_metrics import recipe_script  # noqa: E402

NODE_EXPORTER = "github.com/prometheus/node_exporter"
NODE_EXPORTER_VERSION = "v1.8.2"
WORKERS = 3


def node_exporter_binary():
    bindir = os.path.join(REPO_ROOT, "build", "node_exporter", NODE_EXPORTER_VERSION)
    exe = os.path.join(bindir, "node_exporter")
    if not os.access(exe, os.X_OK):
        go = shutil.which("go")
        if go is None:
            pytest.fail("go not found in PATH: it builds node_exporter (go install %s@%s), "
                        "as it builds the Go binding" % (NODE_EXPORTER, NODE_EXPORTER_VERSION))
        print("building node_exporter %s with go install (once, into %s)" % (NODE_EXPORTER_VERSION, bindir))
        subprocess.run([go, "install", "%s@%s" % (NODE_EXPORTER, NODE_EXPORTER_VERSION)],
                       env=dict(os.environ, GOBIN=bindir), check=True, timeout=1800)
    return exe


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def node_exporter(sockdir):
    collector = os.path.join(sockdir, "textfile_collector")
    os.mkdir(collector)
    exe = node_exporter_binary()
    for _ in range(5):  # another process may take the port in between
        port = free_port()
        proc = subprocess.Popen([exe, "--collector.disable-defaults", "--collector.textfile",
                                 "--collector.textfile.directory=" + collector,
                                 "--web.listen-address=127.0.0.1:%d" % port],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = "http://127.0.0.1:%d/metrics" % port

        def up():
            if proc.poll() is not None:
                return "exited"
            try:
                urllib.request.urlopen(url, timeout=5).read()
                return "up"
            except OSError:
                return None
        state = wait_for(up, timeout=60, what="node_exporter to listen")
        if state == "up":
            break
        proc.wait()
    else:
        pytest.fail("node_exporter did not start: %s" % proc.stderr.read().decode())
    yield collector, url
    proc.terminate()
    proc.wait(30)


def scrape(url):
    """{(sample name, frozenset of labels): value} of what node_exporter serves."""
    text = urllib.request.urlopen(url, timeout=30).read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in values, key
            values[key] = s.value
    return values


def ini_block():
    doc = open(os.path.join(REPO_ROOT, "docs", "metrics.md")).read()
    return doc.split("<!-- metrics: ini", 1)[1].split("```ini\n", 1)[1].split("```", 1)[0]


# The service: the parent and its forked workers publish through the driver
# with the given config file. Commands on stdin, one JSON answer each:
# "spawn N" forks N workers (each notifies once), "exit K" makes K workers
# leave through os._exit (their sockets stay, as oslo.service workers'),
# "restart" replaces every worker by a new one.
SERVICE = oslo_service(r"""
    sockdir = sys.argv[2]
    sock = lambda pid: os.path.join(sockdir, "notifications-%d.sock" % pid)
    notifier.info({}, "compute.start", {"pid": os.getpid()})
    workers = []  # (pid, pipe)

    def spawn(n):
        for _ in range(n):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(w)
                notifier.info({}, "compute.worker", {"pid": os.getpid()})
                os.read(r, 1)
                os._exit(0)
            os.close(r)
            workers.append((pid, w))
            deadline = time.monotonic() + 60
            while not os.path.exists(sock(pid)) and time.monotonic() < deadline:
                time.sleep(0.01)

    def leave(k):
        for pid, w in workers[:k]:
            os.write(w, b"x")   # not EOF: later siblings hold this pipe too
            os.close(w)
            os.waitpid(pid, 0)
        del workers[:k]

    for line in sys.stdin:
        words = line.split()
        if words[0] == "spawn":
            spawn(int(words[1]))
        elif words[0] == "exit":
            leave(int(words[1]))
        elif words[0] == "restart":
            n = len(workers)
            leave(n)
            spawn(n)
        notifier.info({}, "compute.tick", {})
        print(json.dumps({"parent": os.getpid(), "workers": [p for p, _ in workers]}), flush=True)
    leave(len(workers))
""", project="nova")


class Service(ScriptService):
    def __init__(self, conf_file, sockdir):
        super().__init__(SERVICE, conf_file, sockdir)

    def ask(self, command):
        self.write_line(command)
        line = self.read_line(180)
        assert line, "the service did not answer %r" % command
        return json.loads(line)


@pytest.fixture
def readers_group():
    """docs/metrics.md's ini names the group nova-readers: it must exist."""
    try:
        grp.getgrnam("nova-readers")
        yield
        return
    except KeyError:
        pass
    subprocess.run(["groupadd", "--system", "nova-readers"], check=True, timeout=60)
    try:
        yield
    finally:
        subprocess.run(["groupdel", "nova-readers"], timeout=60)


# The first run builds node_exporter (minutes on a loaded machine).
@pytest.mark.timeout(1500)
def test_node_exporter_reads_the_recipe_over_restarting_pid_workers(node_exporter, sockdir,
                                                                    readers_group):
    collector, url = node_exporter
    block = ini_block()
    assert "sock_path = /run/nova/notifications-{pid}.sock" in block
    conf_file = os.path.join(sockdir, "nova.conf")
    with open(conf_file, "w") as f:
        f.write("[DEFAULT]\ntransport_url = fake://\n"
                + block.replace("/run/nova/", sockdir + "/"))
    pattern = os.path.join(sockdir, "notifications-*.sock")
    script = recipe_script(collector, pattern)
    tool = notif_cli()
    env = dict(os.environ, PATH=os.path.dirname(tool) + os.pathsep + os.environ["PATH"])
    p = frozenset({"path": pattern}.items())

    # A reader on the glob, as an agent would run it: its pid and uid must not
    # reach the file.
    tail = subprocess.Popen([tool, "tail", pattern], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    service = Service(conf_file, sockdir)
    phases = []
    try:
        def phase(name, command, publishers, stale):
            info = service.ask(command)
            assert len(info["workers"]) == publishers - 1, info
            sockets = sorted(n for n in os.listdir(sockdir) if n.startswith("notifications-"))
            # The tail follows every live publisher (it watches the directory).
            def recipe_run():
                subprocess.run(["/bin/sh", "-c", script], env=env, check=True, timeout=120)
                values = scrape(url)
                return values if values.get(("notif_subscribers", p)) == publishers else None
            values = wait_for(recipe_run, timeout=120, what="the tail on every publisher (%s)" % name)
            r = subprocess.run([tool, "stats", "--format", "prometheus", pattern],
                               capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, (name, r.stderr)  # stale sockets are no failure
            assert values[("node_textfile_scrape_error", frozenset())] == 0, name
            notif = {k: v for k, v in values.items() if k[0].startswith("notif_")}
            assert notif[("notif_up", p)] == 1, name
            assert notif[("notif_publishers", p)] == publishers, name
            assert notif[("notif_stale_sockets", p)] == stale, name
            assert notif[("notif_unanswered_sockets", p)] == 0, name
            assert all(dict(labels).keys() <= {"path", "version"} for _, labels in notif), name
            phases.append({"phase": name, "pids": [info["parent"]] + info["workers"],
                           "sockets": sockets, "notif": notif})

        phase("start: parent and %d workers" % WORKERS, "spawn %d" % WORKERS, WORKERS + 1, 0)
        phase("a worker died (os._exit), not replaced", "exit 1", WORKERS, 1)
        phase("every worker restarted", "restart", WORKERS, 0)
        phase("workers back to %d" % WORKERS, "spawn 1", WORKERS + 1, 0)
        phase("every worker restarted again", "restart", WORKERS + 1, 0)
    finally:
        service.close()
        tail.terminate()
        tail.wait(30)

    # Every phase: the same series, whatever the pids.
    series = [sorted(phase["notif"]) for phase in phases]
    for phase, keys in zip(phases, series):
        assert keys == series[0], (phase["phase"], set(keys) ^ set(series[0]))
    pids = [set(phase["pids"]) for phase in phases]
    assert len(set().union(*pids)) >= 1 + 3 * WORKERS  # the workers did restart
    names = sorted({name for name, _ in series[0]})
    print("node_exporter %s: %d notif series, the same in all %d phases; %d distinct pids "
          "over the phases" % (NODE_EXPORTER_VERSION, len(series[0]), len(phases),
                               len(set().union(*pids))))
    for phase in phases:
        n = phase["notif"]
        print("  %-42s pids %-40s up %d publishers %d stale %d subscribers %d delivered %d" % (
            phase["phase"], phase["pids"], n[("notif_up", p)], n[("notif_publishers", p)],
            n[("notif_stale_sockets", p)], n[("notif_subscribers", p)],
            n.get(("notif_delivered_total", p), -1)))
    print("  series: %s" % ", ".join(names))
    expected = {"notif_up", "notif_publishers", "notif_stale_sockets", "notif_unanswered_sockets",
                "notif_subscribers", "notif_delivered_total", "notif_emitted_total",
                "notif_dropped_no_subscriber_total", "notif_publisher_info"}
    assert expected <= set(names), expected - set(names)
    assert not any(name.startswith("notif_subscriber_") for name in names)
    assert "notif_next_seq" not in names and "notif_replay_oldest" not in names
    assert len(series[0]) == len(names)  # one series each: one path, one version
