"""The 'unix' driver with the real oslo.messaging (fake:// transport)."""

import json
import logging
import os
import subprocess
import sys
import time
import uuid

import pytest

oslo_messaging = pytest.importorskip("oslo_messaging")
from oslo_config import cfg  # noqa: E402
from oslo_serialization import jsonutils  # noqa: E402
from oslo_utils import strutils  # noqa: E402

import libnotif  # noqa: E402
from libnotif import oslo_driver  # noqa: E402

from conftest import wait_for  # noqa: E402

PAYLOAD = {"instance_id": "i-1", "password": "secret", "nested": {"admin_pass": "hunter2"},
           "n": 1.5, "text": "é\n\"quoted\"", "list": [1, None, True]}


@pytest.fixture(autouse=True)
def fresh_driver_state():
    oslo_driver.close_all()
    yield
    oslo_driver.close_all()


def make_conf(sockdir, sock_path=None, extra=""):
    conf_file = os.path.join(sockdir, "test.conf")
    lines = ["[DEFAULT]", "transport_url = fake://", "[oslo_messaging_notifications]",
             "driver = unix"]
    if sock_path is not None:
        lines.append("sock_path = %s" % sock_path)
    with open(conf_file, "w") as f:
        f.write("\n".join(lines) + "\n" + extra)
    conf = cfg.ConfigOpts()
    conf(["--config-file", conf_file], project="notif-test", default_config_files=[])
    return conf


def make_notifier(conf, publisher_id="compute.host1"):
    transport = oslo_messaging.get_notification_transport(conf)
    return oslo_messaging.Notifier(transport, publisher_id=publisher_id)


def library_subscribers(path):
    entry = oslo_driver.driver_stats().get(path)
    return entry and entry.get("library", {}).get("subscribers", 0)


def open_and_subscribe(notifier, path, **kw):
    notifier.info({}, "test.open", {})  # the socket is opened lazily
    sub = libnotif.Subscriber(path, timeout=10, **kw)
    wait_for(lambda: library_subscribers(path) >= 1, what="the subscriber to be accepted")
    return sub


def test_entry_points_select_the_driver(sockdir):
    path = os.path.join(sockdir, "n.sock")
    notifier = make_notifier(make_conf(sockdir, path))
    exts = notifier._driver_mgr.extensions
    assert [e.name for e in exts] == ["unix"]
    assert isinstance(exts[0].obj, oslo_driver.UnixSocketDriver)


def test_every_priority_matches_the_log_driver(sockdir, caplog, monkeypatch):
    path = os.path.join(sockdir, "n.sock")
    # Both drivers at once: what the log driver writes is the reference.
    conf = make_conf(sockdir, path, extra="driver = log\n")
    notifier = make_notifier(conf)
    assert sorted(e.name for e in notifier._driver_mgr.extensions) == ["log", "unix"]
    seen = []
    real_notify = oslo_driver.UnixSocketDriver.notify

    def spy(self, ctxt, message, priority, retry):
        seen.append(json.loads(json.dumps(message)))
        return real_notify(self, ctxt, message, priority, retry)

    monkeypatch.setattr(oslo_driver.UnixSocketDriver, "notify", spy)
    sub = open_and_subscribe(notifier, path)
    seen.clear()
    caplog.set_level(logging.DEBUG, logger="oslo.messaging.notification")
    calls = [("audit", "AUDIT"), ("debug", "DEBUG"), ("info", "INFO"), ("warn", "WARN"),
             ("warning", "WARN"), ("error", "ERROR"), ("critical", "CRITICAL"),
             ("sample", "SAMPLE")]
    for i, (method, _) in enumerate(calls):
        payload = dict(PAYLOAD, i=i)
        getattr(notifier, method)({"user": "u"}, "compute.instance.%s" % method, payload)
    raw = [sub.recv_line(10) for _ in calls]
    assert None not in raw
    got = [json.loads(line) for line in raw]
    log_lines = {r.name.split("oslo.messaging.notification.", 1)[1]: r.getMessage()
                 for r in caplog.records if r.name.startswith("oslo.messaging.notification.")}
    for (method, priority), message, line, sent in zip(calls, got, raw, seen):
        event_type = "compute.instance.%s" % method
        assert list(message) == ["message_id", "publisher_id", "event_type", "priority",
                                 "payload", "timestamp"]
        assert message["priority"] == priority and message["event_type"] == event_type
        assert message["publisher_id"] == "compute.host1"
        uuid.UUID(message["message_id"])
        assert message["payload"]["password"] == "***"
        assert message["payload"]["nested"]["admin_pass"] == "***"
        assert message["payload"]["text"] == PAYLOAD["text"]
        # What the log driver's serialisation gives for the message oslo built.
        expected = jsonutils.dumps(strutils.mask_dict_password(sent))
        assert message == json.loads(expected)
        assert line == json.dumps(json.loads(expected), separators=(",", ":")).encode()
        # And what the real log driver wrote (it has no logger method for AUDIT/SAMPLE).
        if priority not in ("AUDIT", "SAMPLE"):
            assert json.loads(log_lines[event_type]) == message
    assert "secret" not in b"".join(raw).decode()
    sub.close()


