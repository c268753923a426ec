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
    """The publisher refused the subscription request (``errno`` EPROTO), or
    this subscriber (the subclasses below); permanent: the subscriber does
    not reconnect."""


class SubscriptionDenied(SubscriptionError, PermissionError):
    """The publisher's allow-lists refuse this process (error reason
    ``denied``; ``errno`` EACCES). Also a PermissionError."""


class PublisherFull(SubscriptionError):
    """The publisher has as many subscribers as its max_subscribers (error
    reason ``full``; ``errno`` EUSERS). Not retried: try again later."""


def refusal(message, reason, path):
    """The exception for an error control line of the publisher
    (``{"notif":{"error":...,"reason":...}}``), by its reason."""
    if reason == "denied":
        return SubscriptionDenied(_errno.EACCES, "the publisher at %s does not let this user "
                                  "subscribe (its allow-lists; denied: %s)" % (path, message), path)
    if reason == "full":
        return PublisherFull(_errno.EUSERS, "the publisher at %s has as many subscribers as it "
                             "accepts (its max_subscribers; full: %s)" % (path, message), path)
    return SubscriptionError(_errno.EPROTO, "publisher refused the subscription: %s"
                             % (message,), path)


class NotSocketActivated(NotifError):
    """Publisher.from_systemd(): no listening socket was passed to this process
    (LISTEN_PID/LISTEN_FDS unset, for another process, or no socket of the
    requested name). ``errno`` is ENOENT. Catch it to fall back to
    ``Publisher(path)``."""
