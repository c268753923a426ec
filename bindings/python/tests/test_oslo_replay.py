"""The replay ring through the oslo.messaging 'unix' driver (sock_replay_bytes):
what the real Notifier emits while nobody is connected is kept, so that an
agent running `notif tail --cursor-file` across its own restarts, and a glob
tail started before forked {pid} workers, miss nothing.

The service runs in its own process (the real oslo.messaging Notifier, the
fake:// transport); the agent is the real `notif` tool."""

import errno
import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("oslo_messaging")

import libnotif  # noqa: E402
from conftest import ScriptService, notif_cli, oslo_service, wait_for  # noqa: E402

# A service driven over stdin: "send TAG N" emits N notifications
# ring.test {"tag": TAG, "i": 0..N-1} and answers "sent"; "stats" answers the
# driver's counters for its socket as one JSON line.
SERVICE = oslo_service(r"""
    from libnotif import oslo_driver

    path = sys.argv[2]
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[0] == "send":
            for i in range(int(words[2])):
                notifier.info({}, "ring.test", {"tag": words[1], "i": i})
            print("sent", flush=True)
        elif words[0] == "stats":
            entry = oslo_driver.driver_stats()[path]
            print(json.dumps(entry), flush=True)
""")


def write_conf(sockdir, sock_path, replay_bytes):
    conf_file = os.path.join(sockdir, "svc.conf")
    with open(conf_file, "w") as f:
        f.write("[DEFAULT]\ntransport_url = fake://\n"
                "[oslo_messaging_notifications]\ndriver = unix\n"
                "sock_path = %s\nsock_replay_bytes = %d\n" % (sock_path, replay_bytes))
    return conf_file


class Service(ScriptService):
    def __init__(self, sockdir, path):
        super().__init__(SERVICE, write_conf(sockdir, path, 1 << 20), path)
        assert self.answer() == "ready"

    def answer(self):
        line = self.read_line(120)
        assert line, "the service did not answer"
        return line.strip()

    def ask(self, command):
        self.write_line(command)
        return self.answer()

    def send(self, tag, n):
        assert self.ask("send %s %d" % (tag, n)) == "sent"

    def stats(self):
        return json.loads(self.ask("stats"))

