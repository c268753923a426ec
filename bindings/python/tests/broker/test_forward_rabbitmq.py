"""libnotif-forward against a real RabbitMQ (Debian's rabbitmq-server, started
here on 127.0.0.1) with the real oslo Notifier (driver = unix in the service)
and an unchanged oslo notification listener on the broker side."""

import collections
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from helpers import (Forwarder, Listener, LocalSubscriber, Service,  # noqa: E402,F401 (work: a fixture)
                     forwarder_conf, percentile, service_conf, stop_all, wait_for, work,
                     write_conf)
from rabbitmq import RabbitMQ  # noqa: E402

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def rabbit():
    broker = RabbitMQ()
    yield broker
    broker.stop()


def rabbit_sections(url):
    # Durable exchange and queues: what the broker confirmed survives its restart.
    return {"oslo_messaging_notifications": {"transport_url": url},
            "oslo_messaging_rabbit": {"amqp_durable_queues": "true"}}


def rabbit_forwarder_conf(work, name, url, topic, **extra):
    return forwarder_conf(work, name, rabbit_sections(url), topic, **extra)


def listener_conf(work, url):
    sections = rabbit_sections(url)
    # One dispatch thread: the endpoint sees the queue's order (oslo's default
    # pool of 64 threads may call it out of order).
    sections["DEFAULT"] = {"executor_thread_pool_size": 1}
    return write_conf(os.path.join(work, "listener.conf"), sections)


def comparable(record):
    return (record["priority"], record["ctxt"], record["publisher_id"], record["event_type"],
            record["payload"])


def ids(records):
    return [r["metadata"]["message_id"] for r in records]


def test_1000_reach_an_unchanged_listener_as_with_messagingv2(rabbit, work):
    lconf = listener_conf(work, rabbit.url)
    direct_listener = Listener(lconf, "direct1")
    fwd_listener = Listener(lconf, "fwd1")
    fwd = svc = None
    try:
        # The reference: the service sending with messagingv2 itself.
        direct_conf = write_conf(os.path.join(work, "direct.conf"), dict(
            rabbit_sections(rabbit.url),
            oslo_messaging_notifications={"transport_url": rabbit.url, "driver": "messagingv2",
                                          "topics": "direct1"}))
        svc = Service(work, "direct", direct_conf, 1000, 0)
        svc.go()
        svc.result(120)
        wait_for(lambda: direct_listener.count() >= 1000, 180, "1000 direct notifications")
        svc.finish()

        # The same through driver = unix and the forwarder.
        fwd = Forwarder(rabbit_forwarder_conf(work, "svc1", rabbit.url, "fwd1"),
                        os.path.join(work, "fwd1.log"))
        svc = Service(work, "svc1", service_conf(work, "svc1"), 1000, 0)
        local = LocalSubscriber(os.path.join(work, "svc1-*.sock"))
        assert local.ready.wait(60)
        svc.go()
        svc.result(120)
        wait_for(lambda: fwd_listener.count() >= 1000, 180, "1000 forwarded notifications",
                 alive=[fwd, svc])
        wait_for(lambda: len(local.records) >= 1000, 60,
                 lambda: "1000 local notifications (%s)" % local.state())
        time.sleep(1)  # nothing more may come
        local.stop()
        svc.finish()
        fwd.stop()

        direct = direct_listener.snapshot()
        forwarded = fwd_listener.snapshot()
        assert len(direct) == 1000 and len(forwarded) == 1000
        # In order, with identical context, priority, publisher, event type, payload.
        assert [r["payload"]["n"] for r in forwarded] == list(range(1000))
        assert [comparable(r) for r in forwarded] == [comparable(r) for r in direct]
        # And the service's own message ids and timestamps (what the local
        # subscriber got from the same notifier calls).
        local_msgs = [m for m, _ in local.records]
        assert [r["metadata"] for r in forwarded] == [
            {"message_id": m["message_id"], "timestamp": m["timestamp"]} for m in local_msgs]
        assert all(sorted(r["metadata"]) == ["message_id", "timestamp"] for r in direct)
        span = forwarded[-1]["at"] - forwarded[0]["at"]
        print("\nforwarder throughput to RabbitMQ: %.0f notifications/s (1000 in %.2f s)"
              % (999 / span if span > 0 else float("inf"), span))
        assert "were lost before they could be forwarded" not in fwd.text()
    finally:
        stop_all(direct_listener, fwd_listener, fwd, svc)


