"""Another local user against the Python client (issue 18, finding 6): the
attacker is a child forked as uid/gid 65534 that serves sockets in a shared
directory (1777) of root's; libnotif runs as root, as a monitoring agent
would.

- a socket that listens with a full backlog and never accepts must not hang
  Subscriber() or request_stats(): both give up and say why;
- a socket that accepts and trickles bytes forever must not hold
  request_stats() past its timeout;
- a publisher sending a line without a newline must not make Subscriber
  buffer without limit or rescan from the start at each read: it stops at
  64 MiB (EMSGSIZE), like the Rust, Go and C clients.

Needs root (the child must setuid); elsewhere skipped with that reason.
"""

import errno
import os
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest

import libnotif
from libnotif.errors import NotifError

NOBODY = 65534

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root: the attacker child must setuid to %d" % NOBODY),
    pytest.mark.filterwarnings("ignore:Using fork:DeprecationWarning"),
    pytest.mark.timeout(90),
]


@pytest.fixture
def shared(sockdir):
    os.chmod(sockdir, 0o1777)
    return sockdir


def _fill_backlog(path):
    """A socket at path that listens with backlog 0, its queue full, never accepting."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    held = [listener]
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
        except BlockingIOError:
            s.close()
            return held
        held.append(s)


def _listen(path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    return listener


def attacker(mode, path):
    """Forks the attacker as uid/gid 65534; returns its pid once it is ready.
    mode: "stuck" (full backlog, never accepts), "trickle" (accepts, sends a
    byte every 0.2 s, never a newline), "endless" (accepts, sends 'x' as fast
    as it is read, never a newline, up to 512 MiB)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            os.setpgid(0, 0)  # its children go with it (stop)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            if mode == "stuck":
                held = _fill_backlog(path)  # noqa: F841 (kept open)
                os.write(w, b"r")
                while True:
                    time.sleep(60)
            listener = _listen(path)
            os.write(w, b"r")
            while True:
                conn, _ = listener.accept()
                if os.fork() == 0:
                    chunk = b"x" if mode == "trickle" else b"x" * (1 << 20)
                    try:
                        for _ in range(1 << 30 if mode == "trickle" else 512):
                            conn.sendall(chunk)
                            if mode == "trickle":
                                time.sleep(0.2)
                        time.sleep(60)
                    finally:
                        os._exit(0)
                conn.close()
        except BaseException:
            pass
        finally:
            os._exit(code)
    os.close(w)
    assert os.read(r, 1) == b"r", "the attacker did not get ready"
    os.close(r)
    return pid


def stop(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.fixture
def attack(shared):
    pids = []

    def start(mode, name="evil.sock"):
        path = os.path.join(shared, name)
        pids.append(attacker(mode, path))
        return path
    yield start
    for pid in pids:
        stop(pid)


def test_subscriber_gives_up_on_a_socket_that_never_accepts(attack):
    path = attack("stuck")
    started = time.monotonic()
    with pytest.raises(NotifError) as info:
        libnotif.Subscriber(path, reconnect=False)
    assert info.value.errno == errno.EAGAIN
    assert "accepts no connection" in str(info.value)
    # Reconnecting: the constructor returns, and a bounded wait says why.
    sub = libnotif.Subscriber(path, timeout=1.0)
    with pytest.raises(TimeoutError) as timeout:
        next(iter(sub))
    assert "accepts no connection" in str(timeout.value)
    sub.close()
    assert time.monotonic() - started < 30


def test_request_stats_gives_up_on_a_socket_that_never_accepts(attack):
    path = attack("stuck")
    started = time.monotonic()
    with pytest.raises(NotifError) as info:
        libnotif.request_stats(path, timeout=2.0)
    took = time.monotonic() - started
    print("request_stats on a socket that never accepts: %s after %.2fs" % (info.value, took))
    assert info.value.errno == errno.ETIMEDOUT
    assert "accepts no connection" in str(info.value)
    assert took < 30


def test_request_stats_timeout_bounds_a_trickling_answer(attack):
    path = attack("trickle")
    started = time.monotonic()
    with pytest.raises(NotifError) as info:
        libnotif.request_stats(path, timeout=2.0)
    took = time.monotonic() - started
    print("request_stats on a trickling socket: given up after %.2fs" % took)
    assert info.value.errno == errno.ETIMEDOUT
    assert took < 30


ENDLESS_CHILD = r"""
import resource, sys, time
import libnotif
from libnotif.errors import NotifError
sub = libnotif.Subscriber(sys.argv[1], reconnect=False)
started = time.monotonic()
try:
    sub.recv_line(timeout=60)
    outcome = "returned"
except NotifError as exc:
    outcome = "errno=%d %s" % (exc.errno, exc)
usage = resource.getrusage(resource.RUSAGE_SELF)
print("%s|%d|%.2f|%.2f" % (outcome, usage.ru_maxrss, usage.ru_utime + usage.ru_stime,
                           time.monotonic() - started))
"""


def test_subscriber_stops_an_endless_line_at_64_mib(attack):
    path = attack("endless")
    proc = subprocess.run([sys.executable, "-c", ENDLESS_CHILD, path], capture_output=True,
                          text=True, timeout=80)
    assert proc.returncode == 0, proc.stderr
    outcome, maxrss_kib, cpu, took = proc.stdout.strip().split("|")
    print("Subscriber on an endless line: %s; peak RSS %d MiB, %s s CPU, %s s"
          % (outcome, int(maxrss_kib) // 1024, cpu, took))
    assert outcome.startswith("errno=%d " % errno.EMSGSIZE), outcome
    assert "over 64 MiB" in outcome
    # 64 MiB of line, the bytearray's spare room, a read, the interpreter.
    assert int(maxrss_kib) < 200 * 1024, maxrss_kib