def test_fork_each_worker_serves_its_own_socket(sockdir):
    template = os.path.join(sockdir, "w-{pid}.sock")
    notifier = make_notifier(make_conf(sockdir, template))
    notifier.info({}, "parent.hello", {})  # the parent opens its socket before forking
    parent_path = template.replace("{pid}", str(os.getpid()))
    assert os.path.exists(parent_path)
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                stop = os.path.join(sockdir, "stop-%d" % os.getpid())
                deadline = time.monotonic() + 30
                seq = 0
                while not os.path.exists(stop) and time.monotonic() < deadline:
                    notifier.info({}, "worker.tick", {"pid": os.getpid(), "seq": seq})
                    seq += 1
                    time.sleep(0.02)
                code = 0 if os.path.exists(stop) else 3
                oslo_driver.close_all()  # what atexit does in a worker that exits normally
            finally:
                os._exit(code)
        children.append(pid)
    try:
        for pid in children:
            path = template.replace("{pid}", str(pid))
            with libnotif.Subscriber(path, timeout=20) as sub:  # waits for the socket to appear
                message = sub.recv(20)
                assert message is not None, "nothing from worker %d" % pid
                assert message["payload"]["pid"] == pid
                assert message["event_type"] == "worker.tick"
                assert message["publisher_id"] == "compute.host1"
                again = sub.recv(20)
                assert again["payload"]["seq"] > message["payload"]["seq"]
        # The parent's socket still works and is the parent's.
        with libnotif.Subscriber(parent_path, timeout=10) as sub:
            wait_for(lambda: library_subscribers(parent_path) >= 1)
            notifier.info({}, "parent.after", {"pid": os.getpid()})
            assert sub.recv(10)["payload"] == {"pid": os.getpid()}
    finally:
        for pid in children:
            open(os.path.join(sockdir, "stop-%d" % pid), "w").close()
        statuses = [os.waitpid(pid, 0)[1] for pid in children]
    assert [os.waitstatus_to_exitcode(s) for s in statuses] == [0, 0]
    for pid in children:  # each worker removed its socket when it closed it
        assert not os.path.exists(template.replace("{pid}", str(pid)))


def test_missing_sock_path_is_one_error_line_and_counted(sockdir, caplog):
    caplog.set_level(logging.ERROR)
    conf = make_conf(sockdir, None)
    notifier = make_notifier(conf)
    # The driver loads (no stevedore "Could not load"), says what to fix once...
    assert [e.name for e in notifier._driver_mgr.extensions] == ["unix"]
    for i in range(3):
        notifier.info({}, "compute.x", {"i": i})
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "[oslo_messaging_notifications] sock_path" in errors[0]
    assert "sock_path = /run/" in errors[0]  # the fix
    # ...and counts what it drops.
    assert oslo_driver.driver_stats()[""]["dropped_misconfigured"] == 3


