"""libnotif-forward without a broker: the oslo `unix` driver feeding its ring
with nobody connected, and the forwarder's cursors, retries, loss reports and
socket following, with a sink standing in for the broker (the real RabbitMQ
runs in bindings/python/tests/broker)."""

import json
import logging
import os
import subprocess
import sys
import time

import oslo_messaging
import pytest
from oslo_config import cfg

import libnotif
from libnotif import forward

from conftest import wait_for


class Sink:
    """Records what it is given; fails the next `fail` attempts."""

    kind = "test"
    topics = ["notifications"]

    def __init__(self):
        self.sent = []
        self.fail = 0
        self.attempts = 0

    def send(self, message, retry):
        self.attempts += 1
        if self.fail > 0:
            self.fail -= 1
            raise IOError("broker down (test)")
        self.sent.append(message)

    def close(self):
        pass


def make_conf(tmpdir, **values):
    path = os.path.join(tmpdir, "fwd.conf")
    with open(path, "w") as f:
        f.write("[notif_forward]\n")
        for k, v in values.items():
            f.write("%s = %s\n" % (k, v))
    conf = cfg.ConfigOpts()
    conf(["--config-file", path], project="test")
    return conf


def forwarder(sockdir, sock_path, **values):
    """A Forwarder of SOCK_PATH with its cursors in SOCKDIR/cursors (more
    options: VALUES) and the Sink it sends to."""
    sink = Sink()
    conf = make_conf(sockdir, sock_path=sock_path, cursor_file=os.path.join(sockdir, "cursors"),
                     **values)
    return forward.Forwarder(conf, sink=sink), sink


def pump(fwd, until, timeout=20.0, what="the forwarder"):
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out waiting for %s" % what
        fwd.step(0.05)


def note(n):
    return json.dumps({"event_type": "test.n", "priority": "INFO", "publisher_id": "p",
                       "message_id": "m%d" % n, "payload": {"n": n}})


def test_unix_driver_with_a_ring_emits_when_nobody_listens(sockdir):
    # Without this, a forwarder that is not connected at that moment (restarting,
    # or the broker down: it does not read) would find nothing in the ring.
    from libnotif import oslo_driver
    path = os.path.join(sockdir, "svc.sock")
    conf = cfg.ConfigOpts()
    conf([])
    transport = oslo_messaging.get_notification_transport(conf, url="fake:/")
    conf.register_opts(oslo_driver._opts, group="oslo_messaging_notifications")
    conf.set_override("driver", ["unix"], group="oslo_messaging_notifications")
    conf.set_override("sock_path", path, group="oslo_messaging_notifications")
    conf.set_override("sock_replay_bytes", 1 << 20, group="oslo_messaging_notifications")
    notifier = oslo_messaging.Notifier(transport, publisher_id="svc")
    try:
        for n in range(5):
            notifier.info({}, "test.ring", {"n": n})
        sub = libnotif.Subscriber(path, replay=True, timeout=10)
        got = [sub.recv(10) for _ in range(5)]
        sub.close()
        assert [m and m["payload"]["n"] for m in got] == list(range(5))
        assert sub.dropped == 0
    finally:
        oslo_driver.close_all()


def test_forwards_in_order_saves_cursors_and_resumes_after_them(sockdir):
    path = os.path.join(sockdir, "a.sock")
    cursors = os.path.join(sockdir, "cursors")
    with libnotif.Publisher(path, replay_bytes=1 << 20) as pub:
        for n in range(10):
            pub.emit(note(n))
        fwd, sink = forwarder(sockdir, path)
        pump(fwd, lambda: len(sink.sent) == 10)
        fwd.step(0.05)  # idle: the cursor file is written
        saved = json.load(open(cursors))
        assert saved == {path: "%s-9" % pub_epoch(path)}
        fwd.close()
        for n in range(10, 15):
            pub.emit(note(n))
        fwd2, sink2 = forwarder(sockdir, path)
        pump(fwd2, lambda: len(sink2.sent) == 5)
        fwd2.step(0.2)
        assert [m["payload"]["n"] for m in sink.sent] == list(range(10))
        assert [m["payload"]["n"] for m in sink2.sent] == list(range(10, 15))
        fwd2.close()


def pub_epoch(path):
    sub = libnotif.Subscriber(path, timeout=5)
    try:
        wait_for(lambda: sub.recv(0.05) is None and sub._epoch, 5, "the epoch")
        return sub._epoch
    finally:
        sub.close()


