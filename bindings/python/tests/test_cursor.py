"""Cursors against a scripted fake publisher (the resume tests against the
real library are in test_replay.py)."""

import os
import socket

import pytest

import libnotif

from conftest import FakePublisher, lines

EPOCH_A = "5f3a9c0d12e4b7a8"
EPOCH_B = "0123456789abcdef"


def ack(epoch):
    return {"notif": {"subscribed": True, "version": "0.1.0", "epoch": epoch}}


def test_cursor_from_seq_lines_and_resume(sockdir):
    fake = FakePublisher(os.path.join(sockdir, "cur.sock"))
    sub, conn, request = fake.subscribe(timeout=10)
    assert sub.cursor is None
    assert request == {"cursor": True}
    conn.sendall(lines({"n": "early"}, ack(EPOCH_A), {"notif": {"seq": 10}}, {"n": 10}, {"n": 11},
                       {"notif": {"seq": 15}}, {"n": 15}))
    # Before the acknowledgement: no number, the cursor stays.
    assert sub.recv() == {"n": "early"} and sub.cursor is None
    assert sub.recv() == {"n": 10} and sub.cursor == EPOCH_A + "-10"
    assert sub.recv() == {"n": 11} and sub.cursor == EPOCH_A + "-11"
    assert sub.recv() == {"n": 15} and sub.cursor == EPOCH_A + "-15"

    # Disconnected for being slow: resumes after 15; lines before the
    # acknowledgement are the publisher's to resend (or count), not ours.
    conn.sendall(lines({"notif": {"error": "bye", "reason": "too_slow"}}))
    got, conn, request = fake.redial(conn, sub, 0.5)
    assert got is None  # reads the error line, reconnects
    assert request == {"cursor": True, "after": EPOCH_A + "-15"}
    conn.sendall(lines({"n": "unnumbered"}, ack(EPOCH_A), {"notif": {"dropped": 2}},
                       {"notif": {"seq": 18}}, {"n": 18}))
    assert sub.recv() == {"n": 18} and sub.cursor == EPOCH_A + "-18"
    assert sub.reconnects == 1 and sub.dropped == 2 and sub.dropped_unknown == 0

    # The publisher restarted: another epoch, a count nobody knows.
    got, conn, request = fake.redial(conn, sub, 0.5)
    assert got is None
    assert request == {"cursor": True, "after": EPOCH_A + "-18"}
    conn.sendall(lines(ack(EPOCH_B), {"notif": {"dropped": "unknown"}}, {"notif": {"seq": 0}},
                       {"n": 0}, {"n": 1}))
    assert sub.recv_line() == b'{"n":0}' and sub.cursor == EPOCH_B + "-0"
    assert sub.recv() == {"n": 1} and sub.cursor == EPOCH_B + "-1"
    assert sub.reconnects == 2 and sub.dropped == 2 and sub.dropped_unknown == 1
    assert sub.recv(timeout=0.2) is None
    sub.close()
    conn.close()
    fake.close()


def test_markers_not_asked_are_ignored_unless_resuming(sockdir):
    fake = FakePublisher(os.path.join(sockdir, "mk.sock"))
    sub, conn, _ = fake.subscribe(reconnect=False, timeout=10)
    conn.sendall(lines(ack(EPOCH_A), {"notif": {"dropped": 4}}, {"notif": {"dropped": "unknown"}},
                       {"notif": {"seq": 3}}, {"n": 3}))
    conn.close()
    assert list(sub) == [{"n": 3}]
    assert sub.dropped == 0 and sub.dropped_unknown == 0 and sub.cursor == EPOCH_A + "-3"
    fake.close()


def test_after_and_replay_requests(sockdir):
    def request(**kwargs):
        path = os.path.join(sockdir, "rq.sock")
        fake = FakePublisher(path)
        try:
            with libnotif.Subscriber(path, reconnect=False, timeout=10, **kwargs):
                conn = fake.accept()
                try:
                    return fake.read_request(conn)
                finally:
                    conn.close()
        finally:
            fake.close()
            os.unlink(path)

    cur = EPOCH_A + "-1041"
    assert request(after=cur, event_types=["a.*"]) == {
        "subscribe": {"event_types": ["a.*"]}, "cursor": True, "after": cur}
    assert request(replay=True) == {"cursor": True, "replay": True}
    assert request(after="") == {"cursor": True}
    sub = libnotif.Subscriber("/nonexistent/x.sock", after=cur)
    assert sub.cursor == cur  # before any notification: where it resumes
    sub.close()
    for bad in ("x", EPOCH_A, EPOCH_A + "-", EPOCH_A.upper() + "-1", EPOCH_A[:-1] + "-1",
                EPOCH_A + "--1", EPOCH_A + "-1x", EPOCH_A + "-18446744073709551616", 5):
        with pytest.raises(ValueError):
            libnotif.Subscriber("/nonexistent/x.sock", after=bad)
    with pytest.raises(ValueError):
        libnotif.Subscriber("/nonexistent/x.sock", after=cur, replay=True)
    with pytest.raises(ValueError):  # over the publisher's 64 KiB, cursor included
        libnotif.Subscriber("/nonexistent/x.sock", event_types=["x" * (64 * 1024 - 40)], after=cur)


