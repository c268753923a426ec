"""libnotif-forward against a real Kafka (KRaft, Apache Kafka's jars from
Maven Central) with oslo's kafka driver: `make test-kafka`, not make test."""

import collections
import os
import signal
import sys
import time

import oslo_messaging
import pytest
from oslo_config import cfg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from helpers import (Forwarder, Listener, LocalSubscriber, Service,  # noqa: E402,F401 (work: a fixture)
                     forwarder_conf, percentile, service_conf, stop_all, wait_for, work,
                     write_conf)
from kafka import Kafka  # noqa: E402

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def kafka():
    broker = Kafka()
    yield broker
    broker.stop()


def sections(url):
    return {"oslo_messaging_notifications": {"transport_url": url}}


def kafka_forwarder_conf(work, name, url, topic):
    return forwarder_conf(work, name, sections(url), topic)


def listen(kafka, work, topic):
    """A listener that gets what is sent from now on (the kafka driver's
    consumers start at the latest offset: probe until one arrives)."""
    kafka.create_topics([topic + ".info"])
    lsections = sections(kafka.url)
    lsections["DEFAULT"] = {"executor_thread_pool_size": 1}  # the endpoint sees the order
    lconf = write_conf(os.path.join(work, "listener-%s.conf" % topic), lsections)
    listener = Listener(lconf, topic, pool="group-" + topic)
    conf = cfg.ConfigOpts()
    conf(["--config-file", lconf])
    transport = oslo_messaging.get_notification_transport(conf)
    probe = oslo_messaging.Notifier(transport, driver="messagingv2", topics=[topic],
                                    publisher_id="probe")
    deadline = time.monotonic() + 120
    while not any(r["event_type"] == "probe" for r in listener.snapshot()):
        assert time.monotonic() < deadline, "the kafka listener never got a probe"
        probe.info({}, "probe", {})
        time.sleep(0.5)
    transport.cleanup()
    return listener


def real(listener):
    return [r for r in listener.snapshot() if r["event_type"] != "probe"]


def test_kafka_1000_as_with_messagingv2(kafka, work):
    direct_l = listen(kafka, work, "kdirect1")
    fwd_l = listen(kafka, work, "kfwd1")
    fwd = svc = None
    try:
        dconf = write_conf(os.path.join(work, "direct.conf"), {
            "oslo_messaging_notifications": {"transport_url": kafka.url,
                                             "driver": "messagingv2", "topics": "kdirect1"}})
        svc = Service(work, "direct", dconf, 1000, 0)
        svc.go()
        direct_lat = svc.result(120)["latencies"]
        wait_for(lambda: len(real(direct_l)) >= 1000, 180, "1000 direct", alive=[svc])
        svc.finish()
        fwd = Forwarder(kafka_forwarder_conf(work, "k1", kafka.url, "kfwd1"),
                        os.path.join(work, "k1.log"))
        svc = Service(work, "k1", service_conf(work, "k1"), 1000, 0)
        svc.go()
        unix_lat = svc.result(120)["latencies"]
        wait_for(lambda: len(real(fwd_l)) >= 1000, 180, "1000 forwarded", alive=[fwd, svc])
        time.sleep(1)
        svc.finish()
        fwd.stop()
        direct, forwarded = real(direct_l), real(fwd_l)
        key = lambda r: (r["priority"], r["ctxt"], r["publisher_id"], r["event_type"],  # noqa
                         r["payload"])
        assert len(forwarded) == 1000
        assert [r["payload"]["n"] for r in forwarded] == list(range(1000))
        assert [key(r) for r in forwarded] == [key(r) for r in direct]
        span = forwarded[-1]["at"] - forwarded[0]["at"]
        print("\nkafka: forwarder %.0f notifications/s; service notifier.info() mean: "
              "messagingv2 (kafka) %.1f us, unix %.1f us"
              % (999 / span, sum(direct_lat) / 1000 * 1e6, sum(unix_lat) / 1000 * 1e6))
    finally:
        stop_all(direct_l, fwd_l, fwd, svc)


def test_kafka_outage_20s_and_sigkill(kafka, work):
    listener = listen(kafka, work, "kfwd2")
    fwd = Forwarder(kafka_forwarder_conf(work, "k2", kafka.url, "kfwd2"),
                    os.path.join(work, "k2.log"))
    total = 50 * 36
    svc = Service(work, "k2", service_conf(work, "k2"), total, 50)
    local = LocalSubscriber(os.path.join(work, "k2-*.sock"))
    try:
        assert local.ready.wait(60)
        svc.go()
        wait_for(lambda: len(real(listener)) >= 100, 120, "the first forwarded",
                 alive=[fwd, svc])
        kafka.pause()
        stopped = time.monotonic()
        time.sleep(20)
        kafka.start()
        restarted = time.monotonic()
        wait_for(lambda: len(real(listener)) >= 1400, 300, "1400 forwarded", alive=[fwd, svc])
        fwd.kill(signal.SIGKILL)
        time.sleep(2)
        fwd.start()
        result = svc.result(120)
        wait_for(lambda: len({r["payload"]["n"] for r in real(listener)}) >= total, 300,
                 "every notification", alive=[fwd, svc])
        time.sleep(3)
        records = real(listener)
        local.stop()
        svc.finish()
        fwd.stop()
        lat = result["latencies"]
        counts = collections.Counter(r["payload"]["n"] for r in records)
        lost = total - len(counts)
        duplicated = sum(c - 1 for c in counts.values())
        during = [x for (n, t0), x in zip(result["sent"], lat) if stopped <= t0 <= restarted]
        print("\nkafka outage 20 s at 50/s then SIGKILL of the forwarder: service p99 %.3f ms "
              "(%d calls during the outage), local %d/%d, listener %d lost, %d duplicated"
              % (percentile(lat, 99) * 1e3, len(during), len(local.records), total, lost,
                 duplicated))
        assert lost == 0
        assert percentile(lat, 99) < 0.005
        got = {m["payload"]["n"] for m, _ in local.records}
        assert len(local.records) == total, "local subscriber: missing %s, %s" % (
            sorted(set(range(total)) - got)[:10], local.state())
    finally:
        stop_all(local, listener, fwd, svc)