def test_bad_sock_mode_is_one_error_line_and_counted(sockdir, caplog):
    caplog.set_level(logging.ERROR)
    path = os.path.join(sockdir, "m.sock")
    notifier = make_notifier(make_conf(sockdir, path, extra="sock_mode = rw-rw----\n"))
    assert [e.name for e in notifier._driver_mgr.extensions] == ["unix"]
    notifier.info({}, "compute.x", {})
    notifier.info({}, "compute.x", {})
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "sock_mode" in errors[0] and "sock_mode = 0660" in errors[0]
    assert not os.path.exists(path)
    assert oslo_driver.driver_stats()[path]["dropped_misconfigured"] == 2


def test_unknown_sock_group_names_the_option_as_text(sockdir, caplog):
    caplog.set_level(logging.ERROR)
    path = os.path.join(sockdir, "g.sock")
    notifier = make_notifier(make_conf(sockdir, path, extra="sock_group = nova-notify-readerz\n"))
    notifier.info({}, "compute.x", {})
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "sock_group" in errors[0] and "'nova-notify-readerz'" in errors[0]
    assert "b'" not in errors[0]
    assert oslo_driver.driver_stats()[path]["dropped_unopened"] == 1


def test_publisher_group_error_shows_text(sockdir):
    with pytest.raises(libnotif.NotifError) as info:
        libnotif.Publisher(os.path.join(sockdir, "g.sock"), group="no-such-groupz")
    assert "'no-such-groupz'" in str(info.value) and "b'" not in str(info.value)


def test_busy_path_logs_one_error_and_counts(sockdir, caplog, monkeypatch):
    path = os.path.join(sockdir, "busy.sock")
    other = libnotif.Publisher(path)  # another publisher is live there
    monkeypatch.setattr(oslo_driver, "REOPEN_INTERVAL", 0.3)
    notifier = make_notifier(make_conf(sockdir, path))
    caplog.set_level(logging.DEBUG, logger="libnotif.oslo_driver")
    t0 = time.monotonic()
    for i in range(20):
        notifier.error({}, "compute.fail", {"i": i})
    assert time.monotonic() - t0 < 5  # notify never waits
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    text = errors[0].getMessage()
    assert path in text and "another publisher is live" in text
    stats = oslo_driver.driver_stats()[path]
    assert stats["dropped_unopened"] == 20 and not stats["open"]
    # Once the path is free, the driver opens it on a later notify (after the interval).
    other.close()
    time.sleep(0.4)
    notifier.info({}, "compute.ok", {})
    assert oslo_driver.driver_stats()[path]["open"]
    with libnotif.Subscriber(path, timeout=10) as sub:
        wait_for(lambda: library_subscribers(path) >= 1)
        notifier.info({}, "compute.ok", {"after": True})
        assert sub.recv(10)["payload"] == {"after": True}
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


def test_unopenable_directory_and_socket_options(sockdir, caplog):
    caplog.set_level(logging.ERROR, logger="libnotif.oslo_driver")
    missing = os.path.join(sockdir, "nodir", "n.sock")
    notifier = make_notifier(make_conf(sockdir, missing))
    notifier.info({}, "a", {})
    notifier.info({}, "b", {})
    assert len(caplog.records) == 1 and missing in caplog.records[0].getMessage()
    assert "ENOENT" in caplog.records[0].getMessage()
    path = os.path.join(sockdir, "mode.sock")
    conf = make_conf(sockdir, path, extra="sock_mode = 0660\nsock_group = %d\n" % os.getgid())
    notifier = make_notifier(conf)
    notifier.info({}, "a", {})
    st = os.stat(path)
    assert st.st_mode & 0o777 == 0o660 and st.st_gid == os.getgid()


def test_sock_mode_type():
    mode = oslo_driver._Mode()
    assert mode("0600") == 0o600 and mode("660") == 0o660 and mode(0o640) == 0o640
    with pytest.raises(ValueError):
        mode("rw")
    with pytest.raises(ValueError):
        mode("1777")


