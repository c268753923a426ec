import os

import pytest

oslo_messaging = pytest.importorskip("oslo_messaging")

import libnotif  # noqa: E402
from libnotif import listener, oslo_driver  # noqa: E402

from test_oslo_driver import library_subscribers, make_conf, make_notifier  # noqa: E402
from conftest import wait_for  # noqa: E402


class Recorder:
    def __init__(self):
        self.calls = []

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        self.calls.append(("info", ctxt, publisher_id, event_type, payload, metadata))

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        self.calls.append(("error", ctxt, publisher_id, event_type, payload, metadata))


class ComputeOnly(Recorder):
    filter_rule = oslo_messaging.NotificationFilter(event_type=r"^compute\.")


class Failing:
    def info(self, *args):
        raise RuntimeError("endpoint bug")


@pytest.fixture(autouse=True)
def fresh_driver_state():
    oslo_driver.close_all()
    yield
    oslo_driver.close_all()


def test_dispatch_to_listener_endpoints(sockdir):
    path = os.path.join(sockdir, "l.sock")
    notifier = make_notifier(make_conf(sockdir, path), publisher_id="compute.host1")
    notifier.info({}, "warmup", {})
    sub = libnotif.Subscriber(path, timeout=10)
    wait_for(lambda: library_subscribers(path) >= 1)
    notifier.info({}, "compute.instance.create.end", {"id": 1, "password": "pw"})
    notifier.error({}, "image.upload.error", {"id": 2})
    notifier.warn({}, "compute.instance.slow", {"id": 3})  # no warn method: skipped
    notifier.error({}, "compute.instance.fail", {"id": 4})
    everything, compute = Recorder(), ComputeOnly()
    n = listener.dispatch(sub, [Failing(), everything, compute], max_messages=4)
    assert n == 4
    assert [(c[0], c[3], c[4]["id"]) for c in everything.calls] == [
        ("error", "image.upload.error", 2), ("error", "compute.instance.fail", 4)]
    # Failing raised for the info one: as in oslo, later endpoints were skipped.
    assert [(c[0], c[3], c[4]["id"]) for c in compute.calls] == [
        ("error", "compute.instance.fail", 4)]
    kind, ctxt, publisher_id, event_type, payload, metadata = everything.calls[0]
    assert ctxt == {} and publisher_id == "compute.host1"
    assert set(metadata) == {"message_id", "timestamp"}
    assert metadata["message_id"] and metadata["timestamp"]
    sub.close()


def test_dispatcher_matches_oslo_on_one_message():
    message = {"message_id": "m-1", "publisher_id": "compute.h", "event_type": "compute.x",
               "priority": "INFO", "payload": {"a": 1}, "timestamp": "2024-01-01 00:00:00.0"}
    rec, comp = Recorder(), ComputeOnly()
    d = listener.NotificationDispatcher([rec, comp])
    assert set(d.supported_priorities) == {"info", "error"}
    assert d.dispatch(message) == listener.HANDLED
    expected = ("info", {}, "compute.h", "compute.x", {"a": 1},
                {"message_id": "m-1", "timestamp": "2024-01-01 00:00:00.0"})
    assert rec.calls == [expected] and comp.calls == [expected]
    assert d.dispatch(dict(message, event_type="image.x")) == listener.HANDLED
    assert len(comp.calls) == 1 and len(rec.calls) == 2
    assert d.dispatch(dict(message, priority="bogus")) is None
    # oslo's own dispatcher gives the same calls for the same message.
    from oslo_messaging.notify import dispatcher as oslo_dispatcher

    class Incoming:
        ctxt = {}

    Incoming.message = message
    rec2 = Recorder()
    oslo_dispatcher.NotificationDispatcher([rec2], None).dispatch(Incoming())
    assert rec2.calls == [expected]


def test_dispatch_from_a_path_until_the_stream_ends(sockdir):
    path = os.path.join(sockdir, "p.sock")
    pub = libnotif.Publisher(path)
    rec = Recorder()
    import threading
    result = []
    t = threading.Thread(target=lambda: result.append(
        listener.dispatch(path, [rec], reconnect=False, timeout=20)))
    t.start()
    wait_for(lambda: pub.stats()["subscribers"] >= 1)
    pub.emit({"priority": "ERROR", "event_type": "e", "publisher_id": "p", "payload": 1,
              "message_id": "id", "timestamp": "t"})
    pub.close()  # end-of-file ends dispatch
    t.join(20)
    assert result == [1]
    assert rec.calls == [("error", {}, "p", "e", 1, {"message_id": "id", "timestamp": "t"})]
