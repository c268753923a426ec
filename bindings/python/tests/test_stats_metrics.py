"""`notif stats --format openmetrics` and `--format prometheus`, read back by
prometheus_client's parsers: its strict OpenMetrics parser, and its parser of
the Prometheus text format (the format node_exporter's textfile collector
reads). Real sockets: a real publisher for the counters, a hand-driven one for
a stats answer with a subscriber_list."""

import contextlib
import json
import os
import socket
import subprocess
import threading

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_prometheus

import libnotif
from conftest import REPO_ROOT, wait_for, wait_subscribers


@pytest.fixture(scope="module")
def notif_tool():
    # Cheap when `make` built it already; the tests must run the current code.
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "notif-cli"],
                   cwd=REPO_ROOT, check=True, timeout=900)
    return os.path.join(REPO_ROOT, "target", "release", "notif")


def stats(tool, fmt, *paths, options=()):
    return subprocess.run([tool, "stats", "--format", fmt, *options, *paths],
                          capture_output=True, text=True, timeout=60)


def samples(families):
    """{(sample name, frozenset of labels): value}, {family name: type} and
    {family name: help text}."""
    values, types, helps = {}, {}, {}
    for family in families:
        types[family.name] = family.type
        helps[family.name] = family.documentation
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in values, "duplicate sample %r" % (key,)
            values[key] = s.value
    return values, types, helps


def test_counters_through_both_parsers(notif_tool, sockdir):
    path = os.path.join(sockdir, "pub.sock")
    missing = os.path.join(sockdir, 'gone "x"\\.sock')  # escaping, through a real parser
    with libnotif.Publisher(path) as publisher:
        reader = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        reader.connect(path)
        wait_subscribers(publisher, 1)
        for i in range(3):
            assert publisher.emit({"event_type": "metrics.test", "n": i}) >= 1
        wait_for(lambda: publisher.stats()["delivered"] >= 3, what="3 deliveries")

        r = stats(notif_tool, "openmetrics", path, missing)
        assert r.returncode == 2, r.stderr  # the missing path's exit code; metrics still written
        assert r.stdout.endswith("# EOF\n")
        values, types, helps = samples(parse_openmetrics(r.stdout))
        p = frozenset({"path": path}.items())
        assert values[("notif_up", p)] == 1
        assert values[("notif_up", frozenset({"path": missing}.items()))] == 0
        assert types["notif_delivered"] == "counter"
        assert values[("notif_delivered_total", p)] == 3
        assert values[("notif_emitted_total", p)] == 3
        # The 3 notifications took 1 to 3 system calls (the server thread's,
        # or the emitting thread's writing through) and at most 3 wake-ups.
        assert 1 <= values[("notif_writes_total", p)] <= 3
        assert values[("notif_wakeups_total", p)] <= 3
        assert values[("notif_written_through_total", p)] <= values[("notif_delivered_total", p)]
        assert types["notif_subscribers"] == "gauge"
        assert values[("notif_subscribers", p)] >= 1
        assert types["notif_publisher"] == "info"
        assert values[("notif_publisher_info", frozenset({"path": path, "version": libnotif.version()}.items()))] == 1
        # Every field of the library is there: the gauges as gauges, the
        # counters as counters.
        gauges = {"subscribers", "replay_bytes", "replay_messages", "replay_oldest", "next_seq"}
        for field in publisher.stats():
            kind = "gauge" if field in gauges else "counter"
            assert types["notif_" + field] == kind, field
            # Its own help text, not the one for keys the tool does not know.
            assert not helps["notif_" + field].startswith("The publisher's "), field

        r = stats(notif_tool, "prometheus", path, missing)
        assert r.returncode == 2, r.stderr
        assert "# EOF" not in r.stdout
        assert "# TYPE notif_delivered_total counter\n" in r.stdout
        values, types, helps = samples(parse_prometheus(r.stdout))
        assert values[("notif_delivered_total", p)] == 3
        assert values[("notif_up", frozenset({"path": missing}.items()))] == 0
        assert types["notif_delivered"] == "counter"
        assert types["notif_publisher_info"] == "gauge"
        reader.close()


