"""notif: Python bindings for libnotif.

- ``Publisher``: binds a Unix socket and emits JSON notifications (ctypes over
  libnotif; see notif._lib for how the library is found: ``NOTIF_LIBRARY``,
  then the copy shipped in this package, then ``ctypes.util.find_library``).
- ``Subscriber``: reads a publisher's notifications over a plain socket.
- ``notif.oslo_driver``: the oslo.messaging notification driver ``unix``.
- ``notif.listener``: turns a stream back into oslo listener endpoint calls.
"""

from ._lib import library_path, strerror, version
from .errors import (NotifError, NotSocketActivated, PublisherFull, SubscriptionDenied,
                     SubscriptionError)
from .publisher import SLOW_DISCONNECT, SLOW_DROP, Publisher
from .subscriber import Subscriber, request_stats
from . import listener  # noqa: E402  (notif.listener.dispatch after a bare `import notif`)

__all__ = [
    "NotifError", "NotSocketActivated", "SubscriptionError", "SubscriptionDenied",
    "PublisherFull", "Publisher", "Subscriber",
    "request_stats",
    "SLOW_DROP", "SLOW_DISCONNECT", "library_path", "strerror", "version",
]
__version__ = "0.1.0"
