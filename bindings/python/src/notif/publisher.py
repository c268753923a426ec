"""Publisher: the ctypes binding of notif_open_with / notif_emit / notif_close."""

import ctypes
import errno
import json
import os
import threading
import weakref

from . import _lib
from .errors import NotifError

SLOW_DROP = 0
SLOW_DISCONNECT = 1
_SLOW_POLICIES = {"drop": SLOW_DROP, "disconnect": SLOW_DISCONNECT,
                  SLOW_DROP: SLOW_DROP, SLOW_DISCONNECT: SLOW_DISCONNECT}


def _error(code, filename=None):
    """A NotifError for a failed call; read the message at once (same thread)."""
    message = _lib.last_error() or _lib.strerror(code)
    return NotifError(code, message, filename)


def parse_mode(mode):
    """0o660, 432, "0660", "660" or "0o660" -> the int permission bits."""
    if isinstance(mode, bool):
        raise TypeError("mode must be an int or an octal string, not bool")
    if isinstance(mode, int):
        return mode
    if isinstance(mode, str):
        text = mode.strip().lower()
        if text.startswith("0o"):
            text = text[2:]
        try:
            return int(text, 8)
        except ValueError:
            raise ValueError("mode %r is not an octal number such as 0600" % (mode,)) from None
    raise TypeError("mode must be an int or an octal string, not %s" % type(mode).__name__)


def _encode_path(path):
    if isinstance(path, bytes):
        return path
    return os.fsencode(path)


def _close_handle(lib, handle):
    lib.notif_close(handle)


class Publisher:
    """A notif publisher bound at ``path`` (a file path or ``@name``).

    Keyword options map to notif_options_set_*; None keeps the library's default.
    ``mode`` is an int (0o660) or an octal string ("0660"); ``group`` a name or id;
    ``slow_policy`` "drop"/"disconnect" or SLOW_DROP/SLOW_DISCONNECT.

    emit() may be called from several threads at once; close() waits for
    emits in progress, and is idempotent. A publisher that is garbage
    collected or still open at interpreter exit is closed.
    """

    def __init__(self, path, *, mode=None, group=None, subscriber_buffer=None,
                 max_message=None, max_subscribers=None, linger_ms=None,
                 slow_policy=None, backlog=None):
        lib = _lib.load()
        self.path = path
        self._lib = lib
        self._cond = threading.Condition(threading.Lock())
        self._inflight = 0
        self._closed = True
        opts = lib.notif_options_new()
        if not opts:
            raise MemoryError("notif_options_new failed")
        try:
            def setopt(name, fn, value):
                if value is None:
                    return
                rc = fn(opts, value)
                if rc < 0:
                    raise NotifError(-rc, "%s=%r: %s" % (
                        name, value, _lib.last_error() or _lib.strerror(rc)))

            if mode is not None:
                setopt("mode", lib.notif_options_set_mode, parse_mode(mode))
            if group is not None:
                setopt("group", lib.notif_options_set_group, str(group).encode())
            setopt("subscriber_buffer", lib.notif_options_set_subscriber_buffer, subscriber_buffer)
            setopt("max_message", lib.notif_options_set_max_message, max_message)
            setopt("max_subscribers", lib.notif_options_set_max_subscribers, max_subscribers)
            setopt("linger_ms", lib.notif_options_set_linger_ms, linger_ms)
            if slow_policy is not None:
                if slow_policy not in _SLOW_POLICIES:
                    raise ValueError("slow_policy must be 'drop' or 'disconnect', not %r"
                                     % (slow_policy,))
                setopt("slow_policy", lib.notif_options_set_slow_policy,
                       _SLOW_POLICIES[slow_policy])
            setopt("backlog", lib.notif_options_set_backlog, backlog)
            handle = lib.notif_open_with(_encode_path(path), opts)
            if not handle:
                code = ctypes.get_errno() or errno.EIO
                raise _error(code, path)
        finally:
            lib.notif_options_free(opts)
        self._handle = handle
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_handle, lib, handle)

    # -- emitting -------------------------------------------------------------
    def emit(self, data):
        """Queue one notification: bytes or str holding one JSON object, or a
        dict (serialised as compact JSON). Returns the number of subscribers
        connected (0: nobody listens, dropped without being looked at).
        Raises NotifError: EINVAL (not one JSON object), EMSGSIZE, EAGAIN
        (backlog full, dropped and counted), EBADF (closed, or used in a child
        after fork())."""
        if isinstance(data, dict):
            data = json.dumps(data, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode("utf-8", "surrogatepass")
        elif isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        elif not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("emit() takes bytes, str or dict, not %s" % type(data).__name__)
        data = bytes(data)
        with self._cond:
            if self._closed:
                raise NotifError(errno.EBADF, "the publisher on %s is closed" % (self.path,))
            self._inflight += 1
        try:
            rc = self._lib.notif_emit_len(self._handle, data, len(data))
            if rc < 0:
                raise _error(rc)
            return rc
        finally:
            with self._cond:
                self._inflight -= 1
                if self._inflight == 0:
                    self._cond.notify_all()

    def stats(self):
        """Every notif_stats counter, as a dict."""
        out = _lib.NotifStats()
        with self._cond:
            if self._closed:
                raise NotifError(errno.EBADF, "the publisher on %s is closed" % (self.path,))
            self._inflight += 1
        try:
            rc = self._lib.notif_get_stats(self._handle, ctypes.byref(out), ctypes.sizeof(out))
            if rc < 0:
                raise _error(rc)
        finally:
            with self._cond:
                self._inflight -= 1
                if self._inflight == 0:
                    self._cond.notify_all()
        return {name: getattr(out, name) for name, _ in out._fields_}

    # -- closing --------------------------------------------------------------
    @property
    def closed(self):
        return self._closed

    def close(self):
        """Flush (up to linger_ms), remove the socket file, stop. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            while self._inflight:
                self._cond.wait()
        self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<notif.Publisher %r%s>" % (self.path, " closed" if self._closed else "")