@contextlib.contextmanager
def fake_publisher(path, answer, connections=1, unlink=False):
    """Answers `connections` stats requests with `answer` (the stats object),
    closing each connection after its answer, while the block runs; then
    waits for it to end and closes it (and removes the socket with unlink)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(connections)

    def serve():
        for _ in range(connections):
            answer_one()

    def answer_one():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            request = b""
            while not request.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            assert json.loads(request) == {"stats": True}
            try:
                conn.sendall(json.dumps({"notif": {"stats": answer}},
                                        separators=(",", ":")).encode() + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # a probe that asked and left

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(30)
        listener.close()
        if unlink:
            os.unlink(path)


def test_subscriber_list_becomes_per_subscriber_series(notif_tool, sockdir):
    path = os.path.join(sockdir, "fake.sock")
    peer = {"gid": 0, "filter": None, "markers": True, "heartbeat_s": None}
    answer = {
        "subscribers": 3, "delivered": 20, "version": "9.9.9",
        "subscriber_list": [
            dict(peer, pid=10, uid=0, connected_at=1700000000.5, queued_bytes=100, delivered=4, dropped_slow=1),
            dict(peer, pid=10, uid=0, connected_at=1700000100, queued_bytes=20, delivered=6, dropped_slow=2),
            dict(peer, pid=None, uid=None, gid=None, connected_at=1700000200, queued_bytes=0, delivered=9,
                 dropped_slow=0, filter={"event_types": ["compute.*"]}),
        ],
    }
    for fmt, parse in (("openmetrics", parse_openmetrics), ("prometheus", parse_prometheus)):
        # Without --subscribers: no per-subscriber series, no pid, no uid.
        with fake_publisher(path, answer, unlink=True):
            r = stats(notif_tool, fmt, path)
        assert r.returncode == 0, r.stderr
        values, types, helps = samples(parse(r.stdout))
        assert not any(name.startswith("notif_subscriber_") for name in types), r.stdout
        assert not any(dict(labels).keys() - {"path", "version"} for _, labels in values), r.stdout
        with fake_publisher(path, answer, unlink=True):
            r = stats(notif_tool, fmt, path, options=["--subscribers"])
        assert r.returncode == 0, r.stderr
        values, types, helps = samples(parse(r.stdout))
        ten = frozenset({"path": path, "pid": "10", "uid": "0"}.items())
        hidden = frozenset({"path": path, "pid": "", "uid": ""}.items())
        assert values[("notif_subscriber_connections", ten)] == 2
        assert values[("notif_subscriber_connections", hidden)] == 1
        assert values[("notif_subscriber_queued_bytes", ten)] == 120
        assert values[("notif_subscriber_delivered_total", ten)] == 10
        assert values[("notif_subscriber_delivered_total", hidden)] == 9
        assert values[("notif_subscriber_dropped_slow_total", ten)] == 3
        assert values[("notif_subscriber_connect_time_seconds", ten)] == 1700000000.5
        assert types["notif_subscriber_queued_bytes"] == "gauge"
        assert not any(name.startswith("notif_subscriber_list") for name in types)


def recipe_script(collector, pattern):
    """The ExecStart line of docs/metrics.md's notif-metrics.service, as systemd
    runs it ($$ is a literal $, the single quotes are systemd's), with its
    collector directory and its socket glob pointed at the test's."""
    doc = open(os.path.join(REPO_ROOT, "docs", "metrics.md")).read()
    block = doc.split("<!-- metrics: systemd", 1)[1].split("```ini\n", 1)[1].split("```", 1)[0]
    (line,) = [l for l in block.splitlines() if l.startswith("ExecStart=")]
    argv = line[len("ExecStart="):].replace("$$", "$")
    assert argv.startswith("/bin/sh -c '") and argv.endswith("'")
    script = argv[len("/bin/sh -c '"):-1]
    assert "'" not in script
    assert script.count("/var/lib/node_exporter/textfile_collector") == 1
    assert script.count('"/run/nova/notifications-*.sock"') == 1, "the glob, quoted"
    script = script.replace("/var/lib/node_exporter/textfile_collector", collector)
    return script.replace("/run/nova/notifications-*.sock", pattern)


def test_docs_systemd_service_writes_the_textfile_atomically(notif_tool, sockdir):
    """The recipe of docs/metrics.md over a {pid}-style glob: the glob is
    expanded by notif (quoted from the shell), a dead socket under it is no
    failure, and the file is rewritten atomically."""
    collector = os.path.join(sockdir, "textfile_collector")
    os.mkdir(collector)
    pattern = os.path.join(sockdir, "nova-*.sock")
    script = recipe_script(collector, pattern)
    env = dict(os.environ, PATH=os.path.dirname(notif_tool) + os.pathsep + os.environ["PATH"])
    p = frozenset({"path": pattern}.items())
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(os.path.join(sockdir, "nova-999999971.sock"))  # a dead worker's leftover
    dead.close()

    with libnotif.Publisher(os.path.join(sockdir, "nova-1.sock")), \
            libnotif.Publisher(os.path.join(sockdir, "nova-2.sock")):
        subprocess.run(["/bin/sh", "-c", script], env=env, check=True, timeout=60)
        assert os.listdir(collector) == ["notif.prom"]  # the temporary file is gone
        values, _, _ = samples(parse_prometheus(open(os.path.join(collector, "notif.prom")).read()))
        assert values[("notif_up", p)] == 1
        assert values[("notif_publishers", p)] == 2
        assert values[("notif_stale_sockets", p)] == 1
        assert values[("notif_unanswered_sockets", p)] == 0
        assert all(dict(labels).keys() <= {"path", "version"} for _, labels in values)
        # The command alone: exit 0, a dead worker's socket is no failure.
        r = stats(notif_tool, "prometheus", pattern)
        assert r.returncode == 0 and r.stderr == "", r.stderr

    # The publishers are gone: the file is still rewritten, and says so.
    subprocess.run(["/bin/sh", "-c", script], env=env, timeout=60)
    values, _, _ = samples(parse_prometheus(open(os.path.join(collector, "notif.prom")).read()))
    assert values[("notif_up", p)] == 0
    assert values[("notif_publishers", p)] == 0
    assert values[("notif_stale_sockets", p)] == 1  # closed publishers removed their files


def test_a_hostile_publisher_under_the_glob_adds_no_series(notif_tool, sockdir):
    """A publisher that answers the stats request with fields named like the
    tool's own series, and a version that would close its label."""
    pattern = os.path.join(sockdir, "nova-*.sock")
    hostile = {"up": 0, "publishers": 7, "stale_sockets": 7, "delivered": 5,
               "version": '1"} 1\nnotif_up{path="%s"} 0\n' % pattern, "made_up": 1,
               "subscriber_list": [{"pid": 66, "uid": 65534, "delivered": 1}]}
    with libnotif.Publisher(os.path.join(sockdir, "nova-1.sock")):
        # Two connections: the glob's probe (is it live?), then the query.
        with fake_publisher(os.path.join(sockdir, "nova-2.sock"), hostile, 2):
            r = stats(notif_tool, "prometheus", pattern)
    assert r.returncode == 0, r.stderr
    values, types, _ = samples(parse_prometheus(r.stdout))  # no duplicate sample either
    p = frozenset({"path": pattern}.items())
    assert [k for k in values if k[0] == "notif_up"] == [("notif_up", p)]
    assert values[("notif_up", p)] == 1
    assert values[("notif_publishers", p)] == 2
    assert values[("notif_stale_sockets", p)] == 0
    assert values[("notif_delivered_total", p)] == 5
    assert not any("made_up" in name for name in types)
    assert all(dict(labels).keys() <= {"path", "version"} for _, labels in values)
    versions = sorted(dict(labels)["version"] for name, labels in values if name == "notif_publisher_info")
    assert versions == sorted(["invalid", libnotif.version()])


def test_the_shipped_units_are_the_recipe():
    """systemd/notif-metrics.service and .timer (verified by make units-check)
    hold the same ExecStart and timer lines as docs/metrics.md's recipe, which
    the tests above run."""
    doc = open(os.path.join(REPO_ROOT, "docs", "metrics.md")).read()
    block = doc.split("<!-- metrics: systemd", 1)[1].split("```ini\n", 1)[1].split("```", 1)[0]
    recipe = [l for l in block.splitlines() if l and not l.startswith("#") and not l.startswith("[")]
    shipped = []
    for name in ("notif-metrics.service", "notif-metrics.timer"):
        unit = open(os.path.join(REPO_ROOT, "systemd", name)).read()
        section = None
        for line in unit.splitlines():
            if line.startswith("["):
                section = line
            elif line and not line.startswith("#") and section != "[Unit]":
                shipped.append(line)
    assert shipped == recipe
