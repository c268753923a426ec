"""Publisher: the ctypes binding of notif_open_with / notif_open_fd /
notif_emit / notif_close."""

import ctypes
import errno
import grp
import json
import os
import pwd
import threading
import weakref

from . import _lib
from .errors import NotifError, NotSocketActivated

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


# uid_t/gid_t are 32 bits; (uid_t)-1 means "no id" to the kernel, never a real one.
_ID_MAX = 0xFFFFFFFE


def _resolve_ids(what, values, kind, lookup):
    if values is None:
        return []
    if isinstance(values, (str, bytes, int)):
        raise TypeError("%s takes an iterable of %s names or ids, not a single %s: "
                        "write [%r]" % (what, kind, type(values).__name__, values))
    ids = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError("%s: %r is neither an id (int) nor a %s name (str)"
                            % (what, value, kind))
        if isinstance(value, str):
            text = value.strip()
            if text.isascii() and text.isdigit():
                number = int(text)
            else:
                try:
                    number = lookup(text)
                except KeyError:
                    raise NotifError(errno.ENOENT, "%s: no such %s %r" % (what, kind, value)) \
                        from None
        else:
            number = value
        if not 0 <= number <= _ID_MAX:
            raise ValueError("%s: %r is not a valid %s id (0..%d)" % (what, value, kind, _ID_MAX))
        ids.append(number)
    return ids


def resolve_uids(values, what="allow_uids"):
    """User ids (ints), user names and decimal strings -> a list of uids.
    Unknown names raise NotifError(ENOENT) naming `what`."""
    return _resolve_ids(what, values, "user", lambda name: pwd.getpwnam(name).pw_uid)


def resolve_gids(values, what="allow_gids"):
    """Group ids (ints), group names and decimal strings -> a list of gids.
    Unknown names raise NotifError(ENOENT) naming `what`."""
    return _resolve_ids(what, values, "group", lambda name: grp.getgrnam(name).gr_gid)


_OPTION_NAMES = ("mode", "group", "subscriber_buffer", "memory_limit", "max_message",
                 "max_subscribers",
                 "linger_ms", "slow_policy", "backlog", "allow_uids", "allow_gids",
                 "replay_bytes")

SD_LISTEN_FDS_START = 3
_adopted_lock = threading.Lock()
_adopted = set()  # (pid, fd) taken by from_systemd() in this process


def systemd_listen_fd(name=None):
    """The descriptor systemd passed to this process (socket activation):
    the first one (3), or the one whose FileDescriptorName= is `name`
    (LISTEN_FDNAMES). Raises NotSocketActivated when there is none."""
    hint = "(start the service from a systemd .socket unit, or open a path with Publisher(path))"
    pid_text = os.environ.get("LISTEN_PID")
    fds_text = os.environ.get("LISTEN_FDS")
    if pid_text is None or fds_text is None:
        raise NotSocketActivated(
            errno.ENOENT, "not socket-activated: LISTEN_PID and LISTEN_FDS are not both set "
            + hint)
    try:
        pid = int(pid_text)
        count = int(fds_text)
    except ValueError:
        raise NotSocketActivated(
            errno.ENOENT, "not socket-activated: LISTEN_PID=%r or LISTEN_FDS=%r is not a number"
            % (pid_text, fds_text)) from None
    if pid != os.getpid():
        raise NotSocketActivated(
            errno.ENOENT, "not socket-activated: LISTEN_PID=%d is another process (this is "
            "%d): the sockets were passed to it, not to this one" % (pid, os.getpid()))
    if count < 1:
        raise NotSocketActivated(
            errno.ENOENT, "not socket-activated: LISTEN_FDS=%d, no socket was passed" % count)
    if name is None:
        return SD_LISTEN_FDS_START
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    for index, passed in enumerate(names[:count]):
        if passed == name:
            return SD_LISTEN_FDS_START + index
    raise NotSocketActivated(
        errno.ENOENT, "socket-activated, but no socket is named %r (LISTEN_FDNAMES=%r; "
        "set FileDescriptorName= in the .socket unit)"
        % (name, os.environ.get("LISTEN_FDNAMES", "")))


