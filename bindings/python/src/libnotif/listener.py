"""Turns a notif stream (written by the oslo ``unix`` driver) back into oslo
notification listener calls, the way oslo.messaging's NotificationDispatcher
does: for each notification, ``endpoint.<priority>(ctxt, publisher_id,
event_type, payload, metadata)`` with metadata ``{"message_id", "timestamp"}``,
for every endpoint that has the method and whose ``filter_rule`` (an
``oslo_messaging.NotificationFilter``, if present) matches.

    class Endpoint:
        filter_rule = oslo_messaging.NotificationFilter(event_type="compute.*")
        def info(self, ctxt, publisher_id, event_type, payload, metadata): ...

    libnotif.listener.dispatch("/run/nova/notifications.sock", [Endpoint()])

Differences from a broker: there is no request context on the wire (the log
format has none), so ``ctxt`` is ``{}`` (after the serializer's
deserialize_context); and a notification cannot be requeued: as in oslo, an
endpoint that raises (logged) or returns ``NotificationResult.REQUEUE`` stops the
dispatch of that notification to the endpoints after it, and it is not
delivered again.
"""

import itertools
import logging

from .subscriber import Subscriber

LOG = logging.getLogger(__name__)

PRIORITIES = ["audit", "debug", "info", "warn", "error", "critical", "sample"]
HANDLED = "handled"
REQUEUE = "requeue"


class _NoOpSerializer:
    def deserialize_context(self, ctxt):
        return ctxt

    def deserialize_entity(self, ctxt, entity):
        return entity


class NotificationDispatcher:
    """Calls endpoints for notification dicts, like oslo's dispatcher."""

    def __init__(self, endpoints, serializer=None):
        self.endpoints = list(endpoints)
        self.serializer = serializer or _NoOpSerializer()
        self._callbacks = {}
        for endpoint, prio in itertools.product(self.endpoints, PRIORITIES):
            method = getattr(endpoint, prio, None)
            if method is not None:
                screen = getattr(endpoint, "filter_rule", None)
                self._callbacks.setdefault(prio, []).append((screen, method))

    @property
    def supported_priorities(self):
        return self._callbacks.keys()

    def dispatch(self, message):
        """Dispatches one notification (a dict). Returns HANDLED, REQUEUE (an
        endpoint raised or asked for it: later endpoints were skipped) or None
        (not a notification, or an unknown priority)."""
        if not isinstance(message, dict):
            LOG.warning("Ignoring a line that is not a JSON object: %r", message)
            return None
        ctxt = self.serializer.deserialize_context({})
        priority = message.get("priority", "")
        priority = priority.lower() if isinstance(priority, str) else ""
        metadata = {"message_id": message.get("message_id"),
                    "timestamp": message.get("timestamp")}
        publisher_id = message.get("publisher_id")
        event_type = message.get("event_type")
        payload = self.serializer.deserialize_entity(ctxt, message.get("payload"))
        if priority not in PRIORITIES:
            LOG.warning('Unknown priority "%s"', priority)
            return None
        for screen, callback in self._callbacks.get(priority, []):
            if screen and not screen.match(ctxt, publisher_id, event_type, metadata, payload):
                continue
            try:
                ret = callback(ctxt, publisher_id, event_type, payload, metadata)
            except Exception:
                LOG.exception("Callback raised an exception.")
                ret = REQUEUE
            if ret == REQUEUE:
                return REQUEUE
        return HANDLED


def dispatch(subscriber_or_path, endpoints, serializer=None, max_messages=None,
             **subscriber_args):
    """Reads notifications and dispatches them to ``endpoints`` until the
    stream ends (a Subscriber with reconnect=False, or closed), ``max_messages``
    notifications were dispatched, or the subscriber's timeout expires
    (TimeoutError). ``subscriber_or_path`` is a Subscriber or a socket path;
    with a path, a Subscriber is made with ``subscriber_args`` (and closed at
    the end). Returns the number of notifications dispatched."""
    dispatcher = NotificationDispatcher(endpoints, serializer)
    own = not isinstance(subscriber_or_path, Subscriber)
    sub = Subscriber(subscriber_or_path, **subscriber_args) if own else subscriber_or_path
    count = 0
    try:
        if max_messages is not None and max_messages <= 0:
            return 0
        for message in sub:
            dispatcher.dispatch(message)
            count += 1
            if max_messages is not None and count >= max_messages:
                break
    finally:
        if own:
            sub.close()
    return count
