import errno
import os
import socket
import threading
import time

import pytest

import libnotif
from libnotif.subscriber import _Filter

from conftest import FakePublisher, lines, wait_subscribers


def test_control_lines_filter_before_ack_markers_heartbeat(sockdir):
    fake = FakePublisher(os.path.join(sockdir, "fake.sock"))
    sub, conn, request = fake.subscribe(event_types=["compute.*"], priorities=["error"],
                                        markers=True, heartbeat=0.5, reconnect=False, timeout=10)
    assert request == {
        "subscribe": {"event_types": ["compute.*"], "priorities": ["error"]},
        "markers": True, "heartbeat_s": 0.5, "cursor": True}
    conn.sendall(
        lines({"event_type": "image.update", "priority": "ERROR", "n": 0},   # before ack: filtered here
              {"event_type": "compute.x", "priority": "INFO", "n": 1},       # wrong priority
              {"event_type": "compute.x", "priority": "Error", "n": 2},      # passes
              {"event_type": "compute.x", "n": 3},                           # no priority
              {"notif": {"subscribed": True, "version": "0.1.0"}},
              {"event_type": "compute.y", "priority": "ERROR", "n": 4},
              {"notif": {"heartbeat": 1234.5}},
              {"notif": {"dropped": 3}},
              {"event_type": "compute.z", "priority": "ERROR", "n": 5},
              {"notif": {"dropped": 2}},
              {"event_type": "compute.z", "priority": "ERROR", "n": 6})
        + b'{"event_type":"compute.cut","prior')                            # incomplete: discarded
    conn.close()
    got = [m["n"] for m in sub]
    assert got == [2, 4, 5, 6]
    assert sub.dropped == 5 and sub.last_heartbeat == 1234.5 and sub.acked is False
    assert sub.reconnects == 0
    sub.close()
    fake.close()


def test_only_cursors_asked_when_nothing_asked_and_raw_lines(sockdir):
    fake = FakePublisher(os.path.join(sockdir, "plain.sock"))
    sub, conn, request = fake.subscribe(reconnect=False, timeout=10)
    assert request == {"cursor": True}
    conn.settimeout(0.3)
    with pytest.raises(socket.timeout):
        conn.recv(1)  # nothing more
    # A line whose first member is "notif" is a control line, never a
    # notification, on the plain stream too; markers were not asked for.
    conn.sendall(b'{"a":1}\n{"notif":{"dropped":1}}\n{"notif":{"x":1},"c":3}\n'
                 b'{"b": 2,"notif":1}\n')
    conn.close()
    assert list(sub.lines()) == [b'{"a":1}', b'{"b": 2,"notif":1}']
    assert sub.dropped == 0
    fake.close()


def test_error_line_is_a_subscription_error(sockdir):
    fake = FakePublisher(os.path.join(sockdir, "err.sock"))
    sub, conn, _ = fake.subscribe(publishers=["nova-*"], timeout=10)
    conn.sendall(lines({"notif": {"error": "unknown key \"x\""}}))
    with pytest.raises(libnotif.SubscriptionError) as info:
        sub.recv()
    assert info.value.errno == errno.EPROTO and "unknown key" in str(info.value)
    with pytest.raises(libnotif.SubscriptionError):
        sub.recv()  # permanent
    conn.close()
    fake.close()


def test_filter_semantics():
    f = _Filter(["compute.*", "image.up*te"], ["INFO"], None)
    assert f.match({"event_type": "compute.instance.create.end", "priority": "info"})
    assert f.match({"event_type": "compute.", "priority": "INFO"})
    assert f.match({"event_type": "image.update", "priority": "Info"})
    assert not f.match({"event_type": "Compute.x", "priority": "INFO"})  # case-sensitive globs
    assert not f.match({"event_type": "compute", "priority": "INFO"})
    assert not f.match({"event_type": "compute.x", "priority": "İNFO".lower()})
    assert not f.match({"event_type": "compute.x"})
    assert not f.match({"event_type": 5, "priority": "INFO"})
    g = _Filter(None, None, ["a?[b]*"])  # only * is special
    assert g.match({"publisher_id": "a?[b]"}) and not g.match({"publisher_id": "ax[b]"})
    with pytest.raises(ValueError):
        libnotif.Subscriber("/nonexistent.sock", event_types=[])
    with pytest.raises(ValueError):
        libnotif.Subscriber("/nonexistent.sock", heartbeat=0)


def test_real_publisher_filtering_and_timeout(sockdir):
    path = os.path.join(sockdir, "real.sock")
    with libnotif.Publisher(path) as pub:
        sub = libnotif.Subscriber(path, event_types=["a.*"], priorities=["error"], timeout=10)
        wait_subscribers(pub, 1)
        # Wait for the acknowledgement so that the publisher filters too.
        deadline = time.monotonic() + 10
        while not sub.acked and time.monotonic() < deadline:
            pub.emit({"event_type": "probe"})
            sub.recv(timeout=0.05)
        assert sub.acked
        for i, (et, prio) in enumerate([("a.b", "ERROR"), ("b.c", "ERROR"), ("a.c", "info"),
                                        ("a.d", "error")]):
            pub.emit({"event_type": et, "priority": prio, "i": i})
        assert sub.recv(5)["i"] == 0
        assert sub.recv(5)["i"] == 3
        t0 = time.monotonic()
        assert sub.recv(timeout=0.2) is None
        assert time.monotonic() - t0 < 5
        sub.timeout = 0.2
        with pytest.raises(TimeoutError):
            next(iter(sub))
        assert pub.stats()["filtered"] >= 2
        sub.close()
        assert libnotif.request_stats(path)["path"] == path


