"""Every Python snippet in README.md, docs/*.md and bindings/python/README.md runs as
pasted, each alone in a fresh interpreter, bounded in time (a snippet that
hangs fails).

Two things are mapped, and only these: the directory /run/myd becomes a
temporary one, and the group name myd-readers becomes the name of a group
that exists here. A snippet that publishes must run to its end. A snippet
that only reads (a consumer loop) is given a publisher at its path that
emits a notification it asks for until the snippet prints one; it is then
stopped, unless it ends by itself (at end of stream).
"""

import glob
import grp
import os
import re
import subprocess
import sys
import threading
import time

import pytest

import libnotif

from conftest import REPO_ROOT

READMES = ["README.md", os.path.join("bindings", "python", "README.md")] + sorted(
    os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))
)
LIMIT = 60  # seconds a snippet may take


def blocks():
    for name in READMES:
        with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
            text = f.read()
        for i, block in enumerate(re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)):
            yield "%s#%d" % (name, i), block


BLOCKS = list(blocks())


def test_the_readmes_have_python_snippets():
    names = [name for name, _ in BLOCKS]
    assert sum(n.startswith(("README.md", "docs" + os.sep)) for n in names) >= 2, names
    assert sum(n.startswith("bindings") for n in names) >= 6, names


def _as_pasted_here(block, directory):
    group = grp.getgrgid(os.getgid()).gr_name
    return block.replace("/run/myd", directory).replace("myd-readers", group)


def _feed(path, stop):
    """A publisher at path emitting what the consumer snippets ask for, until stop."""
    pub = None
    while not stop.is_set():
        try:
            if pub is None:
                pub = libnotif.Publisher(path)
            pub.emit({"event_type": "compute.instance.update", "priority": "ERROR",
                      "payload": {"from": "the test"}})
        except OSError:
            pass
        time.sleep(0.05)
    if pub is not None:
        pub.close()


@pytest.mark.parametrize("name,block", BLOCKS, ids=[name for name, _ in BLOCKS])
def test_snippet_runs_as_pasted(name, block, sockdir):
    code = _as_pasted_here(block, sockdir)
    assert "libnotif" in code or "socket" in code, name
    publishes = "Publisher" in code
    if publishes:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=sockdir, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail("%s did not end within %ss (hangs?)\n%s\n%s" % (name, LIMIT, code, err))
        assert proc.returncode == 0, "%s failed:\n%s\n%s" % (name, code, err)
        return
    # The publisher is there first: a reader may connect only once.
    stop = threading.Event()
    path = os.path.join(sockdir, "notifications.sock")
    feeder = threading.Thread(target=_feed, args=(path, stop))
    feeder.start()
    deadline = time.monotonic() + LIMIT
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=sockdir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()))
    reader.start()
    reader.join(LIMIT)
    stop.set()
    feeder.join()
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate()
    assert first and first[0].strip(), "%s printed nothing within %ss:\n%s\n%s" % (
        name, LIMIT, code, err)
    assert "compute.instance.update" in first[0], first[0]
    # Stopped by us (a consumer loop), or ended by itself at end of stream.
    assert proc.returncode in (0, -9), "%s failed:\n%s\n%s" % (name, code, err)
