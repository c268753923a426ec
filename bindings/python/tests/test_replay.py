"""Resuming with cursors against the real library: the publisher's replay
ring (replay_bytes), the subscriber's cursor, after=, and the reconnections
that resume by themselves."""

import errno
import os
import subprocess
import sys
import threading
import time

import pytest

import libnotif

from conftest import wait_for, wait_subscribers

# The subscriber process: prints READY once connected, then the n of each of
# COUNT notifications, then "DROPPED <count>" lines if any, "CURSOR <cursor>".
SUBSCRIBER = r"""
import sys, libnotif
path, after, types, count = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4])
# Without a cursor, from the ring: then every notification is numbered (one
# that arrived before the publisher read the request has no cursor).
sub = libnotif.Subscriber(path, after=after, replay=after is None,
                       event_types=types.split(",") if types else None,
                       reconnect=False, timeout=60)
print("READY", flush=True)
got = []
for notification in sub:
    got.append(notification["n"])
    if len(got) == count:
        break
for n in got:
    print(n)
print("DROPPED", sub.dropped, sub.dropped_unknown)
print("CURSOR", sub.cursor, flush=True)
sub.close()
"""


def numbered(n):
    return {"event_type": "keep.it" if n % 3 == 0 else "other", "n": n}


def emit_all(pub, start, end):
    """Emits notifications [start, end); a full backlog (EAGAIN drops the
    notification) is waited out and the same one emitted again."""
    for n in range(start, end):
        data = '{"event_type":"%s","n":%d}' % (numbered(n)["event_type"], n)
        while True:
            try:
                pub.emit(data)
                break
            except libnotif.NotifError as exc:
                if exc.errno != errno.EAGAIN:
                    raise
                time.sleep(0.001)


def wait_next_seq(pub, n):
    return wait_for(lambda: pub.stats()["next_seq"] >= n and pub.stats(),
                    what="next_seq %d" % n)


class SubscriberProcess:
    def __init__(self, path, after, types, count):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, path, after or "", types, str(count)],
            stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "READY"

    def finish(self):
        out, _ = self.proc.communicate(timeout=120)
        assert self.proc.returncode == 0, out[-2000:]
        lines = out.split("\n")
        cursor = [line.split()[1] for line in lines if line.startswith("CURSOR ")][0]
        dropped = [line for line in lines if line.startswith("DROPPED ")][0]
        numbers = [int(line) for line in lines if line.strip().isdigit()]
        return numbers, dropped, cursor

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("filtered", [False, True])
def test_resume_in_another_process(sockdir, filtered):
    """A process reads 1,000 of a numbered stream, saves its cursor, exits; the
    publisher emits 5,000 more; a new process with after= gets exactly the
    next ones in order, then live: no gap, no duplicate (with a filter on the
    resuming process, exactly the ones that pass it)."""
    path = os.path.join(sockdir, "r.sock")
    with libnotif.Publisher(path, replay_bytes=16 << 20, linger_ms=100) as pub:
        first = SubscriberProcess(path, None, "", 1000)
        try:
            wait_subscribers(pub, 1)
            emit_all(pub, 0, 1500)  # it leaves after 1,000 of them
            numbers, dropped, cursor = first.finish()
        finally:
            first.kill()
        assert numbers == list(range(1000)) and dropped == "DROPPED 0 0"
        emit_all(pub, 1500, 6500)  # nobody listening: the ring keeps them
        wait_next_seq(pub, 6500)
        want = [n for n in range(1000, 7000) if not filtered or n % 3 == 0]
        second = SubscriberProcess(path, cursor, "keep.*" if filtered else "", len(want))
        try:
            wait_subscribers(pub, 1)
            emit_all(pub, 6500, 7000)  # live
            numbers, dropped, _ = second.finish()
        finally:
            second.kill()
        assert dropped == "DROPPED 0 0"
        assert numbers == want
        assert pub.stats()["replayed"] > 0


