import os
import shutil
import tempfile
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
