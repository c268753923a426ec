import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

import pytest

REPO_ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
HEADER = os.path.join(REPO_ROOT, "include", "notif.h")


@pytest.fixture
def sockdir():
    """A short directory for sockets (sun_path holds 107 bytes: pytest's
    tmp_path can be too long)."""
    d = tempfile.mkdtemp(prefix="ntf", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.01)


def wait_subscribers(publisher, n, timeout=10.0):
    return wait_for(lambda: publisher.stats()["subscribers"] >= n, timeout,
                    "%d subscriber(s) on %s" % (n, publisher.path))


def oslo_service(body, project="svc", publisher_id="compute.host1",
                 prelude="conf_file = sys.argv[1]"):
    """The source of a service for `python -c`: PRELUDE (which sets
    conf_file), the real oslo.messaging Notifier `notifier` built from that
    config file, then BODY. json, os, sys and time are imported."""
    return textwrap.dedent("""
        import json, os, sys, time
        import oslo_messaging
        from oslo_config import cfg

    """) + textwrap.dedent(prelude).strip() + "\n" + textwrap.dedent("""
        conf = cfg.ConfigOpts()
        conf(["--config-file", conf_file], project=%r, default_config_files=[])
        notifier = oslo_messaging.Notifier(oslo_messaging.get_notification_transport(conf),
                                           publisher_id=%r)
    """ % (project, publisher_id)) + textwrap.dedent(body)


class ScriptService:
    """A service script (`python -c SOURCE ARGS...`) driven over stdin: one
    command a line, answered by one line on stdout."""

    def __init__(self, source, *args):
        self.proc = subprocess.Popen([sys.executable, "-c", source, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def read_line(self, timeout):
        """Its next line, "" when none came within TIMEOUT seconds."""
        line = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        return line[0] if line else ""

    def write_line(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def notif_cli():
    """The notif tool: target/release or target/debug as built, else built now."""
    for profile in ("release", "debug"):
        path = os.path.join(REPO_ROOT, "target", profile, "notif")
        if os.access(path, os.X_OK):
            return path
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    subprocess.run([cargo, "build", "--release", "-p", "notif-cli"], cwd=REPO_ROOT,
                   check=True, timeout=900)
    return os.path.join(REPO_ROOT, "target", "release", "notif")


class FakePublisher:
    """A scripted server: records what the client writes, sends given bytes."""

    def __init__(self, path):
        self.path = path
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(4)
        self.srv.settimeout(10)

    def accept(self):
        conn, _ = self.srv.accept()
        conn.settimeout(10)
        return conn

    @staticmethod
    def read_request(conn):
        buf = b""
        while not buf.endswith(b"\n"):
            data = conn.recv(65536)
            assert data, "client closed before writing its request"
            buf += data
        return json.loads(buf)

    def subscribe(self, **kwargs):
        """A libnotif.Subscriber of this socket (KWARGS), this side of its
        connection and the request it wrote."""
        import libnotif
        sub = libnotif.Subscriber(self.path, **kwargs)
        conn = self.accept()
        return sub, conn, self.read_request(conn)

    def redial(self, conn, sub, timeout):
        """Closes CONN: what SUB.recv(TIMEOUT) then gives (None when it only
        noticed and connected again), this side of the new connection and the
        request it wrote."""
        conn.close()
        got = sub.recv(timeout=timeout)
        conn = self.accept()
        return got, conn, self.read_request(conn)

    def close(self):
        self.srv.close()


def lines(*objs):
    return b"".join(json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in objs)