class Publisher:
    """A notif publisher bound at ``path`` (a file path or ``@name``).

    Keyword options map to notif_options_set_*; None keeps the library's default.
    ``mode`` is an int (0o660) or an octal string ("0660"); ``group`` a name or id;
    ``slow_policy`` "drop"/"disconnect" or SLOW_DROP/SLOW_DISCONNECT.
    ``allow_uids`` / ``allow_gids`` are iterables of ids (ints) or names (resolved
    now with pwd/grp; unknown: NotifError ENOENT): when either is given, only
    connections whose peer uid, or primary or supplementary gid, is listed may
    subscribe; the others are closed at accept and counted in stats()["denied"].
    Empty or None: anyone who can open the socket file may subscribe.
    ``replay_bytes`` (notif_options_set_replay; default 0: off) keeps the most
    recent notifications, up to that many bytes, in a replay ring whether or
    not anyone listens, so that a subscriber that reconnects or restarts
    resumes after its cursor without loss (``Subscriber(after=...)``) or reads
    them (``Subscriber(replay=True)``); it counts in ``memory_limit`` and may
    be at most half of it.

    ``Publisher.from_fd(fd)`` and ``Publisher.from_systemd()`` serve a socket
    that is already listening instead.

    emit() may be called from several threads at once; close() waits for
    emits in progress, and is idempotent. A publisher that is garbage
    collected or still open at interpreter exit is closed.
    """

    def __init__(self, path, *, mode=None, group=None, subscriber_buffer=None,
                 memory_limit=None, max_message=None, max_subscribers=None, linger_ms=None,
                 slow_policy=None, backlog=None, allow_uids=None, allow_gids=None,
                 replay_bytes=None):
        options = dict(mode=mode, group=group, subscriber_buffer=subscriber_buffer,
                       memory_limit=memory_limit, max_message=max_message, max_subscribers=max_subscribers,
                       linger_ms=linger_ms, slow_policy=slow_policy, backlog=backlog,
                       allow_uids=allow_uids, allow_gids=allow_gids, replay_bytes=replay_bytes)
        encoded = _encode_path(path)
        self._open(path, None, options, lambda lib, opts: lib.notif_open_with(encoded, opts))

    @classmethod
    def from_fd(cls, fd, **options):
        """Serves ``fd``, a Unix stream socket that is already bound and listening
        (one the program made, or one systemd passed). Takes the keyword options
        of Publisher() except that ``mode`` and ``group`` do not apply (notif did
        not create the socket; they are ignored).

        On success the publisher owns ``fd``: close() (or garbage collection)
        closes it, and never removes the socket file. On failure it raises
        NotifError (EBADF: not a descriptor, ENOTSOCK: not a socket, EINVAL: not
        a listening Unix stream socket, or a bad option) and ``fd`` stays open
        and the caller's (O_NONBLOCK and FD_CLOEXEC may have been set on it).
        Pass an int: for a socket.socket, give ``sock.detach()``.
        """
        unknown = sorted(set(options) - set(_OPTION_NAMES))
        if unknown:
            raise TypeError("from_fd() got unexpected keyword argument(s): %s"
                            % ", ".join(unknown))
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError("from_fd() takes a descriptor number (int), not %s%s" % (
                type(fd).__name__,
                ": pass sock.detach() to hand the socket over" if hasattr(fd, "fileno") else ""))
        if not 0 <= fd <= 0x7FFFFFFF:
            raise NotifError(errno.EBADF, "%d is not a descriptor" % fd)
        self = cls.__new__(cls)
        self._open("fd %d" % fd, fd, options, lambda lib, opts: lib.notif_open_fd(fd, opts))
        return self

    @classmethod
    def from_systemd(cls, name=None, **options):
        """Serves the listening socket systemd passed to this process (socket
        activation: LISTEN_PID is this process, LISTEN_FDS >= 1): descriptor 3,
        or with ``name`` the one whose FileDescriptorName= is ``name``
        (LISTEN_FDNAMES). Options and ownership as from_fd(); set the socket's
        mode and group in the .socket unit (SocketMode=, SocketGroup=).

        Raises NotSocketActivated (a NotifError, errno ENOENT) when no socket
        was passed to this process, and NotifError EBUSY if this process
        already adopted that descriptor. The environment is left as it is.
        """
        fd = systemd_listen_fd(name)
        key = (os.getpid(), fd)
        with _adopted_lock:
            if key in _adopted:
                raise NotifError(errno.EBUSY, "descriptor %d from systemd is already served "
                                 "by a Publisher of this process" % fd)
            publisher = cls.from_fd(fd, **options)
            _adopted.add(key)
        return publisher

    def _open(self, name, fd, options, call):
        lib = _lib.load()
        self.path = name
        self.fd = fd
        # Bytes of the replay ring (0: none). With a ring, every notification
        # is emitted, subscribers or not: the ring keeps it (should_emit()).
        self.replay_bytes = int(options.get("replay_bytes") or 0)
        self._lib = lib
        self._guard = threading.Lock()  # entered directly on the fast paths
        self._cond = threading.Condition(self._guard)
        self._inflight = 0
        self._closed = True
        allow_uids = resolve_uids(options.get("allow_uids"))
        allow_gids = resolve_gids(options.get("allow_gids"))
        opts = lib.notif_options_new()
        if not opts:
            raise MemoryError("notif_options_new failed")
        try:
            def setopt(name, fn, value, shown=None):
                if value is None:
                    return
                rc = fn(opts, value)
                if rc < 0:
                    # `shown`: the value as the caller wrote it (text, not bytes).
                    raise NotifError(-rc, "%s=%r: %s" % (
                        name, value if shown is None else shown,
                        _lib.last_error() or _lib.strerror(rc)))

            mode = options.get("mode")
            group = options.get("group")
            slow_policy = options.get("slow_policy")
            if mode is not None:
                setopt("mode", lib.notif_options_set_mode, parse_mode(mode))
            if group is not None:
                setopt("group", lib.notif_options_set_group, str(group).encode(), str(group))
            for key in ("subscriber_buffer", "memory_limit", "max_message", "max_subscribers", "linger_ms",
                        "backlog"):
                setopt(key, getattr(lib, "notif_options_set_" + key), options.get(key))
            setopt("replay_bytes", lib.notif_options_set_replay, options.get("replay_bytes"))
            if slow_policy is not None:
                if slow_policy not in _SLOW_POLICIES:
                    raise ValueError("slow_policy must be 'drop' or 'disconnect', not %r"
                                     % (slow_policy,))
                setopt("slow_policy", lib.notif_options_set_slow_policy,
                       _SLOW_POLICIES[slow_policy])
            for uid in allow_uids:
                setopt("allow_uids", lib.notif_options_allow_uid, uid)
            for gid in allow_gids:
                setopt("allow_gids", lib.notif_options_allow_gid, gid)
            handle = call(lib, opts)
            if not handle:
                code = ctypes.get_errno() or errno.EIO
                raise _error(code, name if fd is None else None)
        finally:
            lib.notif_options_free(opts)
        self._handle = handle
        self._handle_arg = ctypes.c_void_p(handle)
        self._subscribers_fn, self._skip_fn = _lib.fast()
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
        guard = self._guard  # the Condition's lock, entered without its Python wrapper
        with guard:
            if self._closed:
                raise NotifError(errno.EBADF, "the publisher on %s is closed" % (self.path,))
            self._inflight += 1
        try:
            rc = self._lib.notif_emit_len(self._handle, data, len(data))
            if rc < 0:
                raise _error(rc)
            return rc
        finally:
            with guard:
                self._inflight -= 1
                # close() sets _closed (under the lock) before it waits.
                if self._closed and self._inflight == 0:
                    self._cond.notify_all()

    def _enter(self):
        # Keeps close() from freeing the handle while a call is using it.
        with self._cond:
            if self._closed:
                return False
            self._inflight += 1
            return True

    def _leave(self):
        with self._guard:
            self._inflight -= 1
            if self._closed and self._inflight == 0:
                self._cond.notify_all()

    def subscribers(self):
        """Subscribers connected now (notif_subscribers: one atomic load; stats-only
        connections are not counted). 0 once closed, or in a child after fork()."""
        if not self._enter():
            return 0
        try:
            rc = self._lib.notif_subscribers(self._handle)
        finally:
            self._leave()
        return rc if rc > 0 else 0

    def skip(self):
        """Counts one notification not built because subscribers() was 0 (in
        stats()["dropped_no_subscriber"], as emit() counts it). A no-op once closed."""
        if self._enter():
            try:
                self._lib.notif_skip(self._handle)
            finally:
                self._leave()

    def should_emit(self):
        """Whether a notification should be built and emitted now: True when a
        subscriber is connected or the publisher keeps a replay ring
        (``replay_bytes``: what is emitted while nobody listens is kept for the
        subscribers that resume or replay); False when nobody listens and
        nothing would keep it, in which case it is counted as dropped (skip())
        and the caller need not build it. For callers whose notifications are
        costly to build (the oslo driver)."""
        if self.replay_bytes:
            return not self._closed
        return self.subscribers_or_skip() > 0

    def subscribers_or_skip(self):
        """subscribers(), and when that is 0, skip() in the same call: for a caller
        that builds the notification only when someone listens. Returns the
        number of subscribers (0: counted as dropped, nothing to build).
        Not for a publisher with a replay ring: it must emit every
        notification for the ring to keep it; use should_emit()."""
        guard = self._guard
        with guard:
            if self._closed:
                return 0
            self._inflight += 1
        try:
            handle = self._handle_arg
            rc = self._subscribers_fn(handle)
            if rc <= 0:
                self._skip_fn(handle)
                return 0
            return rc
        finally:
            with guard:
                self._inflight -= 1
                # close() sets _closed (under the lock) before it waits.
                if self._closed and self._inflight == 0:
                    self._cond.notify_all()

    def _subscribers_or_skip_unguarded(self):
        """subscribers_or_skip() without the guard against a concurrent close():
        for a caller that never calls close() on this publisher and holds a
        reference to it during the call (the oslo driver: it lets its
        publishers be closed by the garbage collector, which cannot happen
        while a call holds one). Saves the two lock round trips of the guard,
        most of the cost of a notification nobody listens to."""
        handle = self._handle_arg
        rc = self._subscribers_fn(handle)
        if rc <= 0:
            self._skip_fn(handle)
            return 0
        return rc

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
        """Flush (up to linger_ms), remove the socket file (not one from from_fd()
        or from_systemd(): that file is left, the descriptor closed), stop.
        Idempotent."""
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
        return "<libnotif.Publisher %r%s>" % (self.path, " closed" if self._closed else "")