def test_config_generator_lists_the_options():
    gen = os.path.join(os.path.dirname(sys.executable), "oslo-config-generator")
    proc = subprocess.run([gen, "--namespace", "libnotif.oslo_driver"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "[oslo_messaging_notifications]" in out
    assert "#sock_path = <None>" in out
    assert "#sock_mode = 0600" in out
    assert "#sock_group = <None>" in out
    # The limits, with their defaults and help.
    for line in ("#sock_max_message = 1048576", "#sock_subscriber_buffer = 4194304",
                 "#sock_memory_limit = 67108864", "#sock_linger_ms = 1000",
                 "#sock_slow_policy = drop"):
        assert line in out, out
    assert "disconnected" in out and "all subscribers' queues" in out
    assert "#sock_replay_bytes = 0" in out and "replay ring" in out


def test_limit_options_reach_the_library(sockdir, monkeypatch):
    seen = []
    real = oslo_driver.Publisher

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(oslo_driver, "Publisher", spy)
    path = os.path.join(sockdir, "lim.sock")
    make_notifier(make_conf(sockdir, path, extra=(
        "sock_max_message = 4096\nsock_subscriber_buffer = 65536\n"
        "sock_memory_limit = 131072\nsock_linger_ms = 0\nsock_slow_policy = disconnect\n")))
    assert seen and seen[0]["max_message"] == 4096 and seen[0]["subscriber_buffer"] == 65536
    assert seen[0]["memory_limit"] == 131072 and seen[0]["linger_ms"] == 0
    assert seen[0]["slow_policy"] == "disconnect"
    assert oslo_driver.driver_stats()[path]["open"]
    # A notification over sock_max_message is refused by the library, counted.
    with libnotif.Subscriber(path, timeout=10) as sub:
        wait_for(lambda: library_subscribers(path) >= 1)
        notifier = make_notifier(make_conf(sockdir, path))
        notifier.info({}, "big", {"x": "y" * 5000})
        notifier.info({}, "small", {"x": 1})
        assert sub.recv(10)["event_type"] == "small"
    assert oslo_driver.driver_stats()[path]["rejected"] == 1


def test_publisher_memory_limit_option(sockdir):
    with pytest.raises(libnotif.NotifError):
        libnotif.Publisher(os.path.join(sockdir, "m.sock"), memory_limit=10)  # below 16 KiB
    with libnotif.Publisher(os.path.join(sockdir, "m2.sock"), memory_limit=1 << 20) as pub:
        assert pub.subscribers() == 0
        assert pub.subscribers_or_skip() == 0
        assert pub.stats()["dropped_no_subscriber"] == 1
        pub.skip()
        assert pub.stats()["dropped_no_subscriber"] == 2



def test_sock_replay_bytes_keeps_a_ring(sockdir, caplog):
    path = os.path.join(sockdir, "ring.sock")
    notifier = make_notifier(make_conf(sockdir, path, extra="sock_replay_bytes = 1048576\n"))
    live = open_and_subscribe(notifier, path)
    for i in range(3):
        notifier.info({}, "ring.test", {"i": i})
    got = [live.recv()["payload"]["i"] for _ in range(3)]
    assert got == [0, 1, 2]
    # A subscriber that comes later reads them from the ring.
    late = libnotif.Subscriber(path, replay=True, event_types=["ring.*"], timeout=10)
    assert [late.recv()["payload"]["i"] for _ in range(3)] == [0, 1, 2]
    assert late.cursor == live.cursor
    stats = libnotif.request_stats(path)
    assert stats["replay_messages"] >= 3 and stats["replay_bytes"] > 0 and stats["replayed"] >= 3
    live.close()
    late.close()
    # More than half the memory limit: the library refuses it, one error line.
    oslo_driver.close_all()
    caplog.set_level(logging.ERROR, logger="libnotif.oslo_driver")
    path = os.path.join(sockdir, "big.sock")
    notifier = make_notifier(make_conf(sockdir, path, extra="sock_memory_limit = 65536\n"
                                                            "sock_replay_bytes = 65536\n"))
    notifier.info({}, "a", {})
    assert len(caplog.records) == 1 and "EINVAL" in caplog.records[0].getMessage()
    assert "replay" in caplog.records[0].getMessage()