def test_slow_subscriber_resumes_without_loss(sockdir):
    """A subscriber that reads slowly, on a publisher with the disconnect
    policy, a small subscriber buffer and a large ring, is disconnected and
    reconnects many times during a 100,000-notification stream and ends with
    every notification exactly once, in order."""
    total = 100000
    path = os.path.join(sockdir, "slow.sock")
    with libnotif.Publisher(path, slow_policy="disconnect", subscriber_buffer=16 << 10,
                         memory_limit=128 << 20, replay_bytes=32 << 20, linger_ms=100) as pub:
        sub = libnotif.Subscriber(path, replay=True, timeout=60)  # the first one numbered too
        wait_subscribers(pub, 1)
        failed = []

        def emitter():
            try:
                for n in range(0, total, 500):  # bursts: it falls behind again and again
                    emit_all(pub, n, n + 500)
                    time.sleep(0.02)
            except Exception as exc:  # noqa: BLE001 - reported by the test
                failed.append(exc)

        thread = threading.Thread(target=emitter)
        thread.start()
        try:
            deadline = time.monotonic() + 100
            for want in range(total):
                line = sub.recv_line(timeout=max(0.1, deadline - time.monotonic()))
                assert line is not None, "stuck at %d after %d reconnections: %s" % (
                    want, sub.reconnects, pub.stats())
                n = int(line[line.rindex(b":") + 1:-1])
                assert n == want, "notification %d is number %d after %d reconnections: %s" % (
                    want, n, sub.reconnects, pub.stats())
                if want % 25 == 0:
                    time.sleep(0.001)  # slow
        finally:
            thread.join()
        assert not failed
        stats = pub.stats()
        print("%d notifications, %d reconnections; disconnected %d, replayed %d"
              % (total, sub.reconnects, stats["disconnected"], stats["replayed"]))
        assert sub.reconnects >= 2 and stats["disconnected"] >= 2, (sub.reconnects, stats)
        assert sub.dropped == 0 and sub.dropped_unknown == 0
        assert sub.cursor.endswith("-%d" % (total - 1))
        assert sub.recv(timeout=0.2) is None
        sub.close()


def test_old_cursor_and_other_epoch(sockdir):
    """A cursor older than the ring: a dropped count of what the ring lost; a
    cursor of another epoch: an unknown count; then the ring, then live."""
    total = 5000
    path = os.path.join(sockdir, "old.sock")
    with libnotif.Publisher(path, replay_bytes=64 << 10, linger_ms=100) as pub:
        first = libnotif.Subscriber(path, replay=True, timeout=10)  # an early one numbered too
        wait_subscribers(pub, 1)
        pub.emit(numbered(0))
        assert first.recv()["n"] == 0
        old = first.cursor
        epoch, _, seq = old.partition("-")
        assert seq == "0" and len(epoch) == 16
        first.close()
        # In steps the server thread takes one by one: the ring keeps whole
        # batches, and one batch larger than the ring would leave it empty.
        for n in range(1, total, 500):
            emit_all(pub, n, min(n + 500, total))
            wait_next_seq(pub, min(n + 500, total))
        other = "%016x-5" % (int(epoch, 16) ^ 0xFFFFFFFFFFFFFFFF)
        for i, (after, unknown) in enumerate([(old, False), (other, True)]):
            end = total + i  # the previous round emitted one live
            stats = wait_next_seq(pub, end)
            oldest = stats["replay_oldest"]
            assert 1 < oldest < end and stats["replay_messages"] == end - oldest, stats
            sub = libnotif.Subscriber(path, after=after, timeout=10)
            assert [sub.recv()["n"] for _ in range(oldest, end)] == list(range(oldest, end))
            if unknown:
                assert sub.dropped == 0 and sub.dropped_unknown == 1
            else:
                assert sub.dropped == oldest - 1 and sub.dropped_unknown == 0
            pub.emit(numbered(end))
            assert sub.recv()["n"] == end and sub.cursor == "%s-%d" % (epoch, end)
            sub.close()


def test_replay_bytes_option(sockdir):
    path = os.path.join(sockdir, "opt.sock")
    with pytest.raises(libnotif.NotifError) as info:
        libnotif.Publisher(path, memory_limit=1 << 20, replay_bytes=1 << 20)
    assert info.value.errno == errno.EINVAL and "replay" in str(info.value)
    with libnotif.Publisher(path, replay_bytes=1 << 20) as pub:
        stats = pub.stats()
        for key in ("replayed", "replay_bytes", "replay_messages", "replay_oldest", "next_seq"):
            assert stats[key] == 0, key
        assert set(libnotif.request_stats(path)) >= set(stats)
