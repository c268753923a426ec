"""Shared pieces of the forwarder's broker tests: config files, the service,
the forwarder and an unchanged oslo notification listener."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import oslo_messaging
import pytest
from oslo_config import cfg

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)


def write_conf(path, sections):
    with open(path, "w") as f:
        for name, values in sections.items():
            f.write("[%s]\n" % name)
            for k, v in values.items():
                f.write("%s = %s\n" % (k, v))
            f.write("\n")
    return path


def service_conf(work, name):
    """A service's config: the oslo `unix` driver at WORK/NAME-{pid}.sock with
    a 16 MiB replay ring."""
    return write_conf(os.path.join(work, name + ".conf"), {
        "oslo_messaging_notifications": {
            "driver": "unix",
            "sock_path": os.path.join(work, name + "-{pid}.sock"),
            "sock_replay_bytes": 16 * 1024 * 1024,
        }})


def forwarder_conf(work, name, broker_sections, topic, **extra):
    """libnotif-forward's config for service NAME: BROKER_SECTIONS (the
    transport_url and the broker's own options) plus [notif_forward]."""
    sections = dict(broker_sections)
    sections["notif_forward"] = dict({
        "sock_path": os.path.join(work, name + "-{pid}.sock"),
        "cursor_file": os.path.join(work, name + ".cursors"),
        "topics": topic,
        "retry_interval_max": 2.0,
    }, **extra)
    return write_conf(os.path.join(work, name + "-fwd.conf"), sections)


@pytest.fixture
def work():
    """A scratch directory for one test (kept with NOTIF_KEEP_WORK=1). The
    broker tests import this fixture from here."""
    d = tempfile.mkdtemp(prefix="fwd", dir="/tmp")
    yield d
    if not os.environ.get("NOTIF_KEEP_WORK"):
        shutil.rmtree(d, ignore_errors=True)


def stop_all(*parts):
    """The end of a broker test, whatever it got to: stops each of PARTS in
    order (Listener, LocalSubscriber, Forwarder if still running, Service;
    None: never started)."""
    for part in parts:
        if part is not None:
            part.stop()


def wait_for(predicate, timeout, what, alive=()):
    """Waits for predicate(); fails at once if a process of `alive` (Forwarder,
    Service) exited."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in alive:
            assert proc.proc.poll() is None, "%s exited (%s): %s" % (
                type(proc).__name__, proc.proc.returncode, proc.tail())
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s"
                                 % (timeout, what() if callable(what) else what))
        time.sleep(0.05)


class Service:
    """bindings/python/tests/broker/service.py in a process of its own."""

    def __init__(self, workdir, name, conf, count, rate, tag=""):
        self.out = os.path.join(workdir, name + ".out")
        self.log = open(os.path.join(workdir, name + ".log"), "wb")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "service.py"), conf,
                                      str(count), str(rate), self.out, tag],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def tail(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()[-3000:]

    def go(self):
        open(self.out + ".go", "w").close()

    def result(self, timeout):
        wait_for(lambda: os.path.exists(self.out) and os.path.getsize(self.out) > 0
                 or self.proc.poll() is not None, timeout, "the service to finish")
        assert self.proc.poll() is None, "the service failed: see %s" % self.log.name
        time.sleep(0.1)  # the file is written in one go; let it land
        with open(self.out) as f:
            return json.load(f)

    def finish(self):
        """Lets the service exit (idempotent; also stop())."""
        if self.log.closed:
            return
        open(self.out + ".exit", "w").close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    stop = finish


class Forwarder:
    """libnotif-forward (the console script) in a process of its own."""

    def __init__(self, conf, log):
        self.conf = conf
        self.log_path = log
        self.proc = None
        self.start()

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([os.path.join(BIN, "libnotif-forward"), "--config-file",
                                      self.conf], stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def kill(self, sig):
        self.proc.send_signal(sig)
        self.proc.wait(60)

    def stop(self):
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def tail(self):
        return self.text()[-3000:]


class Listener:
    """An unchanged oslo notification listener (threading executor) on TOPIC,
    recording every notification it gets, with the time it got it."""

    def __init__(self, conf_file, topic, pool=None):
        self.records = []
        self.lock = threading.Lock()
        conf = cfg.ConfigOpts()
        conf(["--config-file", conf_file], project="listener")
        self.transport = oslo_messaging.get_notification_transport(conf)
        outer = self

        class Endpoint:
            def _record(self, priority, ctxt, publisher_id, event_type, payload, metadata):
                with outer.lock:
                    outer.records.append({
                        "priority": priority, "ctxt": ctxt, "publisher_id": publisher_id,
                        "event_type": event_type, "payload": payload,
                        "metadata": dict(metadata), "at": time.monotonic()})

            def info(self, *args):
                self._record("info", *args)

            def error(self, *args):
                self._record("error", *args)

        self.listener = oslo_messaging.get_notification_listener(
            self.transport, [oslo_messaging.Target(topic=topic)], [Endpoint()],
            executor="threading", pool=pool)
        self.listener.start()

    def count(self):
        with self.lock:
            return len(self.records)

    def snapshot(self):
        with self.lock:
            return list(self.records)

    def stop(self):
        self.listener.stop()
        self.listener.wait()
        self.transport.cleanup()


class LocalSubscriber(threading.Thread):
    """A local subscriber of the service's socket (found through the glob),
    recording each notification with the time it arrived."""

    def __init__(self, pattern):
        super().__init__(daemon=True)
        self.pattern = pattern
        self.records = []
        self.path = None
        self.sub = None
        self.ready = threading.Event()
        self.stopping = False
        self.error = None
        self.start()

    def state(self):
        return "%d received, %s dropped, error %r, connected %s" % (
            len(self.records), self.sub.dropped if self.sub else "-", self.error,
            self.sub.connected if self.sub else "-")

    def run(self):
        import libnotif
        while not self.stopping:
            found = glob.glob(self.pattern)
            if found:
                self.path = found[0]
                break
            time.sleep(0.01)
        else:
            return
        self.sub = libnotif.Subscriber(self.path, reconnect=False, timeout=None, markers=True)
        self.ready.set()
        while not self.stopping:
            try:
                msg = self.sub.recv(timeout=0.2)
            except Exception as exc:  # reported by the test
                self.error = exc
                raise
            if msg is not None:
                self.records.append((msg, time.monotonic()))

    def stop(self):
        self.stopping = True
        self.join(10)
        if self.sub is not None:
            self.sub.close()


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]
