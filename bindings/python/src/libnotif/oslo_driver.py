"""The oslo.messaging notification driver ``unix``.

    [oslo_messaging_notifications]
    driver = unix
    sock_path = /run/nova/notifications-{pid}.sock
    sock_mode = 0660
    sock_group = nova-readers

(``{pid}`` is replaced by os.getpid(); ``sock_mode`` is octal; the group, the
allow lists and the limits are optional: see list_opts() or
oslo-config-generator --namespace libnotif.oslo_driver.)

With nobody connected and no replay ring, notify() costs one library call
(notif_subscribers, one atomic load) and counts the notification as dropped
(notif_skip): nothing is serialised or masked. With ``sock_replay_bytes``,
every notification is built and emitted, subscribers or not: the ring keeps
it for the subscribers that resume (``notif tail --cursor-file``) or replay
(``notif tail --replay``), and driver_stats() counts it in ``kept_in_ring``
when nobody was connected. With a subscriber, the notification is what the
``log`` driver writes (``jsonutils.dumps(strutils.mask_dict_password(message))``:
message_id, publisher_id, event_type, priority, payload, timestamp; passwords
masked), computed by libnotif.mask (equal results, much faster), and libnotif
sends it as one compact line to every subscriber.

notify() never blocks. The socket is opened when the driver is constructed;
a forked child opens its own ``{pid}`` socket right after fork()
(os.register_at_fork), and removes the dead sockets its dead siblings left in
that directory (see remove_dead_sockets). A handle made before fork() is never
used in the child. One handle per resolved path per process. If the socket
cannot be opened, one error is logged (with the path and the reason);
notifications are then dropped and counted (``driver_stats()``) and opening
is retried every ``REOPEN_INTERVAL`` seconds, without logging again. A
configuration error (no sock_path, a bad sock_mode...) is one ERROR line
naming the option and the fix; the driver then drops and counts every
notification (``dropped_misconfigured``) instead of failing to load.
"""

import copy
import errno
import grp
import logging
import os
import re
import socket
import stat
import threading
import time
import weakref

from oslo_config import cfg
from oslo_config import types
from oslo_messaging.notify import notifier

from . import mask
from .errors import NotifError
from .publisher import Publisher, parse_mode, resolve_gids, resolve_uids

LOG = logging.getLogger(__name__)

GROUP = "oslo_messaging_notifications"
REOPEN_INTERVAL = 60.0


