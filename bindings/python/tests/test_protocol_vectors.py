"""The protocol vectors (tests/protocol-vectors, format in its README) through
the pure Python client: how it classifies every control line, matches filters
and globs, checks cursors; and the same vectors against a real publisher over
a real socket (the request lines, the filters through libnotif.Subscriber,
what emit refuses). The Rust and Go clients and the server read the same
files in their own tests."""

import errno
import json
import os
import socket
import time

import pytest

import libnotif
from conftest import REPO_ROOT, wait_subscribers
from libnotif.subscriber import _check_cursor, _classify, _Filter, _glob

VECTORS = os.path.join(REPO_ROOT, "tests", "protocol-vectors")


def vectors(name):
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        loaded = json.load(f)
    assert loaded, "%s holds no vector" % name
    return loaded


def vector_id(vector):
    return vector.get("name") or vector.get("line") or vector.get("text") or \
        "%s ~ %s" % (vector.get("pattern"), vector.get("text"))


# -- control lines -------------------------------------------------------------

def client_view(line):
    """The client's classification in the vectors' terms (class, fields)."""
    kind, value = _classify(line.encode())
    if kind == "ack":
        return "ack", {"epoch": value}
    if kind == "seq":
        return "seq", {"seq": value}
    if kind == "dropped":
        return "dropped", {"count": value}
    if kind == "heartbeat":
        return "heartbeat", {"time": value}
    if kind == "error":
        return "error", {"reason": value[0], "message": value[1]}
    if kind == "stats":
        return "stats", {"stats": value}
    if kind == "unknown":
        return "unknown_control", {}
    assert kind == "notification"
    return "notification", {}


@pytest.mark.parametrize("vector", vectors("control_lines.json"), ids=vector_id)
def test_control_line_classification(vector):
    kind, fields = client_view(vector["line"])
    assert kind == vector["class"], vector.get("note")
    assert fields == (vector.get("fields") or {}), vector.get("note")
    # Numbers come back as the same JSON type (an integer stays an integer).
    for key, want in (vector.get("fields") or {}).items():
        assert type(fields[key]) is type(want), key


def test_control_lines_what_emit_refuses(sockdir):
    """A publisher refuses (EINVAL) every line the vectors mark `refused`:
    no notification can pose as a control line; the accepted ones reach a
    subscriber as notifications. (emit looks at a line only while someone is
    connected: with nobody, it is dropped at once.)"""
    pub = libnotif.Publisher(os.path.join(sockdir, "emit.sock"))
    sub = libnotif.Subscriber(pub.path, reconnect=False, timeout=10)
    try:
        deadline = time.monotonic() + 10
        while not sub.acked:
            assert sub.recv_line(timeout=0.05) is None
            assert time.monotonic() < deadline, "no acknowledgement"
        wait_subscribers(pub, 1)
        accepted = []
        for vector in vectors("control_lines.json"):
            if vector["emit"] == "refused":
                with pytest.raises(libnotif.NotifError) as err:
                    pub.emit(vector["line"])
                assert err.value.errno == errno.EINVAL, vector["line"]
            else:
                assert vector["emit"] == "accepted"
                assert pub.emit(vector["line"]) == 1, vector["line"]
                accepted.append(json.loads(vector["line"]))
        for want in accepted:
            assert sub.recv(timeout=10) == want
    finally:
        sub.close()
        pub.close()