def test_broker_outage_20s_at_50_per_s(rabbit, work):
    listener = Listener(listener_conf(work, rabbit.url), "fwd2")
    fwd = Forwarder(rabbit_forwarder_conf(work, "svc2", rabbit.url, "fwd2"),
                    os.path.join(work, "fwd2.log"))
    total = 50 * 32
    svc = Service(work, "svc2", service_conf(work, "svc2"), total, 50)
    local = LocalSubscriber(os.path.join(work, "svc2-*.sock"))
    try:
        assert local.ready.wait(60)
        svc.go()
        wait_for(lambda: listener.count() >= 200, 60, "the first forwarded notifications",
                 alive=[fwd, svc])
        rabbit.stop_app()
        stopped = time.monotonic()
        time.sleep(5)
        # Stopped while it waits for the broker: it exits promptly (0), and
        # the next one carries on from the saved cursor.
        t0 = time.monotonic()
        fwd.kill(signal.SIGTERM)
        term_took = time.monotonic() - t0
        assert fwd.proc.returncode == 0
        fwd.start()
        time.sleep(15)
        rabbit.start_app()
        restarted = time.monotonic()
        result = svc.result(120)
        wait_for(lambda: len({i for i in ids(listener.snapshot())}) >= total, 300,
                 "every notification at the listener after the broker's return", alive=[fwd, svc])
        time.sleep(2)  # duplicates, if any, arrive now
        records = listener.snapshot()
        local.stop()
        svc.finish()
        fwd.stop()

        lat = result["latencies"]
        p99 = percentile(lat, 99)
        during = [lt for (n, t0), lt in zip(result["sent"], lat) if stopped <= t0 <= restarted]
        counts = collections.Counter(r["payload"]["n"] for r in records)
        lost = total - len(counts)
        duplicated = sum(c - 1 for c in counts.values())
        late = [n for (msg, at), (n, t0) in zip(local.records, result["sent"])
                if at - t0 > 1.0]
        print("\noutage: service notifier.info() p50 %.3f ms p99 %.3f ms max %.3f ms "
              "(%d calls during the outage); local subscriber %d/%d, %d later than 1 s; "
              "listener: %d lost, %d duplicated; forwarder SIGTERMed during the outage "
              "exited in %.2f s"
              % (percentile(lat, 50) * 1e3, p99 * 1e3, max(lat) * 1e3, len(during),
                 len(local.records), total, len(late), lost, duplicated, term_took))
        assert len(during) >= 900, "the outage did not overlap the notifications"
        assert p99 < 0.005
        got = {m["payload"]["n"] for m, _ in local.records}
        assert [m["payload"]["n"] for m, _ in local.records] == list(range(total)), \
            "local subscriber: missing %s, %s" % (sorted(set(range(total)) - got)[:10],
                                                   local.state())
        assert late == []
        assert lost == 0
        # The forwarder noticed the outage and waited; nothing was reported lost.
        text = fwd.text()
        assert "the broker did not take a notification" in text
        assert "the broker took notifications again" in text
        assert "were lost before they could be forwarded" not in text
        # The forwarder was stopped with SIGTERM (cursor saved): a duplicate can
        # only be a publish whose confirm the broker's stop cut off: at most one.
        assert duplicated <= 1
    finally:
        stop_all(local, listener, fwd, svc)


