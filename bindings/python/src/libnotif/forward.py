"""libnotif-forward: carries a host's notif notifications to a message broker
through oslo.messaging's own ``messagingv2`` driver, so that the service
itself keeps ``driver = unix`` and never waits for the broker.

    libnotif-forward --config-file /etc/libnotif/forward.conf

    [notif_forward]
    sock_path = /run/nova/notifications-{pid}.sock
    cursor_file = /var/lib/libnotif-forward/nova.cursors

    [oslo_messaging_notifications]
    transport_url = rabbit://nova:secret@broker:5672/

    [oslo_messaging_rabbit]
    amqp_durable_queues = true

It reads every socket ``sock_path`` names (a path, a glob, or the driver's
``{pid}`` template, read as a glob: workers that come and go are followed)
with cursors, and hands each notification, as the service's Notifier built it
(message_id, publisher_id, event_type, priority, payload, timestamp), to
oslo.messaging's MessagingV2Driver: the broker gets what the service would
have sent with ``driver = messagingv2`` (the request context excepted: the
unix driver's line has none, so it is ``{}``).

At least once: a notification's cursor is recorded only after the driver
returned without error (with the rabbit driver: after the broker's publisher
confirm, which oslo.messaging always asks for; with kafka: after
librdkafka's delivery report), and the cursor file (the format of ``notif tail
--cursor-file``) is written from those only. While the broker is unreachable
the forwarder retries the same notification with a back-off and reads
nothing more: the service's replay ring (``sock_replay_bytes``) holds what it
has not forwarded, and it resumes after its cursor. What the ring no longer
held is logged (WARNING, with the count) and counted, never skipped silently.
"""

import argparse
import copy
import fnmatch
import glob
import json
import logging
import os
import select
import signal
import sys
import time

from oslo_config import cfg

from .errors import NotifError, SubscriptionError
from .subscriber import Subscriber

LOG = logging.getLogger("libnotif.forward")

GROUP = "notif_forward"

_opts = [
    cfg.StrOpt("sock_path",
               help="The notif socket(s) to forward (required): a path "
                    "(/run/nova/notifications.sock), a glob "
                    "(/run/nova/notifications-*.sock), or the unix driver's own "
                    "sock_path with '{pid}' (read as '*': one socket per worker). "
                    "Globs are re-scanned every rescan_interval seconds, so workers "
                    "that start later are picked up and the sockets of workers that "
                    "are gone are dropped once drained."),
    cfg.StrOpt("cursor_file",
               help="Where the forwarder records, per socket, the cursor of the last "
                    "notification the broker confirmed (the JSON object of notif tail "
                    "--cursor-file, replaced atomically). On start it resumes after "
                    "these cursors. Required: without it a restart could not know "
                    "where it stopped. Its directory must exist and be writable."),
    cfg.StrOpt("transport_url", secret=True,
               help="The broker to forward to (an oslo.messaging transport URL: "
                    "rabbit://..., kafka://...). Default: [oslo_messaging_notifications] "
                    "transport_url, then [DEFAULT] transport_url, as for any oslo "
                    "notifier."),
    cfg.ListOpt("topics", default=["notifications"],
                help="The topics the notifications are published on (as "
                     "[oslo_messaging_notifications] topics): each goes to "
                     "<topic>.<priority>, e.g. notifications.info."),
    cfg.IntOpt("publish_retry", default=0, min=-1,
               help="The 'retry' handed to oslo's driver for one attempt (0: one "
                    "try; -1: the driver itself retries forever, blocking, with the "
                    "rabbit_retry_interval/backoff options). With the default, the "
                    "forwarder retries on its own, with retry_interval, so that it "
                    "logs the outage once and stops promptly on SIGTERM."),
    cfg.FloatOpt("retry_interval", default=0.5, min=0.01,
                 help="Seconds before the first retry of a notification the broker "
                      "did not take; doubled on each failure, up to "
                      "retry_interval_max."),
    cfg.FloatOpt("retry_interval_max", default=10.0, min=0.01,
                 help="The longest wait between two attempts while the broker is "
                      "down (seconds)."),
    cfg.FloatOpt("cursor_save_interval", default=1.0, min=0.0,
                 help="While notifications flow, the cursor file is written at most "
                      "this often (seconds; it is always written when the forwarder "
                      "is idle and at exit). A forwarder killed with SIGKILL repeats, "
                      "when restarted, at most what it forwarded since the last write: "
                      "about this many seconds of notifications. 0: after each one."),
    cfg.FloatOpt("rescan_interval", default=1.0, min=0.05,
                 help="How often (seconds) the glob of sock_path is re-scanned for "
                      "sockets that appeared or disappeared."),
    cfg.BoolOpt("fsync", default=True,
                help="fsync the cursor file (and its directory) each time it is "
                     "written, so that after a crash of the host it is the last one "
                     "written. Off: it may be an older one (more repeats), never a "
                     "newer one."),
]