def test_a_failed_send_is_retried_and_the_cursor_does_not_pass_it(sockdir):
    path = os.path.join(sockdir, "b.sock")
    cursors = os.path.join(sockdir, "cursors")
    with libnotif.Publisher(path, replay_bytes=1 << 20) as pub:
        for n in range(3):
            pub.emit(note(n))
        fwd, sink = forwarder(sockdir, path, retry_interval=0.01, retry_interval_max=0.02)
        pump(fwd, lambda: len(sink.sent) == 3)
        fwd.step(0.05)
        before = open(cursors).read()
        sink.fail = 5
        pub.emit(note(3))
        # The send fails 5 times: nothing new in the cursor file meanwhile.
        pump(fwd, lambda: sink.attempts >= 6)
        pump(fwd, lambda: len(sink.sent) == 4)
        assert sink.attempts == 3 + 6
        assert fwd.failures == 5
        fwd.step(0.05)
        assert open(cursors).read() != before
        assert [m["payload"]["n"] for m in sink.sent] == [0, 1, 2, 3]
        fwd.close()


def test_a_failing_sink_leaves_the_cursor_before_the_notification(sockdir):
    # A forwarder stopped while the broker refuses: the next one sends it again.
    path = os.path.join(sockdir, "c.sock")
    with libnotif.Publisher(path, replay_bytes=1 << 20) as pub:
        pub.emit(note(0))
        fwd, sink = forwarder(sockdir, path, retry_interval=0.01, retry_interval_max=0.02)
        pump(fwd, lambda: len(sink.sent) == 1)
        fwd.step(0.05)
        sink.fail = 10 ** 9

        class Enough(BaseException):
            pass

        real_sleep = time.sleep
        calls = []

        def sleep(s):
            calls.append(s)
            if len(calls) > 3:
                raise Enough()
            real_sleep(s)

        pub.emit(note(1))
        forward.time.sleep = sleep
        try:
            with pytest.raises(Enough):
                pump(fwd, lambda: False)
        finally:
            forward.time.sleep = real_sleep
        fwd.close()
        fwd2, sink2 = forwarder(sockdir, path)
        pump(fwd2, lambda: len(sink2.sent) == 1)
        assert sink2.sent[0]["payload"]["n"] == 1
        fwd2.close()


def test_what_the_ring_lost_is_logged_with_its_count(sockdir, caplog):
    path = os.path.join(sockdir, "d.sock")
    with libnotif.Publisher(path, replay_bytes=64 * 1024) as pub:
        pub.emit(note(0))
        fwd, sink = forwarder(sockdir, path)
        pump(fwd, lambda: len(sink.sent) == 1)
        fwd.close()
        # While the forwarder is away, more than the ring holds.
        for n in range(1, 2001):
            pub.emit(note(n))
        # (stats() waits at most 100 ms for the server thread: ask until it has all.)
        stats = wait_for(lambda: (lambda st: st if st["next_seq"] == 2001 else None)(pub.stats()),
                         20, "the ring to hold the last notification")
        held = stats["replay_messages"]
        assert 0 < held < 2000
        caplog.set_level(logging.WARNING, logger="libnotif.forward")
        fwd2, sink2 = forwarder(sockdir, path)
        pump(fwd2, lambda: len(sink2.sent) == held)
        fwd2.step(0.1)
        lost = 2000 - held
        assert fwd2.lost == lost
        assert [m["payload"]["n"] for m in sink2.sent] == list(range(2001 - held, 2001))
        assert any("%d notification(s) of %s were lost" % (lost, path) in r.getMessage()
                   for r in caplog.records)
        fwd2.close()


def test_a_glob_follows_workers_coming_and_going(sockdir):
    cursors = os.path.join(sockdir, "cursors")
    fwd, sink = forwarder(sockdir, os.path.join(sockdir, "w-{pid}.sock"), rescan_interval=0.05)
    a = libnotif.Publisher(os.path.join(sockdir, "w-1.sock"), replay_bytes=1 << 20)
    a.emit(note(1))
    pump(fwd, lambda: len(sink.sent) == 1)
    b = libnotif.Publisher(os.path.join(sockdir, "w-2.sock"), replay_bytes=1 << 20)
    b.emit(note(2))  # emitted before the forwarder saw w-2: in its ring
    pump(fwd, lambda: len(sink.sent) == 2)
    fwd.step(0.1)
    assert set(json.load(open(cursors))) == {a.path, b.path}
    a.emit(note(3))
    a.close()  # the worker is gone: its socket file with it
    pump(fwd, lambda: len(sink.sent) == 3 and a.path not in fwd.sources)
    fwd.step(0.1)
    assert set(json.load(open(cursors))) == {b.path}
    assert sorted(m["payload"]["n"] for m in sink.sent) == [1, 2, 3]
    b.close()
    fwd.close()