def test_control_lines_a_subscriber_skips_never_reach_the_application(sockdir):
    """Served by a fake publisher (a plain socket) that writes every control
    vector, the client hands out exactly the `notification` lines, and acts
    on none of the rest but the ack (errors are left out: they end the
    subscription, and are checked above)."""
    path = os.path.join(sockdir, "fake.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    lines = [v for v in vectors("control_lines.json") if v["class"] != "error"]
    with libnotif.Subscriber(path, reconnect=False, timeout=10) as sub:
        conn, _ = server.accept()
        conn.recv(65536)  # the request
        conn.sendall(b'{"notif":{"subscribed":true,"version":"0.1.0"}}\n')
        # A line of the stream after the ack: each vector line (a raw
        # newline inside a malformed one would split it; none has one).
        payload = b"".join(v["line"].encode() + b"\n" for v in lines)
        conn.sendall(payload)
        conn.close()
        got = []
        while True:
            line = sub.recv_line(timeout=10)
            if line is None:
                break
            got.append(line.decode() if isinstance(line, bytes) else line)
    server.close()
    assert got == [v["line"] for v in lines if v["class"] == "notification"]


# -- filters and globs ---------------------------------------------------------

FILTERS = vectors("filters.json")


def local_filter(subscribe):
    return _Filter(subscribe.get("event_types"), subscribe.get("priorities"),
                   subscribe.get("publishers"))


@pytest.mark.parametrize("vector", FILTERS, ids=vector_id)
def test_filter_matches_locally(vector):
    flt = local_filter(vector["subscribe"])
    for case in vector["cases"]:
        assert flt.match(json.loads(case["line"])) == case["match"], case["line"]


@pytest.mark.parametrize("vector", vectors("globs.json"), ids=vector_id)
def test_glob(vector):
    assert bool(_glob(vector["pattern"]).fullmatch(vector["text"])) == vector["match"]
    # And as the publisher's filter of a notification with that event_type.
    flt = _Filter([vector["pattern"]], None, None)
    assert flt.match({"event_type": vector["text"]}) == vector["match"]


def test_filters_through_a_real_publisher(sockdir):
    """Each filter vector as a libnotif.Subscriber's request against a real
    publisher: the subscriber receives exactly the cases that match."""
    pub = libnotif.Publisher(os.path.join(sockdir, "f.sock"))
    subs = []
    try:
        for vector in FILTERS:
            s = vector["subscribe"]
            subs.append(libnotif.Subscriber(pub.path, event_types=s.get("event_types"),
                                            priorities=s.get("priorities"),
                                            publishers=s.get("publishers"),
                                            reconnect=False, timeout=10))
        for sub in subs:
            # The acknowledgement first: from then on the filter is the publisher's.
            deadline = time.monotonic() + 10
            while not sub.acked:
                assert sub.recv_line(timeout=0.05) is None
                assert time.monotonic() < deadline, "no acknowledgement"
        wait_subscribers(pub, len(subs))
        # Every subscriber sees every vector's lines; each checks its own by
        # number (the publisher numbers what it emits from 0, the client's
        # cursor names the line it handed out last).
        numbers, n = [], 0
        for vector in FILTERS:
            mine = []
            for case in vector["cases"]:
                assert pub.emit(case["line"]) == len(subs)
                mine.append(n)
                n += 1
            numbers.append(mine)
        pub.close()  # flushes, then closes every connection
        for vector, sub, mine in zip(FILTERS, subs, numbers):
            got = {}
            while True:
                line = sub.recv_line(timeout=10)
                if line is None:
                    break
                got[int(sub.cursor.partition("-")[2])] = json.loads(line)
            for case, number in zip(vector["cases"], mine):
                assert (number in got) == case["match"], (vector["name"], case["line"])
                if case["match"]:
                    assert got[number] == json.loads(case["line"])
    finally:
        for sub in subs:
            sub.close()
        pub.close()


# -- cursors -------------------------------------------------------------------

CURSORS = vectors("cursors.json")


@pytest.mark.parametrize("vector", CURSORS, ids=vector_id)
def test_cursor_check(vector):
    text = vector["text"]
    if vector["parsed"] == "invalid":
        with pytest.raises(ValueError):
            _check_cursor(text)
        if text:  # Subscriber(after="") means "no cursor" (an empty cursor file)
            with pytest.raises(ValueError):
                libnotif.Subscriber("/nonexistent.sock", after=text)
    else:
        assert _check_cursor(text) == text
        epoch, _, seq = text.partition("-")
        assert {"epoch": epoch, "seq": str(int(seq))} == vector["parsed"]


def test_valid_cursors_resume_against_a_real_publisher(sockdir):
    """A valid cursor of another epoch: acknowledged, then an unknown drop."""
    pub = libnotif.Publisher(os.path.join(sockdir, "c.sock"))
    try:
        for vector in CURSORS:
            if vector["parsed"] == "invalid":
                continue
            with libnotif.Subscriber(pub.path, after=vector["text"], reconnect=False,
                                     timeout=10) as sub:
                deadline = time.monotonic() + 10
                while sub.dropped_unknown == 0:
                    assert sub.recv_line(timeout=0.05) is None
                    assert time.monotonic() < deadline, vector["text"]
                assert sub.acked and sub.dropped_unknown == 1, vector["text"]
    finally:
        pub.close()


# -- request lines -------------------------------------------------------------

def request_bytes(vector):
    line = vector["line"].encode()
    pad_to = vector.get("pad_to")
    if pad_to:
        assert pad_to > len(line) + 1
        line = line[:-1] + b" " * (pad_to - len(line) - 1) + line[-1:]
        assert len(line) + 1 == pad_to
    return line + b"\n"


def first_answer(path, data):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(path)
        try:
            s.sendall(data)
        except BrokenPipeError:
            pass  # the error line may have been written before the close
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, "closed without an answer"
            buf += chunk
        line, _, rest = buf.partition(b"\n")
        body = json.loads(line)["notif"]
        if body.get("subscribed") is True:
            return {"ack": {"cursor": "epoch" in body}}
        if "error" in body:
            while True:  # then the connection is closed
                chunk = rest or s.recv(65536)
                if not chunk:
                    break
                assert not rest, "more after the error line: %r" % rest
            return {"error": {"reason": body.get("reason")}}
        if isinstance(body.get("stats"), dict):
            return {"stats": True}
        raise AssertionError("unexpected answer %r" % line)
    finally:
        s.close()


def test_request_lines_against_a_real_publisher(sockdir):
    pub = libnotif.Publisher(os.path.join(sockdir, "r.sock"))
    try:
        for vector in vectors("requests.json"):
            assert first_answer(pub.path, request_bytes(vector)) == vector["expect"], \
                vector["name"]
    finally:
        pub.close()
