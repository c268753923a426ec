"""Subscriber: a plain-socket client of the notif wire protocol (no libnotif
needed), with the subscription protocol of docs/subscription-protocol.md."""

import errno
import json
import os
import re
import select
import socket
import string
import time

from .errors import NotifError, refusal

BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0
_RECV_SIZE = 256 * 1024
# Longest line accepted from a publisher (its own limit is 64 MiB at most), as
# the Rust, Go and C clients and the notif tool do.
MAX_LINE = 64 << 20
# How long writing the request may take.
_IO_TIMEOUT = 5.0
# connect() errors that mean "no publisher there (yet)": retried.
_RETRIED = (errno.ENOENT, errno.ECONNREFUSED)
_TIMEOUT = object()
_EOF = object()
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# A cursor: EPOCH-SEQ, 16 lowercase hexadecimal digits, a dash, a decimal number.
_CURSOR = re.compile(r"[0-9a-f]{16}-[0-9]{1,20}")
_U64_MAX = (1 << 64) - 1


def _check_cursor(cursor):
    if not isinstance(cursor, str) or not _CURSOR.fullmatch(cursor) \
            or int(cursor.partition("-")[2]) > _U64_MAX:
        raise ValueError("after=%r is not a cursor (EPOCH-SEQ: 16 hexadecimal digits, a dash, "
                         "a number)" % (cursor,))
    return cursor


def _address(path):
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if path.startswith("@"):
        return "\0" + path[1:]
    return path


def _not_accepting(path):
    return ("%s accepts no connection (its listen backlog is full: a stuck publisher, "
            "or not a notif publisher)" % (path,))


def _glob(pattern):
    if not isinstance(pattern, str):
        raise TypeError("patterns are strings, not %r" % (pattern,))
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _check_list(name, values):
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    values = list(values)
    if not values:
        raise ValueError("%s: an empty list could only match nothing; omit it instead" % name)
    for v in values:
        if not isinstance(v, str):
            raise TypeError("%s: %r is not a string" % (name, v))
    return values


# A control line is one whose first member is "notif": the publisher compacts
# every line and refuses notifications that start so.
_CONTROL_PREFIX = b'{"notif":'
# Error reasons after which the connection is merely lost: reconnect.
_TRANSIENT = ("too_slow", "memory")


_EPOCH = re.compile(r"[0-9a-f]{16}")
# The reasons a client knows; any other (or none) is acted on as bad_request.
_REASONS = ("bad_request", "request_timeout", "denied", "full", "too_slow", "memory",
            "too_costly")


def _count(value):
    """A JSON integer >= 0 (never a bool), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _classify(line):
    """How a line read from a publisher is taken (tests/protocol-vectors/
    control_lines.json is its specification): ("notification", None) for a
    line handed to the application, else one of ("ack", epoch or None),
    ("seq", n), ("dropped", n or "unknown"), ("heartbeat", t),
    ("error", (reason, message)), ("stats", dict) and ("unknown", None), a
    control line this client does not understand or cannot read: skipped."""
    if not line.startswith(_CONTROL_PREFIX):
        return "notification", None
    try:
        obj = json.loads(line)
    except ValueError:
        return "unknown", None
    body = obj.get("notif") if isinstance(obj, dict) else None
    if not isinstance(body, dict):
        return "unknown", None
    if body.get("subscribed") is True:
        epoch = body.get("epoch")
        return "ack", epoch if isinstance(epoch, str) and _EPOCH.fullmatch(epoch) else None
    if _count(body.get("seq")) is not None:
        return "seq", body["seq"]
    dropped = body.get("dropped")
    if _count(dropped) is not None or dropped == "unknown":
        return "dropped", dropped
    heartbeat = body.get("heartbeat")
    if isinstance(heartbeat, (int, float)) and not isinstance(heartbeat, bool):
        return "heartbeat", heartbeat
    message = body.get("error")
    if isinstance(message, str):
        reason = body.get("reason")
        return "error", (reason if reason in _REASONS else "bad_request", message)
    if isinstance(body.get("stats"), dict):
        return "stats", body["stats"]
    return "unknown", None


class _Filter:
    """The publisher's filter, applied locally to what arrives before the ack."""

    def __init__(self, event_types, priorities, publishers):
        self.event_types = [_glob(p) for p in event_types] if event_types else None
        self.priorities = ({p.translate(_ASCII_LOWER) for p in priorities}
                           if priorities else None)
        self.publishers = [_glob(p) for p in publishers] if publishers else None

    @staticmethod
    def _globs(patterns, value):
        return isinstance(value, str) and any(p.fullmatch(value) for p in patterns)

    def match(self, notification):
        if not isinstance(notification, dict):
            return False
        if self.event_types is not None and not self._globs(
                self.event_types, notification.get("event_type")):
            return False
        if self.priorities is not None:
            prio = notification.get("priority")
            if not isinstance(prio, str) or prio.translate(_ASCII_LOWER) not in self.priorities:
                return False
        if self.publishers is not None and not self._globs(
                self.publishers, notification.get("publisher_id")):
            return False
        return True