def run_tail(args, until_done, timeout=60):
    """Starts `notif tail ARGS`, calls until_done(), then waits (bounded) for
    tail to end by itself (--count); kills it if it does not. Returns
    (returncode, stdout lines as JSON, stderr)."""
    tail = subprocess.Popen([notif_cli(), "tail", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        until_done(tail)
        out, err = tail.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tail.send_signal(signal.SIGTERM)
        out, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    return tail.returncode, [json.loads(line) for line in out.splitlines()], err


def subscribed(service, n):
    wait_for(lambda: service.stats().get("library", {}).get("subscribers", 0) >= n,
             timeout=60, what="notif tail to subscribe")


def test_agent_restart_through_the_driver_gets_everything_once(sockdir):
    path = os.path.join(sockdir, "nova.sock")
    cursor_file = os.path.join(sockdir, "agent.cursor")
    service = Service(sockdir, path)
    try:
        # The agent's first run: two notifications, then it stops (--count).
        def first_run(tail):
            subscribed(service, 1)
            service.send("before", 2)
        code, got, err = run_tail(["--cursor-file", cursor_file, "--count", "2", path], first_run)
        assert code == 0, err
        assert [(m["payload"]["tag"], m["payload"]["i"]) for m in got] == [("before", 0), ("before", 1)]
        wait_for(lambda: service.stats()["library"]["subscribers"] == 0, timeout=60,
                 what="the first tail to be gone")

        # Stopped: three notifications with nobody connected.
        service.send("while-stopped", 3)
        stats = service.stats()
        assert stats["library"]["replay_messages"] >= 5, stats  # the 2 seen, the 3 not

        # Restarted: the three, then what comes live, each exactly once.
        def second_run(tail):
            subscribed(service, 1)
            service.send("after", 1)
        code, got, err = run_tail(["--cursor-file", cursor_file, "--count", "4", path], second_run)
        assert code == 0, err
        assert [(m["payload"]["tag"], m["payload"]["i"]) for m in got] == [
            ("while-stopped", 0), ("while-stopped", 1), ("while-stopped", 2), ("after", 0)], err
        assert "missed" not in err and "unknown number" not in err, err
        stats = service.stats()
        print("agent restart through the driver: first run %d, second run %d (%s); "
              "driver %s" % (2, len(got), ", ".join("%s-%d" % (m["payload"]["tag"], m["payload"]["i"])
                                                   for m in got),
                             {k: stats[k] for k in ("sent", "kept_in_ring", "no_subscriber")}))
        assert stats["sent"] == 3 and stats["kept_in_ring"] == 3, stats
        assert stats["no_subscriber"] == 0, stats
    finally:
        service.close()


def test_a_notification_kept_in_the_ring_is_not_counted_as_dropped(sockdir):
    path = os.path.join(sockdir, "kept.sock")
    with libnotif.Publisher(path, replay_bytes=1 << 20) as pub:
        for i in range(3):
            assert pub.emit({"event_type": "kept", "i": i}) == 0
        wait_for(lambda: pub.stats()["replay_messages"] == 3, what="3 in the ring")
        assert pub.stats()["dropped_no_subscriber"] == 0, pub.stats()
        assert pub.stats()["kept_no_subscriber"] == 3, pub.stats()


def test_with_a_ring_what_nobody_hears_is_validated_and_kept(sockdir):
    # notif_emit_len through ctypes, as every binding calls it.
    path = os.path.join(sockdir, "v.sock")
    with libnotif.Publisher(path, replay_bytes=1 << 20) as pub:
        for bad in (b"[1]", b"{not json", b'{"notif":1}'):
            with pytest.raises(libnotif.NotifError) as err:
                pub.emit(bad)
            assert err.value.errno == errno.EINVAL
        assert pub.emit(b'{"event_type": "kept",  "i": 0}') == 0
        wait_for(lambda: pub.stats()["replay_messages"] == 1, what="1 in the ring")
        assert pub.stats()["rejected"] == 3
        with libnotif.Subscriber(path, replay=True, timeout=10) as sub:
            assert sub.recv(10) == {"event_type": "kept", "i": 0}


def test_should_emit_with_and_without_a_ring(sockdir):
    with libnotif.Publisher(os.path.join(sockdir, "r.sock"), replay_bytes=1 << 20) as pub:
        assert pub.replay_bytes == 1 << 20
        assert pub.should_emit() is True          # nobody connected, but the ring keeps it
        assert pub.stats()["dropped_no_subscriber"] == 0
    with libnotif.Publisher(os.path.join(sockdir, "n.sock")) as pub:
        assert pub.replay_bytes == 0
        assert pub.should_emit() is False         # nobody, no ring: counted as dropped
        assert pub.stats()["dropped_no_subscriber"] == 1


# A {pid} service whose parent and forked workers notify at once, without
# waiting for anyone: only the ring can give a tail those first notifications.
FORKING = oslo_service(r"""
    workers = int(sys.argv[2])
    notifier.info({}, "svc.first", {"pid": os.getpid()})
    children, pipes = [], []
    for _ in range(workers):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            notifier.info({}, "svc.first", {"pid": os.getpid()})
            os.read(r, 1)       # live until the parent says
            os._exit(0)
        os.close(r)
        children.append(pid)
        pipes.append(w)
    print(json.dumps({"parent": os.getpid(), "children": children}), flush=True)
    sys.stdin.read()            # until the test is done
    for w in pipes:
        os.close(w)
    for pid in children:
        os.waitpid(pid, 0)
""", publisher_id="svc")


def test_glob_tail_started_before_the_workers_gets_each_first_notification(sockdir):
    conf_file = write_conf(sockdir, os.path.join(sockdir, "n-{pid}.sock"), 1 << 20)
    service = []

    def start_service(tail):
        service.append(subprocess.Popen([sys.executable, "-c", FORKING, conf_file, "3"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))

    try:
        code, got, err = run_tail(["--replay", "--count", "4", os.path.join(sockdir, "n-*.sock")],
                                  start_service)
        info = json.loads(service[0].stdout.readline())
    finally:
        for proc in service:
            proc.stdin.close()
            proc.wait(60)
    assert code == 0, err
    assert all(m["event_type"] == "svc.first" for m in got), got
    assert sorted(m["payload"]["pid"] for m in got) == sorted([info["parent"]] + info["children"]), err