def test_reconnects_after_publisher_restart(sockdir):
    path = os.path.join(sockdir, "r.sock")
    pub = libnotif.Publisher(path)
    sub = libnotif.Subscriber(path, timeout=10)
    wait_subscribers(pub, 1)
    pub.emit({"n": 1})
    assert sub.recv(5) == {"n": 1}
    pub.close()
    assert sub.recv(timeout=0.3) is None  # end-of-file seen, waiting to reconnect
    pub = libnotif.Publisher(path)
    try:
        got = None
        deadline = time.monotonic() + 15
        while got is None and time.monotonic() < deadline:
            pub.emit({"n": 2})
            got = sub.recv(timeout=0.1)
        assert got == {"n": 2}
        assert sub.reconnects == 1
    finally:
        sub.close()
        pub.close()


def test_connect_failures(sockdir):
    path = os.path.join(sockdir, "none.sock")
    with pytest.raises(libnotif.NotifError) as info:
        libnotif.Subscriber(path, reconnect=False)
    assert info.value.errno == errno.ENOENT and path in str(info.value.filename)
    # reconnect=True: waits for the publisher to appear.
    sub = libnotif.Subscriber(path, timeout=10)
    assert not sub.connected
    assert sub.recv(timeout=0.15) is None

    def start_later():
        time.sleep(0.3)
        holder.append(libnotif.Publisher(path))

    holder = []
    t = threading.Thread(target=start_later)
    t.start()
    try:
        t.join(10)
        pub = holder[0]
        got = None
        deadline = time.monotonic() + 15
        while got is None and time.monotonic() < deadline:
            pub.emit({"late": True})
            got = sub.recv(timeout=0.1)
        assert got == {"late": True}
        assert sub.reconnects == 0  # first connection, not a re-connection
    finally:
        sub.close()
        for p in holder:
            p.close()


def test_context_manager_and_close(sockdir):
    path = os.path.join(sockdir, "cm.sock")
    with libnotif.Publisher(path) as pub:
        with libnotif.Subscriber(path, reconnect=False) as sub:
            wait_subscribers(pub, 1)
        assert sub.closed and not sub.connected
        assert sub.recv(0.1) is None


class RefusingPublisher(FakePublisher):
    """Answers every connection with one line (if any) and closes it; counts them."""

    def __init__(self, path, line):
        super().__init__(path)
        self.line = line
        self.connections = 0
        self.srv.settimeout(0.05)
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                continue
            self.connections += 1
            try:
                conn.sendall(self.line)
            except OSError:
                pass
            conn.close()

    def close(self):
        self._stop = True
        self._thread.join()
        super().close()


DENIED = b'{"notif":{"error":"uid 1000 may not subscribe","reason":"denied"}}\n'
FULL = b'{"notif":{"error":"1 subscriber already","reason":"full"}}\n'


@pytest.mark.parametrize("line,exc,code,words", [
    (DENIED, libnotif.SubscriptionDenied, errno.EACCES, "allow-lists"),
    (FULL, libnotif.PublisherFull, errno.EUSERS, "max_subscribers"),
])
@pytest.mark.parametrize("kwargs", [{}, {"markers": True}, {"reconnect": False}])
def test_denied_and_full_are_permanent_errors(sockdir, line, exc, code, words, kwargs):
    path = os.path.join(sockdir, "refuse.sock")
    fake = RefusingPublisher(path, line)
    try:
        sub = libnotif.Subscriber(path, timeout=10, **kwargs)
        with pytest.raises(exc) as info:
            sub.recv(10)
        assert info.value.errno == code and words in str(info.value)
        assert isinstance(info.value, libnotif.SubscriptionError)
        with pytest.raises(exc):
            sub.recv(0.5)  # permanent
        time.sleep(0.5)  # the back-off starts at 100 ms: a reconnection would show
        assert fake.connections == 1
        if exc is libnotif.SubscriptionDenied:
            assert isinstance(info.value, PermissionError)
    finally:
        fake.close()


@pytest.mark.parametrize("reason", ["too_slow", "memory"])
def test_too_slow_and_memory_are_lost_connections(sockdir, reason):
    path = os.path.join(sockdir, "slow.sock")
    fake = FakePublisher(path)
    sub = libnotif.Subscriber(path, timeout=10)
    conn = fake.accept()
    conn.sendall(b'{"n":1}\n{"notif":{"error":"bye","reason":"%s"}}\n' % reason.encode())
    conn.close()
    assert sub.recv(10) == {"n": 1}
    # The subscriber reconnects inside recv: receive in a thread meanwhile.
    got = []
    receiver = threading.Thread(target=lambda: got.append(sub.recv(10)))
    receiver.start()
    conn = fake.accept()
    conn.sendall(b'{"n":2}\n')
    receiver.join()
    assert got == [{"n": 2}]
    assert sub.reconnects == 1
    sub.close()
    conn.close()
    fake.close()


def test_request_stats_maps_denied_full_and_a_bare_close(sockdir):
    path = os.path.join(sockdir, "stats.sock")
    for line, exc, code in [(DENIED, libnotif.SubscriptionDenied, errno.EACCES),
                            (FULL, libnotif.PublisherFull, errno.EUSERS),
                            (b'{"notif":{"error":"bad"}}\n', libnotif.SubscriptionError, errno.EPROTO)]:
        fake = RefusingPublisher(path, line)
        try:
            with pytest.raises(exc) as info:
                libnotif.request_stats(path)
            assert info.value.errno == code
        finally:
            fake.close()
            os.unlink(path)
    # A publisher that closes without a line: not a notif publisher, as before.
    fake = RefusingPublisher(path, b"")
    try:
        with pytest.raises(libnotif.NotifError) as info:
            libnotif.request_stats(path)
        assert info.value.errno == errno.EPROTO and "not a notif publisher" in str(info.value)
    finally:
        fake.close()