class Subscriber:
    """Reads the notifications of the publisher at ``path`` (a file path or
    ``@name``).

    Iterating yields each notification as a dict; ``lines()`` yields the raw
    lines (bytes, without the newline). Control lines (ack, drop markers,
    heartbeats) are never yielded.

    Every connection writes a request line: ``event_types``/``publishers``
    (lists of globs, ``*`` is the only wildcard), ``priorities`` (compared
    ignoring ASCII case), ``markers=True`` (drops are reported and added up
    in ``dropped``), ``heartbeat`` (seconds, 0.1 to 3600; the last
    heartbeat's publisher time is in ``last_heartbeat``), and always
    ``"cursor": true``. Notifications that arrive before the publisher's
    acknowledgement (emitted between the connection and the request) are
    filtered here.

    Cursors: ``cursor`` is the cursor of the last notification handed out
    (None before the first; ``after`` until then if given), an opaque string
    to save. ``after=cursor`` resumes after that notification: the publisher
    first sends every later one it still holds (its replay ring) that passes
    the filter, then the live stream, with no gap and no duplicate.
    ``replay=True`` starts with everything the publisher's ring holds. What
    the publisher no longer holds is reported as a drop, whether or not
    ``markers`` was asked for: added to ``dropped``, or, when the count is not
    known (the publisher restarted since: a cursor of another epoch), counted
    in ``dropped_unknown`` (the number of such reports).

    With ``reconnect=True`` (the default) the subscriber survives the
    publisher's absence and restarts: it retries with a back-off of 100 ms
    doubling to 5 s and counts re-established connections in ``reconnects``.
    It resumes after ``cursor``, so when the publisher's ring still holds what
    was emitted meanwhile (a disconnection for being too slow, say) nothing is
    missed, and what it no longer holds is counted as above. With
    ``reconnect=False``, failing to connect raises NotifError and iteration
    ends at end-of-file.

    ``timeout`` (seconds, None: forever) bounds each wait: iteration raises
    TimeoutError when nothing arrives in time; ``recv(timeout)`` returns None.
    No call waits on the publisher beyond that: connecting never blocks (a
    socket whose listen backlog is full, one that never accepts, fails with
    EAGAIN at once: retried with ``reconnect``, and said in ``connect_error``
    and in the TimeoutError), and a line over 64 MiB without a newline drops
    the connection with NotifError (EMSGSIZE; with ``reconnect`` the next call
    connects again), as the other clients do; each line is scanned once.
    One thread at a time.
    """

    def __init__(self, path, event_types=None, priorities=None, publishers=None,
                 markers=False, heartbeat=None, reconnect=True, timeout=None,
                 after=None, replay=False):
        self.path = path
        self.timeout = timeout
        self.reconnect = reconnect
        self._markers = bool(markers)
        if after is not None and after != "":
            after = _check_cursor(after)
            if replay:
                raise ValueError("after and replay exclude each other")
        else:
            after = None
        # The last notification handed out: (epoch, number); the cursor
        # string is only made when asked for.
        self._cur_epoch = self._cur_seq = None
        if after is not None:
            epoch, _, seq = after.partition("-")
            self._cur_epoch, self._cur_seq = epoch, int(seq)
        # Where the next connection resumes: the cursor, or, after a seq line,
        # just before the notification it announced (what came before was
        # handed out, left out by the filter or reported dropped).
        self._resume = after
        self._replay = bool(replay)
        # An older publisher refuses "cursor" (an unknown key to it): then ask
        # for what the options ask, as before cursors (not with after/replay:
        # such a publisher cannot do them).
        self._legacy = False
        self._user_resume = after is not None or self._replay
        self._cursors_seen = False
        self.dropped = 0
        self.dropped_unknown = 0
        self.reconnects = 0
        self.acked = False
        self.last_heartbeat = None
        event_types = _check_list("event_types", event_types)
        priorities = _check_list("priorities", priorities)
        publishers = _check_list("publishers", publishers)
        request = {}
        subscribe = {}
        if event_types:
            subscribe["event_types"] = event_types
        if priorities:
            subscribe["priorities"] = priorities
        if publishers:
            subscribe["publishers"] = publishers
        if subscribe:
            request["subscribe"] = subscribe
        if markers:
            request["markers"] = True
        if heartbeat is not None:
            if isinstance(heartbeat, bool) or not 0.1 <= float(heartbeat) <= 3600:
                raise ValueError("heartbeat must be between 0.1 and 3600 seconds")
            request["heartbeat_s"] = heartbeat
        request["cursor"] = True
        self._request_base = request
        self._resuming = False  # this connection asked for after or replay
        self._epoch = None      # this connection's, from the acknowledgement
        self._next_seq = None   # the number of the next notification line
        if len(self._request_line()) > 64 * 1024:
            raise ValueError("the subscription request is over the publisher's 64 KiB")
        self._filter = _Filter(event_types, priorities, publishers) if subscribe else None
        self._address = _address(path)
        self._sock = None
        self._buf = bytearray()
        # self._buf[:self._scanned] holds no newline.
        self._scanned = 0
        # Why the last connection attempt failed (None once connected).
        self.connect_error = None
        self._closed = False
        self._failed = None
        self._connected_once = False
        self._backoff = BACKOFF_INITIAL
        self._next_attempt = 0.0
        self._try_connect(first=True)

    # -- connection -----------------------------------------------------------
    def _resume_point(self):
        return self._resume if self._resume is not None else self.cursor

    def _request_line(self):
        """This connection's request: resume after ``cursor``, or from the ring."""
        request = dict(self._request_base)
        if self._legacy:
            del request["cursor"]
            if not request:
                return None  # the plain stream: nothing to write
        elif self._resume_point() is not None:
            request["after"] = self._resume_point()
        elif self._replay:
            request["replay"] = True
        return json.dumps(request, separators=(",", ":")).encode() + b"\n"

    def _try_connect(self, first=False):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            # Never waits in connect(): a full listen backlog fails at once
            # (EAGAIN); writing the request is bounded too.
            sock.settimeout(_IO_TIMEOUT)
            sock.connect(self._address)
            # Resuming: the publisher accounts for everything after the
            # cursor in its numbered stream (sent, or counted as dropped).
            self._resuming = not self._legacy and (
                self._resume_point() is not None or self._replay)
            self._epoch = self._next_seq = None
            request = self._request_line()
            try:
                if request is not None:
                    sock.sendall(request)
            except (BrokenPipeError, ConnectionResetError):
                # It hung up already, maybe after saying why (denied,
                # full): the read finds that line, or the end of file.
                pass
        except OSError as exc:
            sock.close()
            code = exc.errno or errno.ETIMEDOUT
            if code == errno.EAGAIN:
                self.connect_error = _not_accepting(self.path)
                if first and not self.reconnect:
                    raise NotifError(code, self.connect_error, self.path) from None
                self._schedule_retry()
                return False
            self.connect_error = "cannot connect to %s: %s" % (self.path, os.strerror(code))
            if code in _RETRIED or code in (errno.EPIPE, errno.ECONNRESET):
                if first and not self.reconnect:
                    raise NotifError(code, "cannot connect to %s: %s"
                                     % (self.path, os.strerror(code)), self.path) from None
                self._schedule_retry()
                return False
            if first or not self.reconnect:
                raise NotifError(code, "cannot connect to %s: %s"
                                 % (self.path, os.strerror(code)), self.path) from None
            self._schedule_retry()
            return False
        sock.setblocking(False)
        self._sock = sock
        self.connect_error = None
        self._buf.clear()
        self._scanned = 0
        self.acked = False
        self._backoff = BACKOFF_INITIAL
        if self._connected_once:
            self.reconnects += 1
        self._connected_once = True
        return True

    def _schedule_retry(self):
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _lost(self):
        """End of file or reset: drop the connection (and any incomplete line)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()
        self._scanned = 0
        self.acked = False
        self._backoff = BACKOFF_INITIAL
        self._schedule_retry()

    @property
    def cursor(self):
        """The cursor of the last notification handed out (None before the
        first; ``after`` until then): pass it as ``after=`` to resume after it."""
        if self._cur_epoch is None:
            return None
        return "%s-%d" % (self._cur_epoch, self._cur_seq)

    @property
    def connected(self):
        return self._sock is not None

    def fileno(self):
        return self._sock.fileno() if self._sock is not None else -1

    # -- reading --------------------------------------------------------------
    def _read_line(self, deadline):
        """The next complete line, _TIMEOUT or _EOF."""
        while True:
            if self._closed:
                return _EOF
            # Only what arrived since the last look is scanned.
            nl = self._buf.find(b"\n", self._scanned)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                self._scanned = 0
                return line
            self._scanned = len(self._buf)
            if self._scanned > MAX_LINE:
                self._lost()
                err = NotifError(errno.EMSGSIZE, "a line from the publisher at %s is over %d MiB "
                                 "without a newline; dropped the connection"
                                 % (self.path, MAX_LINE >> 20), self.path)
                if not self.reconnect:
                    self._failed = err
                raise err
            now = time.monotonic()
            if self._sock is None:
                if not self.reconnect and self._connected_once:
                    return _EOF
                wait = self._next_attempt - now
                if deadline is not None and deadline - now < wait:
                    time.sleep(max(0.0, deadline - now))
                    return _TIMEOUT
                if wait > 0:
                    time.sleep(wait)
                self._try_connect()
                continue
            remaining = None if deadline is None else max(0.0, deadline - now)
            ready, _, _ = select.select([self._sock], [], [], remaining)
            if not ready:
                return _TIMEOUT
            try:
                data = self._sock.recv(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self._lost()
                if not self.reconnect:
                    return _EOF
                continue
            self._buf += data

    def _handle_control(self, kind, value):
        if kind == "ack":
            self.acked = True
            self._epoch = value
            self._cursors_seen = self._cursors_seen or self._epoch is not None
        elif kind == "seq":
            if self.acked:
                self._next_seq = value
                if value > 0 and self._epoch is not None:
                    self._resume = "%s-%d" % (self._epoch, value - 1)
                    self._replay = False
        elif kind == "dropped":
            if self._markers or self._resuming:
                if value == "unknown":
                    self.dropped_unknown += 1
                else:
                    self.dropped += value
        elif kind == "heartbeat":
            self.last_heartbeat = value
        elif kind == "error":
            reason, message = value
            if (not self.acked and not self._legacy and not self._user_resume
                    and not self._cursors_seen and reason == "bad_request"
                    and '"cursor"' in message):
                # A publisher from before cursors: the same connection again,
                # without them (not a reconnection: nothing was missed).
                self._legacy = True
                self._sock.close()
                self._sock = None
                self._buf.clear()
                self._connected_once = False
                self._try_connect(first=not self.reconnect)
                return
            if reason in _TRANSIENT:
                # Disconnected for being too slow or for the publisher's memory
                # budget: a lost connection like any other.
                self._lost()
                return
            self._failed = refusal(message, reason, self.path)
            self.close()
            raise self._failed

    def _next(self, timeout, parse):
        if self._failed is not None:
            raise self._failed
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            line = self._read_line(deadline)
            if line is _TIMEOUT or line is _EOF:
                return line
            # Never a notification, on the plain stream too: a publisher that
            # refuses us (denied, full) says so on one.
            kind, value = _classify(line)
            if kind != "notification":
                self._handle_control(kind, value)
                continue
            obj = None
            if not self.acked:
                # Emitted before the publisher read the request: unnumbered
                # and unfiltered. When resuming, the numbered stream after the
                # acknowledgement holds them again (or counts them as
                # dropped): skip them. Otherwise filter here.
                if self._resuming:
                    continue
                if self._filter is not None:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if not self._filter.match(obj):
                        continue
            elif self._next_seq is not None and self._epoch is not None:
                self._cur_epoch = self._epoch
                self._cur_seq = self._next_seq
                self._next_seq += 1
                self._resume = None  # the cursor, made on the next connection
                # Handed out from here on: a reconnection resumes after it.
                self._replay = False
            if parse:
                return obj if obj is not None else json.loads(line)
            return line

    def recv(self, timeout=None):
        """The next notification as a dict, or None if none came within
        ``timeout`` seconds (None: wait forever) or the stream ended."""
        item = self._next(timeout, True)
        return None if item is _TIMEOUT or item is _EOF else item

    def recv_line(self, timeout=None):
        """Like recv(), the raw line (bytes, no newline)."""
        item = self._next(timeout, False)
        return None if item is _TIMEOUT or item is _EOF else item

    def _iterate(self, parse):
        while True:
            item = self._next(self.timeout, parse)
            if item is _EOF:
                return
            if item is _TIMEOUT:
                why = "" if self.connect_error is None else " (%s)" % self.connect_error
                raise TimeoutError("no notification from %s within %ss%s"
                                   % (self.path, self.timeout, why))
            yield item

    def __iter__(self):
        return self._iterate(True)

    def lines(self):
        """Iterates over raw notification lines (bytes, without the newline)."""
        return self._iterate(False)

    # -- closing --------------------------------------------------------------
    def close(self):
        self._closed = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    @property
    def closed(self):
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<libnotif.Subscriber %r%s>" % (self.path, " closed" if self._closed else "")


def request_stats(path, timeout=5.0):
    """Asks the publisher at ``path`` for its counters over the socket
    ({"stats":true}); returns the dict (every notif_stats field, version, path).

    Raises SubscriptionDenied (EACCES) when its allow-lists refuse this
    process, PublisherFull (EUSERS) when an older publisher counts the request
    against max_subscribers, SubscriptionError (EPROTO) when it refuses the
    request, NotifError (EPROTO) when it closes without answering, NotifError
    (ETIMEDOUT) when ``timeout`` (which bounds the whole exchange, connecting
    included) passes first: a socket that accepts no connection (its listen
    backlog full) or never answers."""
    deadline = time.monotonic() + timeout

    def left():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NotifError(errno.ETIMEDOUT, "%s: no answer to the stats request within %ss: "
                             "not a notif publisher, or a stuck one?" % (path, timeout), path)
        return remaining

    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            # connect() never waits: a full listen backlog fails at once
            # (EAGAIN), tried again until the deadline.
            sock.settimeout(left())
            sock.connect(_address(path))
            break
        except BlockingIOError as exc:
            sock.close()
            if exc.errno != errno.EAGAIN:
                raise
            if time.monotonic() + 0.05 >= deadline:
                raise NotifError(errno.ETIMEDOUT, "%s within %ss" % (_not_accepting(path), timeout),
                                 path) from None
            time.sleep(0.05)
        except BaseException:
            sock.close()
            raise
    try:
        try:
            sock.settimeout(left())
            sock.sendall(b'{"stats":true}\n')
        except (BrokenPipeError, ConnectionResetError):
            pass  # it hung up already, maybe after saying why: read that
        except socket.timeout:
            left()
            raise
        buf = bytearray()
        scanned = 0
        while True:
            sock.settimeout(left())
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            except socket.timeout:
                left()  # raises: the deadline passed
                continue
            if not data:
                break
            buf += data
            while True:
                nl = buf.find(b"\n", scanned)
                if nl < 0:
                    scanned = len(buf)
                    break
                line = bytes(buf[:nl])
                del buf[:nl + 1]
                scanned = 0
                kind, value = _classify(line)
                if kind == "stats":
                    return value
                if kind == "error":
                    raise refusal(value[1], value[0], path)
                # else a notification sent before our request was read
            if len(buf) > MAX_LINE:
                raise NotifError(errno.EMSGSIZE, "%s: a line over %d MiB without a newline: not "
                                 "a notif publisher?" % (path, MAX_LINE >> 20), path)
        raise NotifError(errno.EPROTO, "%s closed the connection without answering the stats "
                         "request: not a notif publisher?" % (path,), path)
    finally:
        sock.close()