def list_opts():
    """For oslo-config-generator (namespace libnotif.forward)."""
    return [(GROUP, copy.deepcopy(_opts))]


class _Stop(BaseException):
    """Raised by the SIGTERM/SIGINT handler to leave a blocking send (a
    BaseException, as KeyboardInterrupt: no driver's `except Exception` keeps it)."""


class ConfigError(Exception):
    pass


# -- the cursor file ------------------------------------------------------------
def read_cursors(path):
    """{socket: cursor} from the cursor file; {} when missing or empty."""
    try:
        with open(path, "rb") as f:
            text = f.read(16 << 20)
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
        raise ConfigError("%s is not a cursor file (a JSON object of socket path to "
                          "cursor); it is left as it is" % path)
    return obj


def write_cursors(path, cursors, sync=True):
    """Replaces the cursor file atomically (temporary file, then rename)."""
    text = json.dumps(cursors, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    tmp = "%s.tmp" % path
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    try:
        os.write(fd, text)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    if sync:
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def sock_glob(template):
    """The glob of sockets a sock_path names ({pid} read as *)."""
    return template.replace("{pid}", "*")


def _is_glob(pattern):
    return any(c in pattern for c in "*?[")


# -- the broker side ------------------------------------------------------------
class BrokerSink:
    """Publishes notification dicts with oslo.messaging's MessagingV2Driver, and
    raises when the notification did not reach the broker (the driver itself
    logs and swallows errors, which would let the cursor move past a
    notification the broker never had)."""

    def __init__(self, conf, transport_url, topics):
        import oslo_messaging
        from oslo_messaging.notify import messaging as notify_messaging

        self._oslo = oslo_messaging
        url = transport_url
        self.transport = oslo_messaging.get_notification_transport(conf, url=url)
        self.topics = list(topics)
        # oslo's own driver: the same envelope (oslo.version 2.0) and message.
        self.driver = notify_messaging.MessagingV2Driver(conf, topics=self.topics,
                                                         transport=self.transport)
        self.kind = getattr(self.transport, "_driver", None).__class__.__name__

    def send(self, message, retry):
        priority = str(message.get("priority") or "info").lower()
        pconn = getattr(getattr(self.transport, "_driver", None), "pconn", None)
        watch = _kafka_watch(pconn) if pconn is not None else None
        for topic in self.driver.topics:
            target = self._oslo.Target(topic="%s.%s" % (topic, priority))
            # The AMQP driver adds _unique_id to the dict it is given: a fresh
            # copy per attempt, as the service's Notifier hands a fresh one.
            self.transport._send_notification(target, {}, dict(message),
                                              version=self.driver.version, retry=retry)
        if watch is not None:
            watch.wait(len(self.driver.topics))

    def close(self):
        try:
            self.transport.cleanup()
        except Exception:
            LOG.debug("closing the transport", exc_info=True)


class _KafkaWatch:
    """oslo's kafka driver only queues in librdkafka (produce() returns at once,
    and it logs and drops a KafkaException): this wraps its producer so that
    each produce() asks for a delivery report, and wait() returns once the
    broker acknowledged them (librdkafka's default acks=all) or raises when
    one failed or was never queued, so that it is sent again."""

    def __init__(self, producer):
        self.real = producer
        self.pending = 0
        self.delivered = 0
        self.errors = []

    def produce(self, topic, value=None, *args, **kwargs):
        kwargs["on_delivery"] = self._report
        try:
            self.real.produce(topic, value, *args, **kwargs)
        except BufferError:
            raise  # its queue is full: the driver polls and produces again
        except BaseException as exc:
            self.errors.append(exc)
            raise
        self.pending += 1

    def _report(self, err, msg):
        self.pending -= 1
        if err is not None:
            self.errors.append(err)
        else:
            self.delivered += 1

    def __getattr__(self, name):
        return getattr(self.real, name)

    def start(self):
        self.delivered = 0
        self.errors = []

    def wait(self, expected):
        started = time.monotonic()
        warned = False
        while self.pending > 0 and not self.errors:
            self.real.flush(1.0)
            if not warned and self.pending > 0 and time.monotonic() - started > 10:
                warned = True
                LOG.warning("kafka: the broker has not acknowledged a notification for "
                            "10 s; waiting (librdkafka retries it until message.timeout.ms)")
        if self.errors or self.delivered < expected:
            errors, self.errors = self.errors, []
            raise IOError("kafka: not acknowledged by the broker: %s"
                          % (errors or "never queued"))


def _kafka_watch(pconn):
    """The _KafkaWatch around the kafka driver's producer (made now if needed)."""
    producer = getattr(pconn, "producer", None)
    if producer is None and hasattr(pconn, "_ensure_producer"):
        pconn._ensure_producer()
        producer = pconn.producer
    if producer is None:
        return None
    if not isinstance(producer, _KafkaWatch):
        producer = pconn.producer = _KafkaWatch(producer)
    producer.start()
    return producer


# -- the forwarder ----------------------------------------------------------------
class _Source:
    def __init__(self, path, after):
        self.path = path
        kwargs = {"after": after} if after else {"replay": True}
        self.sub = Subscriber(path, reconnect=True, **kwargs)
        self.dropped = 0
        self.dropped_unknown = 0
        self.forwarded = 0


class Forwarder:
    def __init__(self, conf, sink=None):
        conf.register_opts(_opts, group=GROUP)
        g = conf[GROUP]
        if not g.sock_path:
            raise ConfigError("[%s] sock_path is not set: set it to the service's socket, "
                              "e.g. sock_path = /run/nova/notifications-{pid}.sock" % GROUP)
        if not g.cursor_file:
            raise ConfigError("[%s] cursor_file is not set: set it to a file the forwarder "
                              "may write, e.g. cursor_file = "
                              "/var/lib/libnotif-forward/nova.cursors" % GROUP)
        self.conf = conf
        self.pattern = sock_glob(g.sock_path)
        self.cursor_file = g.cursor_file
        self.retry = g.publish_retry
        self.retry_interval = g.retry_interval
        self.retry_interval_max = max(g.retry_interval_max, g.retry_interval)
        self.save_interval = g.cursor_save_interval
        self.rescan_interval = g.rescan_interval
        self.fsync = g.fsync
        self.cursors = read_cursors(self.cursor_file)
        self.saved = dict(self.cursors)
        self.sink = sink if sink is not None else BrokerSink(conf, g.transport_url, g.topics)
        self.sources = {}
        self.forwarded = 0
        self.lost = 0
        self.lost_unknown = 0
        self.failures = 0
        self._last_save = time.monotonic()
        self._last_scan = 0.0
        self.stop_requested = False
        self._sending_since = None   # a send in progress: since when
        self._interruptible = False  # in the back-off sleep

    def request_stop(self):
        """For SIGTERM/SIGINT: a send that is going well finishes (and its cursor
        is recorded: nothing is repeated after the restart); a send that takes
        over 2 s (the broker is down or stuck), the back-off sleep, and any wait
        for the sockets are left at once, by raising _Stop; so is everything
        at a second signal."""
        again = self.stop_requested
        self.stop_requested = True
        since = self._sending_since
        if again or self._interruptible or since is None or time.monotonic() - since > 2.0:
            raise _Stop()

    # -- sockets -------------------------------------------------------------------
    def _present(self):
        if _is_glob(self.pattern):
            return set(glob.glob(self.pattern))
        return {self.pattern}

    def rescan(self):
        self._last_scan = time.monotonic()
        present = self._present()
        for path in sorted(present - set(self.sources)):
            try:
                self.sources[path] = _Source(path, self.cursors.get(path))
            except (NotifError, SubscriptionError, OSError) as exc:
                LOG.warning("cannot read %s: %s (retried)", path, exc)
                continue
            LOG.info("forwarding %s (%s)", path,
                     "after %s" % self.cursors[path] if path in self.cursors
                     else "from the start of its replay ring")
        if _is_glob(self.pattern):
            # Saved cursors of workers that are gone (never to come back: a new
            # worker has a new pid, a new path).
            for path in list(self.cursors):
                if path not in present and path not in self.sources and \
                        fnmatch.fnmatchcase(path, self.pattern):
                    del self.cursors[path]
        for path in list(self.sources):
            src = self.sources[path]
            if path in present or src.sub.connected:
                continue
            # Gone (a worker that exited) and nothing left to read on it.
            src.sub.close()
            del self.sources[path]
            self.cursors.pop(path, None)
            LOG.info("%s is gone: stopped reading it (%d forwarded)", path, src.forwarded)

    # -- drops ---------------------------------------------------------------------
    def _check_drops(self, src):
        sub = src.sub
        if sub.dropped != src.dropped:
            n = sub.dropped - src.dropped
            src.dropped = sub.dropped
            self.lost += n
            LOG.warning("%d notification(s) of %s were lost before they could be "
                        "forwarded: the service's replay ring (sock_replay_bytes) no longer "
                        "held them (%d lost in all)", n, src.path, self.lost)
        if sub.dropped_unknown != src.dropped_unknown:
            src.dropped_unknown = sub.dropped_unknown
            self.lost_unknown += 1
            LOG.warning("%s restarted since its last forwarded notification (cursor %s): "
                        "what it emitted before the restart and had not forwarded is lost "
                        "(count unknown); forwarding everything its replay ring holds",
                        src.path, self.cursors.get(src.path))

    # -- sending -------------------------------------------------------------------
    def _send(self, src, line):
        try:
            message = json.loads(line)
        except ValueError:
            LOG.warning("%s: skipped a line that is not JSON: %r", src.path, line[:200])
            return
        if not isinstance(message, dict):
            LOG.warning("%s: skipped a line that is not a JSON object", src.path)
            return
        delay = self.retry_interval
        down_since = None
        attempts = 0
        while True:
            try:
                self._sending_since = time.monotonic()
                self.sink.send(message, self.retry)
                break  # (still "sending" until the cursor is recorded, below)
            except _Stop:
                raise
            except Exception as exc:
                attempts += 1
                self.failures += 1
                if down_since is None:
                    down_since = time.monotonic()
                    LOG.error("the broker did not take a notification (%s: %s); retrying "
                              "with a back-off up to %.1f s; the service's replay ring holds "
                              "what is not forwarded meanwhile", type(exc).__name__, exc,
                              self.retry_interval_max)
                else:
                    LOG.debug("attempt %d failed: %s", attempts, exc)
                self._sending_since = None
                # Nothing is read meanwhile; save what was confirmed before.
                self.save(force=True)
                self._interruptible = True
                try:
                    if self.stop_requested:
                        raise _Stop()
                    time.sleep(delay)
                finally:
                    self._interruptible = False
                delay = min(delay * 2, self.retry_interval_max)
        if down_since is not None:
            LOG.warning("the broker took notifications again after %.1f s (%d failed "
                        "attempts)", time.monotonic() - down_since, attempts)
        self.forwarded += 1
        src.forwarded += 1
        self.cursors[src.path] = src.sub.cursor
        self._sending_since = None
        if self.stop_requested:
            raise _Stop()

    # -- cursors -------------------------------------------------------------------
    def save(self, force=False):
        if self.cursors == self.saved:
            return
        now = time.monotonic()
        if not force and now - self._last_save < self.save_interval:
            return
        try:
            write_cursors(self.cursor_file, self.cursors, self.fsync)
        except OSError as exc:
            LOG.error("cannot write the cursor file %s: %s", self.cursor_file, exc)
            return
        self.saved = dict(self.cursors)
        self._last_save = now

    # -- the loop --------------------------------------------------------------------
    def step(self, timeout):
        """Reads and forwards what is ready (waits up to `timeout` seconds)."""
        if time.monotonic() - self._last_scan >= self.rescan_interval:
            self.rescan()
        srcs = list(self.sources.values())
        fds = [s.sub.fileno() for s in srcs if s.sub.connected]
        idle = True
        if fds:
            try:
                select.select(fds, [], [], timeout)
            except InterruptedError:
                pass
        else:
            time.sleep(min(timeout, 0.1))
        for src in srcs:
            # Drain what this socket has (bounded, so one busy socket does not
            # starve the others), then the next.
            for _ in range(1000):
                try:
                    line = src.sub.recv_line(timeout=0)
                except (NotifError, SubscriptionError) as exc:
                    LOG.error("%s: %s; stopped reading it", src.path, exc)
                    src.sub.close()
                    self.sources.pop(src.path, None)
                    break
                self._check_drops(src)
                if line is None:
                    break
                idle = False
                self._send(src, line)
                self.save()
        if idle:
            self.save(force=True)
        return not idle

    def run(self):
        LOG.info("libnotif-forward: %s -> %s (topics %s), cursors in %s", self.pattern,
                 self.sink.kind if hasattr(self.sink, "kind") else "sink",
                 ",".join(getattr(self.sink, "topics", [])), self.cursor_file)
        self.rescan()
        try:
            while True:
                self.step(0.2)
        finally:
            self.close()

    def close(self):
        """Saves the cursors and closes the sockets (not the sink)."""
        try:
            self.save(force=True)
        finally:
            for src in self.sources.values():
                src.sub.close()
            self.sources = {}
            LOG.info("libnotif-forward: stopping: %d forwarded, %d lost before forwarding "
                     "(and %d restarts of a service with an unknown count)", self.forwarded,
                     self.lost, self.lost_unknown)


def main(argv=None):
    parser_conf = cfg.ConfigOpts()
    parser_conf.register_opts(_opts, group=GROUP)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--debug", action="store_true")
    known, rest = pre.parse_known_args(sys.argv[1:] if argv is None else argv)
    parser_conf(rest, project="libnotif-forward", prog="libnotif-forward")
    logging.basicConfig(level=logging.DEBUG if known.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    forwarder = None

    def on_signal(signum, frame):
        if forwarder is None:
            raise _Stop(signum)
        forwarder.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        forwarder = Forwarder(parser_conf)
    except ConfigError as exc:
        LOG.error("%s", exc)
        return 2
    except _Stop:
        return 0
    try:
        forwarder.run()
    except _Stop:
        pass
    finally:
        # No second signal while the transport closes.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        forwarder.sink.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
