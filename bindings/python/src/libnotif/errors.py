import errno as _errno
import os


class NotifError(OSError):
    """A libnotif call failed: ``errno`` is the error code, ``strerror`` the
    library's message (notif_last_error), ``filename`` the socket path when
    there is one."""

    def __init__(self, code, message, filename=None):
        code = abs(int(code))
        if filename is None:
            super().__init__(code, message)
        else:
            super().__init__(code, message, filename)

    @property
    def errno_name(self):
        return _errno.errorcode.get(self.errno, str(self.errno))

    def __str__(self):
        text = "[%s] %s" % (self.errno_name, self.strerror or os.strerror(self.errno))
        return text


class SubscriptionError(NotifError):
    """The publisher refused the subscription request (EPROTO); permanent."""


class NotSocketActivated(NotifError):
    """Publisher.from_systemd(): no listening socket was passed to this process
    (LISTEN_PID/LISTEN_FDS unset, for another process, or no socket of the
    requested name). ``errno`` is ENOENT. Catch it to fall back to
    ``Publisher(path)``."""