def test_forwarder_killed_and_stopped_loses_nothing(rabbit, work):
    listener = Listener(listener_conf(work, rabbit.url), "fwd3")
    fconf = rabbit_forwarder_conf(work, "svc3", rabbit.url, "fwd3")
    fwd = Forwarder(fconf, os.path.join(work, "fwd3.log"))
    total = 3000
    svc = Service(work, "svc3", service_conf(work, "svc3"), total, 200)
    try:
        svc.go()
        wait_for(lambda: listener.count() >= 600, 120, "600 forwarded", alive=[fwd, svc])
        fwd.kill(signal.SIGKILL)
        time.sleep(2)
        fwd.start()
        wait_for(lambda: listener.count() >= 1800, 120, "1800 forwarded", alive=[fwd, svc])
        fwd.kill(signal.SIGTERM)
        assert fwd.proc.returncode == 0
        time.sleep(2)
        fwd.start()
        svc.result(120)
        wait_for(lambda: len(set(ids(listener.snapshot()))) >= total, 300, "all 3000",
                 alive=[fwd, svc])
        time.sleep(2)
        records = listener.snapshot()
        svc.finish()
        fwd.stop()

        counts = collections.Counter(r["payload"]["n"] for r in records)
        lost = total - len(counts)
        duplicated = sum(c - 1 for c in counts.values())
        # The queue holds what the three forwarders published, one after the
        # other: 0..a (the first, SIGKILLed), then from its last saved cursor
        # c+1..b (the second, SIGTERMed: it saved b), then b+1..end. In the
        # listener's order, the numbers go up by one except at most once,
        # where they step back (the repeat after SIGKILL): never a gap, and no
        # step back at the SIGTERM restart.
        seq = [r["payload"]["n"] for r in records]
        breaks = [(prev, cur) for prev, cur in zip(seq, seq[1:]) if cur != prev + 1]
        print("\nSIGKILL then SIGTERM of the forwarder: %d lost, %d duplicated; "
              "discontinuities in the listener's order: %s" % (lost, duplicated, breaks))
        assert lost == 0
        assert len(breaks) <= 1, breaks
        if breaks:
            (prev, cur), = breaks
            assert cur <= prev and duplicated == prev - cur + 1
        else:
            assert duplicated == 0
    finally:
        stop_all(listener, fwd, svc)


def test_cost_per_notification_in_the_service(rabbit, work):
    """The figures of the closing note (printed, not asserted: timings): what
    notifier.info() costs the service with the forwarder running, with
    driver = unix alone, and with unix and messagingv2 (repeated lines, the
    form that loads both) sending to the same broker itself."""
    listener = Listener(listener_conf(work, rabbit.url), "fwd4")
    fwd = Forwarder(rabbit_forwarder_conf(work, "svc4", rabbit.url, "fwd4"),
                    os.path.join(work, "fwd4.log"))
    count = 2000
    svc = None
    try:
        svc = Service(work, "svc4", service_conf(work, "svc4"), count, 0)
        svc.go()
        unix = svc.result(120)["latencies"]
        wait_for(lambda: len(set(ids(listener.snapshot()))) >= count, 300,
                 "the forwarded notifications", alive=[fwd, svc])
        svc.finish()

        both_conf = os.path.join(work, "svc5.conf")
        with open(both_conf, "w") as f:
            f.write("[oslo_messaging_notifications]\ndriver = unix\ndriver = messagingv2\n"
                    "topics = direct5\ntransport_url = %s\nsock_path = %s\n"
                    "sock_replay_bytes = 16777216\n\n[oslo_messaging_rabbit]\n"
                    "amqp_durable_queues = true\n"
                    % (rabbit.url, os.path.join(work, "svc4-{pid}.sock")))
        svc = Service(work, "svc5", both_conf, count, 0)
        svc.go()
        both = svc.result(120)["latencies"]
        wait_for(lambda: len(set(ids(listener.snapshot()))) >= 2 * count, 300,
                 "the forwarded notifications", alive=[fwd, svc])
        svc.finish()
        records = listener.snapshot()
        assert len(set(ids(records))) == 2 * count

        def line(name, lat):
            return "%-22s mean %7.1f us  p50 %7.1f us  p99 %7.1f us" % (
                name, sum(lat) / len(lat) * 1e6, percentile(lat, 50) * 1e6,
                percentile(lat, 99) * 1e6)
        print("\nnotifier.info() in the service, forwarder running (%d calls each):\n  %s\n  %s"
              % (count, line("unix", unix), line("unix + messagingv2", both)))
    finally:
        stop_all(listener, fwd)