def test_replay_until_something_is_handed_out(sockdir):
    fake = FakePublisher(os.path.join(sockdir, "rp.sock"))
    sub, conn, request = fake.subscribe(replay=True, timeout=10)
    assert request == {"cursor": True, "replay": True}
    got, conn, request = fake.redial(conn, sub, 0.3)
    assert got is None
    assert request == {"cursor": True, "replay": True}
    conn.sendall(lines({"n": "unnumbered"}, ack(EPOCH_A), {"notif": {"dropped": 40}},
                       {"notif": {"seq": 40}}, {"n": 40}))
    assert sub.recv() == {"n": 40} and sub.dropped == 40
    got, conn, request = fake.redial(conn, sub, 0.3)
    assert got is None
    assert request == {"cursor": True, "after": EPOCH_A + "-40"}
    sub.close()
    conn.close()
    fake.close()


OLD_REFUSAL = {"notif": {"error": 'unknown key "cursor" in the request (known: subscribe, '
                         'markers, heartbeat_s, stats)', "reason": "bad_request"}}


@pytest.mark.parametrize("kwargs,plain", [({}, None), ({"markers": True}, {"markers": True})])
def test_older_publisher_without_cursors(sockdir, kwargs, plain):
    fake = FakePublisher(os.path.join(sockdir, "old.sock"))
    sub, conn, _ = fake.subscribe(timeout=10, **kwargs)
    conn.sendall(lines(OLD_REFUSAL))
    conn.close()
    assert sub.recv(timeout=0.3) is None  # reads the refusal, connects again at once
    conn = fake.accept()
    if plain is None:
        conn.settimeout(0.3)
        with pytest.raises(socket.timeout):
            conn.recv(1)  # the plain stream: no request
        conn.settimeout(10)
    else:
        assert fake.read_request(conn) == plain
    conn.sendall(lines({"n": 1}))
    assert sub.recv() == {"n": 1} and sub.cursor is None and sub.reconnects == 0
    conn.close()
    assert sub.recv(timeout=0.3) is None
    conn = fake.accept()  # a lost connection later: a reconnection, still without cursors
    if plain is not None:
        assert fake.read_request(conn) == plain
    conn.sendall(lines({"n": 2}))
    assert sub.recv() == {"n": 2} and sub.reconnects == 1
    sub.close()
    conn.close()
    fake.close()


def test_older_publisher_cannot_resume_and_other_refusals_stay(sockdir):
    for kwargs, error in (({"after": EPOCH_A + "-1"}, OLD_REFUSAL),
                          ({"markers": True}, {"notif": {"error": 'unknown key "x"',
                                                         "reason": "bad_request"}})):
        fake = FakePublisher(os.path.join(sockdir, "old2.sock"))
        sub, conn, _ = fake.subscribe(timeout=10, **kwargs)
        conn.sendall(lines(error))
        with pytest.raises(libnotif.SubscriptionError):
            sub.recv()
        conn.close()
        fake.close()
        os.unlink(fake.path)


def test_resume_point_follows_seq_lines(sockdir):
    """After a seq line a reconnection resumes just before the notification it
    announced: drops already reported are not reported again."""
    fake = FakePublisher(os.path.join(sockdir, "sq.sock"))
    sub, conn, _ = fake.subscribe(after=EPOCH_A + "-3", timeout=10)
    conn.sendall(lines(ack(EPOCH_A), {"notif": {"dropped": 6}}, {"notif": {"seq": 10}}))
    got, conn, request = fake.redial(conn, sub, 0.5)  # closed before notification 10
    assert got is None
    assert sub.dropped == 6
    assert request == {"cursor": True, "after": EPOCH_A + "-9"}
    assert sub.cursor == EPOCH_A + "-3"  # moves with what is handed out only
    conn.sendall(lines(ack(EPOCH_A), {"notif": {"seq": 10}}, {"n": 10}))
    assert sub.recv() == {"n": 10} and sub.cursor == EPOCH_A + "-10" and sub.dropped == 6
    got, conn, request = fake.redial(conn, sub, 0.5)
    assert got is None
    assert request == {"cursor": True, "after": EPOCH_A + "-10"}
    sub.close()
    conn.close()
    fake.close()
