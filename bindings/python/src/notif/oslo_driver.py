"""The oslo.messaging notification driver ``unix``.

    [oslo_messaging_notifications]
    driver = unix
    sock_path = /run/nova/notifications.sock    # {pid} is replaced by os.getpid()
    sock_mode = 0600                              # octal
    sock_group = nova-notif                       # optional
    sock_allow_users = nova, 1001                 # optional: who may subscribe
    sock_allow_groups = nova-readers              # optional

Each notification is serialised exactly as the ``log`` driver does
(``jsonutils.dumps(strutils.mask_dict_password(message))``: message_id,
publisher_id, event_type, priority, payload, timestamp; passwords masked) and
emitted on the socket; libnotif sends it as one compact line to every
subscriber connected, or drops it at once (and counts it) when nobody listens.

notify() never blocks. The socket is opened lazily in each process (a handle
created before fork() is never used in the child: services build their
notifiers before forking workers), one handle per resolved path per process.
If it cannot be opened, one error is logged (with the path and the reason);
notifications are then dropped and counted (``driver_stats()``) and opening
is retried every ``REOPEN_INTERVAL`` seconds, without logging again.
"""

import copy
import errno
import logging
import os
import threading
import time

from oslo_config import cfg
from oslo_config import types
from oslo_messaging.notify import notifier
from oslo_serialization import jsonutils
from oslo_utils import strutils

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
]


def list_opts():
    """For oslo-config-generator (namespace notif.oslo_driver)."""
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
        self.publisher = None
        self.error = None          # the NotifError of the last failed open
        self.next_open = 0.0       # monotonic time of the next open attempt
        self.sent = 0              # emitted with at least one subscriber
        self.no_subscriber = 0     # emitted while nobody listened
        self.dropped_unopened = 0  # the socket could not be opened
        self.rejected = 0          # emit refused it (EINVAL, EMSGSIZE, EAGAIN: backlog full)
        self.emit_errors_logged = set()


_lock = threading.Lock()
_slots = {}


def _reset_after_fork():
    # The parent's handles are dead in the child (libnotif makes them return
    # EBADF); forget them so that the child opens its own.
    global _lock, _slots
    _lock = threading.Lock()
    _slots = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def resolve_path(template):
    return template.replace("{pid}", str(os.getpid()))


def _allow_lists(allow_users, allow_groups):
    """(uids, gids) of the sock_allow_* options; NotifError (ENOENT) for an
    unknown name, ValueError for an id out of range."""
    where = "[%s] " % GROUP
    users = [item.strip() for item in allow_users or () if item.strip()]
    groups = [item.strip() for item in allow_groups or () if item.strip()]
    return (resolve_uids(users, where + "sock_allow_users"),
            resolve_gids(groups, where + "sock_allow_groups"))


def _slot_for(path, mode, group, allow_users=(), allow_groups=()):
    """The slot of `path`, with its publisher opened if possible. Never raises."""
    pid = os.getpid()
    with _lock:
        slot = _slots.get(path)
        if slot is None or slot.pid != pid:
            slot = _slots[path] = _Slot(path)
        if slot.publisher is not None or time.monotonic() < slot.next_open:
            return slot
        try:
            uids, gids = _allow_lists(allow_users, allow_groups)
            slot.publisher = Publisher(path, mode=mode, group=group,
                                       allow_uids=uids, allow_gids=gids)
        except NotifError as exc:
            slot.next_open = time.monotonic() + REOPEN_INTERVAL
            first = slot.error is None
            slot.error = exc
            if first:
                if exc.errno == errno.EADDRINUSE:
                    reason = ("another publisher is live on this path (%s)" % exc.strerror)
                else:
                    reason = "%s: %s" % (exc.errno_name, exc.strerror)
                LOG.error("unix notification driver: cannot open the notification socket "
                          "%s: %s. Notifications are dropped (counted) until it can be "
                          "opened; retrying every %d s.", path, reason, REOPEN_INTERVAL)
            else:
                LOG.debug("unix notification driver: %s still cannot be opened: %s",
                          path, exc)
        except Exception as exc:  # bad options, library missing: same policy
            slot.next_open = time.monotonic() + REOPEN_INTERVAL
            if slot.error is None:
                LOG.error("unix notification driver: cannot open the notification socket "
                          "%s: %s. Notifications are dropped (counted) until it can be "
                          "opened; retrying every %d s.", path, exc, REOPEN_INTERVAL)
            slot.error = exc
        else:
            if slot.error is not None:
                LOG.info("unix notification driver: notification socket %s opened "
                         "(%d notifications were dropped before)", path, slot.dropped_unopened)
            slot.error = None
            LOG.debug("unix notification driver: publishing on %s", path)
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
            "dropped_unopened": slot.dropped_unopened,
            "rejected": slot.rejected,
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
    """Closes this process's sockets (they are reopened on the next notify)."""
    with _lock:
        slots = list(_slots.values())
        _slots.clear()
    for slot in slots:
        if slot.publisher is not None and slot.pid == os.getpid():
            slot.publisher.close()


class UnixSocketDriver(notifier.Driver):
    """Publishes notifications on a local Unix socket through libnotif."""

    def __init__(self, conf, topics=None, transport=None):
        super().__init__(conf, topics, transport)
        conf.register_opts(_opts, group=GROUP)
        group = conf[GROUP]
        if not group.sock_path:
            raise MissingSockPath("sock_path", GROUP)
        self.sock_path = group.sock_path
        self.sock_mode = group.sock_mode
        self.sock_group = group.sock_group or None
        self.sock_allow_users = list(group.sock_allow_users or [])
        self.sock_allow_groups = list(group.sock_allow_groups or [])

    @property
    def path(self):
        """The socket path for this process ({pid} resolved)."""
        return resolve_path(self.sock_path)

    def notify(self, ctxt, message, priority, retry):
        data = jsonutils.dumps(strutils.mask_dict_password(message))
        slot = _slot_for(self.path, self.sock_mode, self.sock_group,
                         self.sock_allow_users, self.sock_allow_groups)
        publisher = slot.publisher
        if publisher is None:
            slot.dropped_unopened += 1
            return
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
        else:
            slot.no_subscriber += 1