class _Mode(types.ConfigType):
    """Socket file permissions: an octal string ("0600", "660") or an int."""

    def __init__(self, type_name="octal mode value"):
        super().__init__(type_name=type_name)

    def __call__(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            mode = value
        else:
            try:
                mode = parse_mode(str(value))
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        if not 0 <= mode <= 0o777:
            raise ValueError("sock_mode %r is outside 0000..0777" % (value,))
        return mode

    def __repr__(self):
        return "OctalMode"

    def __eq__(self, other):
        return self.__class__ == other.__class__

    def _formatter(self, value):
        if isinstance(value, int):
            return "0%o" % value
        return str(value)


_opts = [
    cfg.StrOpt("sock_path",
               help="Path of the Unix socket the 'unix' notification driver "
                    "publishes on (required with driver = unix), e.g. "
                    "/run/nova/notifications.sock, or @name for a Linux abstract "
                    "socket. '{pid}' is replaced by the process id when the socket "
                    "is opened, for services whose forked workers each need their "
                    "own socket. The directory must exist; at most 107 bytes."),
    cfg.Opt("sock_mode", type=_Mode(), default="0600",
            help="Permissions of the socket file (octal). Whoever can connect "
                 "reads every notification."),
    cfg.StrOpt("sock_group",
               help="Group (name or id) given to the socket file, so that members "
                    "can read notifications with sock_mode = 0660. Default: the "
                    "service's group."),
    cfg.ListOpt("sock_allow_users", default=[],
                help="Users (names or uids) allowed to subscribe, checked against the "
                     "peer credentials of each connection. When this or "
                     "sock_allow_groups is set, any other connection is closed at once "
                     "and counted as denied; when both are empty, anyone who can open "
                     "the socket file may subscribe. Names are resolved when the socket "
                     "is opened; an unknown name is logged as an error and the socket "
                     "is not opened."),
    cfg.ListOpt("sock_allow_groups", default=[],
                help="Groups (names or gids) whose members may subscribe: a "
                     "connection is let in if the peer's primary or supplementary "
                     "group is listed (or its user is in sock_allow_users). Resolved "
                     "like sock_allow_users."),
    cfg.IntOpt("sock_max_message", default=1024 * 1024, min=1, max=64 * 1024 * 1024,
               help="Largest notification, in bytes of its compact JSON; larger ones "
                    "are dropped and counted (rejected). At most half of "
                    "sock_subscriber_buffer."),
    cfg.IntOpt("sock_subscriber_buffer", default=4 * 1024 * 1024, min=16 * 1024,
               help="Bytes one subscriber may have waiting (the kernel's socket "
                    "buffer included) before the slow policy applies to it."),
    cfg.IntOpt("sock_memory_limit", default=64 * 1024 * 1024, min=16 * 1024,
               help="Total bytes that all subscribers' queues together may hold in "
                    "this process; when reached, the subscribers holding the most "
                    "lose their queued notifications or are disconnected, per "
                    "sock_slow_policy. The replay ring (sock_replay_bytes) counts "
                    "in it."),
    cfg.IntOpt("sock_replay_bytes", default=0, min=0,
               help="Bytes of the most recent notifications kept in a replay ring, "
                    "whether or not anyone is subscribed, so that a subscriber that "
                    "reconnects or restarts resumes after its cursor without missing "
                    "any (notif tail --after/--cursor-file, or replay everything "
                    "kept with notif tail --replay). 0: off, nothing is kept when "
                    "nobody listens. At most half of sock_memory_limit."),
    cfg.IntOpt("sock_linger_ms", default=1000, min=0, max=0xFFFFFFFF,
               help="How long, in milliseconds, closing the socket (at exit) may "
                    "spend flushing queued notifications to subscribers; 0 closes "
                    "at once."),
    cfg.StrOpt("sock_slow_policy", default="drop", choices=[
        ("drop", "a subscriber that does not keep up misses notifications "
                 "(counted, and it is told how many)"),
        ("disconnect", "a subscriber that does not keep up is disconnected")],
        help="What happens to a subscriber whose queue is full."),
]

# How to fix an option, for the one ERROR line of a configuration error.
_FIXES = {
    "sock_path": "set sock_path to the socket's path, e.g. "
                 "sock_path = /run/<service>/notifications.sock",
    "sock_mode": "set sock_mode to octal permission bits, e.g. sock_mode = 0660",
}


def list_opts():
    """For oslo-config-generator (namespace libnotif.oslo_driver)."""
    return [(GROUP, copy.deepcopy(_opts))]


class MissingSockPath(cfg.RequiredOptError):
    def __str__(self):
        return ("the 'unix' notification driver needs [%s] sock_path, e.g. "
                "sock_path = /run/<service>/notifications.sock" % GROUP)


# -- the per-process shared handles ---------------------------------------------
class _Slot:
    """One resolved socket path in this process."""

    def __init__(self, path):
        self.path = path
        self.pid = os.getpid()
        self.gen = _gen
        self.publisher = None
        self.error = None          # the error of the last failed open (or the config error)
        self.next_open = 0.0       # monotonic time of the next open attempt
        self.sent = 0              # emitted with at least one subscriber
        self.no_subscriber = 0     # dropped, nobody listened (not serialised)
        self.kept_in_ring = 0      # emitted with nobody listening, kept in the replay ring
        self.dropped_unopened = 0  # the socket could not be opened
        self.dropped_misconfigured = 0  # the driver's configuration is wrong
        self.rejected = 0          # emit refused it (EINVAL, EMSGSIZE, EAGAIN: backlog full)
        self.removed_dead = 0      # dead sibling sockets removed when this one was opened
        self.emit_errors_logged = set()


_lock = threading.Lock()
_slots = {}
_gen = 0                    # bumped at fork (child) and by close_all(): drivers rebind
_drivers = weakref.WeakSet()
_config_errors_logged = set()


def _reset_after_fork():
    # The parent's handles are dead in the child (libnotif makes them return
    # EBADF); forget them, and open this process's own {pid} sockets now, so
    # that a subscriber waiting on the glob gets the child's first notification.
    global _lock, _slots, _gen
    _lock = threading.Lock()
    _slots = {}
    _gen += 1
    for driver in list(_drivers):
        if "{pid}" in (driver.sock_path or ""):
            try:
                driver._rebind(open_now=True)
            except Exception:  # never break the fork of the service
                LOG.exception("unix notification driver: opening the socket after fork")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def resolve_path(template):
    return template.replace("{pid}", str(os.getpid()))


def _template_regex(template):
    """The regex matching the basenames of `template` for any pid, or None when
    {pid} is not in the basename."""
    base = os.path.basename(template)
    if "{pid}" not in base or "{pid}" in os.path.dirname(template):
        return None
    parts = [re.escape(part) for part in base.split("{pid}")]
    return re.compile(r"\A" + r"([0-9]+)".join(parts) + r"\Z")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def remove_dead_sockets(template, keep=None):
    """Removes the dead sockets of a {pid} template in its directory: files
    whose name is the template for some pid, that are sockets, owned by this
    process's effective uid, whose pid is not a live process, and that refuse
    connections (ECONNREFUSED: nobody listens). The file is removed only if it
    is still the one probed (same device and inode), so a live socket that a
    new process linked into place in between is left alone. `keep` (our own
    path) is never touched. Returns the paths removed."""
    pattern = _template_regex(template)
    if pattern is None or template.startswith("@"):
        return []
    directory = os.path.dirname(template) or "."
    removed = []
    uid = os.geteuid()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None:
            continue
        path = os.path.join(directory, entry.name)
        if keep is not None and path == keep:
            continue
        try:
            pid = int(match.group(1))
        except ValueError:
            continue
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            before = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISSOCK(before.st_mode) or before.st_uid != uid:
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.setblocking(False)  # never wait: refused, accepted or EAGAIN at once
            probe.connect(path)
        except ConnectionRefusedError:
            dead = True
        except OSError:
            dead = False  # EAGAIN (a busy live one), EACCES...: leave it
        else:
            dead = False
        finally:
            probe.close()
        if not dead:
            continue
        try:
            after = os.lstat(path)
            if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
                continue
            os.unlink(path)
        except OSError:
            continue
        removed.append(path)
    return removed


def _allow_lists(allow_users, allow_groups):
    """(uids, gids) of the sock_allow_* options; NotifError (ENOENT) for an
    unknown name, ValueError for an id out of range."""
    where = "[%s] " % GROUP
    users = [item.strip() for item in allow_users or () if item.strip()]
    groups = [item.strip() for item in allow_groups or () if item.strip()]
    return (resolve_uids(users, where + "sock_allow_users"),
            resolve_gids(groups, where + "sock_allow_groups"))


def _check_group(group):
    """sock_group must name a group: say so with the option and the name as text."""
    if group is None:
        return
    text = str(group).strip()
    if text.isascii() and text.isdigit():
        return
    try:
        grp.getgrnam(text)
    except KeyError:
        raise NotifError(errno.ENOENT, "[%s] sock_group: no such group %r (give an "
                         "existing group name or gid)" % (GROUP, text)) from None


def _log_open_error(path, exc):
    if isinstance(exc, NotifError):
        if exc.errno == errno.EADDRINUSE:
            reason = "another publisher is live on this path (%s)" % exc.strerror
        else:
            reason = "%s: %s" % (exc.errno_name, exc.strerror)
    else:
        reason = str(exc)
    LOG.error("unix notification driver: cannot open the notification socket "
              "%s: %s. Notifications are dropped (counted) until it can be "
              "opened; retrying every %d s.", path, reason, REOPEN_INTERVAL)


def _slot_for(path, options, template=None, open_now=True):
    """The slot of `path`, with its publisher opened if possible (when
    open_now). Never raises."""
    with _lock:
        slot = _slots.get(path)
        if slot is None or slot.pid != os.getpid():
            slot = _slots[path] = _Slot(path)
        if not open_now or slot.publisher is not None or time.monotonic() < slot.next_open:
            return slot
        try:
            uids, gids = _allow_lists(options["allow_users"], options["allow_groups"])
            _check_group(options["group"])
            slot.publisher = Publisher(
                path, mode=options["mode"], group=options["group"],
                allow_uids=uids, allow_gids=gids,
                max_message=options["max_message"],
                subscriber_buffer=options["subscriber_buffer"],
                memory_limit=options["memory_limit"], linger_ms=options["linger_ms"],
                slow_policy=options["slow_policy"], replay_bytes=options["replay_bytes"])
        except Exception as exc:  # NotifError, bad options, library missing: same policy
            slot.next_open = time.monotonic() + REOPEN_INTERVAL
            if slot.error is None:
                _log_open_error(path, exc)
            else:
                LOG.debug("unix notification driver: %s still cannot be opened: %s",
                          path, exc)
            slot.error = exc
        else:
            if slot.error is not None:
                LOG.info("unix notification driver: notification socket %s opened "
                         "(%d notifications were dropped before)", path, slot.dropped_unopened)
            slot.error = None
            LOG.debug("unix notification driver: publishing on %s", path)
            if template is not None and "{pid}" in template:
                try:
                    removed = remove_dead_sockets(template, keep=path)
                except Exception:
                    removed = []
                    LOG.debug("unix notification driver: removing dead sockets of %s",
                              template, exc_info=True)
                slot.removed_dead += len(removed)
                for dead in removed:
                    LOG.debug("unix notification driver: removed the dead socket %s", dead)
        return slot


def driver_stats():
    """This process's counters, per socket path: what the driver did with
    notifications, plus the library's counters when the socket is open."""
    with _lock:
        slots = list(_slots.values())
    out = {}
    for slot in slots:
        entry = {
            "sent": slot.sent,
            "no_subscriber": slot.no_subscriber,
            "kept_in_ring": slot.kept_in_ring,
            "dropped_unopened": slot.dropped_unopened,
            "dropped_misconfigured": slot.dropped_misconfigured,
            "rejected": slot.rejected,
            "removed_dead": slot.removed_dead,
            "open": slot.publisher is not None,
            "error": str(slot.error) if slot.error is not None else None,
        }
        if slot.publisher is not None:
            try:
                entry["library"] = slot.publisher.stats()
            except NotifError:
                pass
        out[slot.path] = entry
    return out


def close_all():
    """Closes this process's sockets (they are reopened on the next notify).

    The driver never calls Publisher.close() (it skips that method's guard on
    its fast path): it drops its references, and a publisher is closed (its
    socket file removed) by its finalizer as soon as nothing uses it: at
    once, or when a notify() in progress on another thread returns."""
    global _gen
    with _lock:
        slots = list(_slots.values())
        _slots.clear()
        _gen += 1
        for slot in slots:
            slot.publisher = None
    del slots


def _config_error(key, option, exc):
    """Logs a configuration error once per process (one ERROR line: the option,
    what is wrong, the fix) and returns the message."""
    fix = _FIXES.get(option, "fix [%s] %s" % (GROUP, option))
    if option == "sock_path":
        text = ("unix notification driver: [%s] sock_path is not set: %s. Every "
                "notification is dropped (counted in driver_stats()) until it is set."
                % (GROUP, fix))
    else:
        text = ("unix notification driver: [%s] %s is invalid (%s): %s. Every "
                "notification is dropped (counted in driver_stats()) until it is fixed."
                % (GROUP, option, exc, fix))
    if (key, text) not in _config_errors_logged:
        _config_errors_logged.add((key, text))
        LOG.error("%s", text)
    return text


class UnixSocketDriver(notifier.Driver):
    """Publishes notifications on a local Unix socket through libnotif."""

    def __init__(self, conf, topics=None, transport=None):
        super().__init__(conf, topics, transport)
        conf.register_opts(_opts, group=GROUP)
        group = conf[GROUP]
        self.config_error = None
        self.sock_path = None
        values = {}
        for opt in _opts:
            try:
                values[opt.dest] = group[opt.dest]
            except (cfg.ConfigFileValueError, ValueError) as exc:
                if self.config_error is None:
                    key = group.sock_path if opt.dest != "sock_path" else ""
                    self.config_error = _config_error(key or "", opt.dest, exc)
        self.sock_path = values.get("sock_path") or None
        if self.config_error is None and not self.sock_path:
            self.config_error = _config_error("", "sock_path", None)
        self.sock_mode = values.get("sock_mode")
        self.sock_group = values.get("sock_group") or None
        self.sock_allow_users = list(values.get("sock_allow_users") or [])
        self.sock_allow_groups = list(values.get("sock_allow_groups") or [])
        self._options = {
            "mode": self.sock_mode, "group": self.sock_group,
            "allow_users": self.sock_allow_users, "allow_groups": self.sock_allow_groups,
            "max_message": values.get("sock_max_message"),
            "subscriber_buffer": values.get("sock_subscriber_buffer"),
            "memory_limit": values.get("sock_memory_limit"),
            "linger_ms": values.get("sock_linger_ms"),
            "slow_policy": values.get("sock_slow_policy"),
            "replay_bytes": values.get("sock_replay_bytes"),
        }
        self._slot = None
        _drivers.add(self)
        # Open now: the service's first notification must find its subscribers.
        self._rebind(open_now=True)

    @property
    def path(self):
        """The socket path for this process ({pid} resolved)."""
        return resolve_path(self.sock_path) if self.sock_path else ""

    def _rebind(self, open_now=False):
        if self.config_error is not None:
            with _lock:
                key = self.path
                slot = _slots.get(key)
                if slot is None or slot.pid != os.getpid():
                    slot = _slots[key] = _Slot(key)
                slot.error = self.config_error
        else:
            slot = _slot_for(self.path, self._options, self.sock_path, open_now=open_now)
        self._slot = slot
        return slot

    def notify(self, ctxt, message, priority, retry):
        slot = self._slot
        if slot is None or slot.gen != _gen:
            slot = self._rebind(open_now=False)
        publisher = slot.publisher
        if publisher is None:
            if self.config_error is not None:
                slot.dropped_misconfigured += 1
                return
            slot = self._rebind(open_now=True)
            publisher = slot.publisher
            if publisher is None:
                slot.dropped_unopened += 1
                return
        # Nobody listens and no replay ring keeps it: one atomic load, the
        # drop counted; nothing built. With a ring, every notification is
        # emitted: the ring keeps it for the subscribers that resume.
        # (Unguarded: this module never calls close() on its publishers, and
        # `publisher` keeps this one alive during the call; see close_all.)
        ring = publisher.replay_bytes
        if not ring and publisher._subscribers_or_skip_unguarded() == 0:
            slot.no_subscriber += 1
            return
        data = mask.dumps_masked(message)
        try:
            n = publisher.emit(data)
        except NotifError as exc:
            slot.rejected += 1
            if exc.errno not in slot.emit_errors_logged:
                # Once per kind of error, not per message.
                slot.emit_errors_logged.add(exc.errno)
                LOG.warning("unix notification driver: a %s notification was not sent "
                            "on %s: %s (further %s errors are counted, not logged)",
                            message.get("event_type"), slot.path, exc, exc.errno_name)
            return
        if n > 0:
            slot.sent += 1
        elif ring:
            slot.kept_in_ring += 1
        else:
            slot.no_subscriber += 1