def test_the_console_script_and_the_generator_namespace():
    bindir = os.path.dirname(sys.executable)
    out = subprocess.run([os.path.join(bindir, "libnotif-forward"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--config-file" in out.stdout
    out = subprocess.run([os.path.join(bindir, "oslo-config-generator"), "--namespace",
                          "libnotif.forward"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for opt in forward._opts:
        assert "#%s = " % opt.dest in out.stdout, opt.dest
    assert "[notif_forward]" in out.stdout


def test_missing_options_are_one_error_line(sockdir, capfd):
    bindir = os.path.dirname(sys.executable)
    conf = os.path.join(sockdir, "x.conf")
    with open(conf, "w") as f:
        f.write("[notif_forward]\nsock_path = /tmp/x.sock\n")
    out = subprocess.run([os.path.join(bindir, "libnotif-forward"), "--config-file", conf],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "cursor_file is not set" in out.stderr


def test_the_docs_snippets_load_as_pasted(sockdir):
    """docs/forwarding.md's ini blocks: the service's loads with the unix
    driver's options, the forwarder's with libnotif-forward's and oslo's rabbit
    options, with no value holding a comment (oslo.config has no inline ones)."""
    import re
    from conftest import REPO_ROOT
    from libnotif import oslo_driver
    from oslo_messaging._drivers import amqp, impl_rabbit
    with open(os.path.join(REPO_ROOT, "docs", "forwarding.md"), encoding="utf-8") as f:
        blocks = re.findall(r"```ini\n(.*?)```", f.read(), re.S)
    assert len(blocks) == 2
    checked = 0
    for block in blocks:
        path = os.path.join(sockdir, "pasted.conf")
        with open(path, "w") as f:
            f.write(block)
        conf = cfg.ConfigOpts()
        conf(["--config-file", path], project="docs", default_config_files=[])
        groups = {"oslo_messaging_notifications": oslo_driver._opts,
                  "notif_forward": forward._opts,
                  "oslo_messaging_rabbit": impl_rabbit.rabbit_opts + amqp.amqp_opts}
        section = None
        for line in block.splitlines():
            m = re.match(r"^\[(\w+)\]$", line)
            if m:
                section = m.group(1)
                continue
            m = re.match(r"^(\w+)\s*=", line)
            if not m:
                continue
            known = {o.dest for o in groups[section]}
            if section == "oslo_messaging_notifications":
                known |= {"driver", "transport_url", "topics", "retry"}
            assert m.group(1) in known, (section, m.group(1))
            if section == "oslo_messaging_notifications" and m.group(1) not in {
                    o.dest for o in oslo_driver._opts}:
                continue
            try:
                conf.register_opts(groups[section], group=section)
            except cfg.DuplicateOptError:
                pass
            value = conf[section][m.group(1)]
            text = " ".join(value) if isinstance(value, list) else str(value)
            assert "#" not in text, (section, m.group(1), value)
            checked += 1
    assert checked >= 9


def test_the_systemd_unit(sockdir):
    """systemd/notif-forward@.service runs the console script with a config file,
    and systemd-analyze (when there) finds nothing wrong in it but the binary's
    absence from /usr/bin here."""
    import shutil
    import re
    from conftest import REPO_ROOT
    unit = os.path.join(REPO_ROOT, "systemd", "notif-forward@.service")
    text = open(unit).read()
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1).split()
    assert exec_start[:2] == ["/usr/bin/libnotif-forward", "--config-file"]
    assert 'libnotif-forward = "libnotif.forward:main"' in open(
        os.path.join(REPO_ROOT, "bindings", "python", "pyproject.toml")).read()
    assert re.search(r"^KillSignal=SIGTERM$", text, re.M)
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return
    copy = os.path.join(sockdir, "notif-forward@nova.service")
    shutil.copy(unit, os.path.join(sockdir, "notif-forward@.service"))
    out = subprocess.run([analyze, "verify", "--man=no", copy], capture_output=True,
                         text=True, timeout=60, cwd=sockdir)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if line.strip() and "is not executable" not in line]
    assert problems == []


def test_cursors_of_gone_workers_are_forgotten(sockdir):
    cursors = os.path.join(sockdir, "cursors")
    gone = os.path.join(sockdir, "w-999999.sock")
    other = "/elsewhere/other.sock"
    with open(cursors, "w") as f:
        json.dump({gone: "0123456789abcdef-5", other: "0123456789abcdef-7"}, f)
    fwd = forward.Forwarder(make_conf(sockdir, sock_path=os.path.join(sockdir, "w-{pid}.sock"),
                                      cursor_file=cursors), sink=Sink())
    fwd.step(0.05)
    fwd.close()
    # Not matched by the glob: kept (the file may be shared, as notif tail's is).
    assert json.load(open(cursors)) == {other: "0123456789abcdef-7"}
