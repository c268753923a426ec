"""libnotif: Python bindings for libnotif (distribution and import name
``libnotif``: the name ``notif`` belongs to an unrelated project on PyPI).

- ``Publisher``: binds a Unix socket and emits JSON notifications (ctypes over
  libnotif; see libnotif._lib for how the library is found: ``NOTIF_LIBRARY``,
  then the copy shipped in this package, then ``ctypes.util.find_library``).
- ``Subscriber``: reads a publisher's notifications over a plain socket.
- ``libnotif.oslo_driver``: the oslo.messaging notification driver ``unix``.
- ``libnotif.listener``: turns a stream back into oslo listener endpoint calls.
"""

from ._lib import library_path, strerror, version
from .errors import (NotifError, NotSocketActivated, PublisherFull, SubscriptionDenied,
                     SubscriptionError)
from .publisher import SLOW_DISCONNECT, SLOW_DROP, Publisher
from .subscriber import Subscriber, request_stats
from . import listener  # noqa: E402  (libnotif.listener.dispatch after a bare `import libnotif`)

__all__ = [
    "NotifError", "NotSocketActivated", "SubscriptionError", "SubscriptionDenied",
    "PublisherFull", "Publisher", "Subscriber",
    "request_stats",
    "SLOW_DROP", "SLOW_DISCONNECT", "library_path", "strerror", "version",
]
__version__ = "0.1.0"
