import ctypes
import errno
import os
import re
import shutil
import socket
import stat
import subprocess
import sys

import pytest

import libnotif
from libnotif import _lib
from libnotif.errors import NotifError

from conftest import HEADER, wait_for, wait_subscribers


def header_stats_fields():
    text = open(HEADER).read()
    m = re.search(r"typedef struct notif_stats \{(.*?)\} notif_stats;", text, re.S)
    assert m, "notif_stats not found in include/notif.h"
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    return [(name, ctype) for ctype, name in re.findall(r"^\s*(\w+)\s+(\w+)\s*;", body, re.M)]


def test_stats_structure_matches_header():
    fields = header_stats_fields()
    assert fields, "no fields parsed from notif_stats"
    ours = [(name, ctype) for name, ctype in _lib.NotifStats._fields_]
    assert [name for name, _ in fields] == [name for name, _ in ours], (
        "libnotif._lib.NotifStats differs from include/notif.h's notif_stats: update it")
    assert all(t == "uint64_t" for _, t in fields)
    assert all(c is ctypes.c_uint64 for _, c in ours)
    assert ctypes.sizeof(_lib.NotifStats) == 8 * len(fields)


def test_version_and_library_path():
    assert libnotif.version() == "0.1.0"
    assert os.path.dirname(libnotif.library_path()) == os.path.dirname(libnotif.__file__)
    assert "EMSGSIZE" in libnotif.strerror(-errno.EMSGSIZE) or libnotif.strerror(-errno.EMSGSIZE)


def test_emit_and_stats(sockdir):
    path = os.path.join(sockdir, "p.sock")
    with libnotif.Publisher(path, mode="0640") as pub:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        assert pub.emit({"event_type": "a"}) == 0
        st = pub.stats()
        assert list(st) == [name for name, _ in header_stats_fields()]
        assert st["dropped_no_subscriber"] == 1 and st["subscribers"] == 0
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        wait_subscribers(pub, 1)
        assert pub.emit({"event_type": "x", "s": "é", "n": [1, 2]}) == 1
        assert pub.emit('{ "event_type" : "y" }') == 1
        assert pub.emit(b'{"event_type":"z"}') == 1
        f = sock.makefile("rb")
        assert f.readline() == '{"event_type":"x","s":"é","n":[1,2]}\n'.encode()
        assert f.readline() == b'{"event_type":"y"}\n'
        assert f.readline() == b'{"event_type":"z"}\n'
        st = wait_for(lambda: (lambda s: s if s["delivered"] == 3 else None)(pub.stats()))
        assert st["emitted"] == 3 and st["fanout"] == 3
        sock.close()
    assert not os.path.exists(path)


def test_emit_errors(sockdir):
    path = os.path.join(sockdir, "e.sock")
    with libnotif.Publisher(path, max_message=1024) as pub:
        # With nobody connected, emit does not look at the input.
        assert pub.emit(b"{not json") == 0
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        wait_subscribers(pub, 1)
        with pytest.raises(NotifError) as info:
            pub.emit(b"{not json")
        assert info.value.errno == errno.EINVAL
        assert isinstance(info.value, OSError)
        assert "byte" in info.value.strerror  # the library's message gives the offset
        with pytest.raises(NotifError) as info:
            pub.emit({"event_type": "big", "payload": "x" * 2000})
        assert info.value.errno == errno.EMSGSIZE
        assert info.value.strerror
        with pytest.raises(TypeError):
            pub.emit(42)
        assert pub.stats()["rejected"] == 2
        sock.close()


def test_open_errors(sockdir):
    cases = []
    with pytest.raises(NotifError) as info:
        libnotif.Publisher(os.path.join(sockdir, "x" * 120 + ".sock"))
    cases.append((info.value, errno.ENAMETOOLONG, "107"))
    with pytest.raises(NotifError) as info:
        libnotif.Publisher(os.path.join(sockdir, "missing", "p.sock"))
    cases.append((info.value, errno.ENOENT, os.path.join(sockdir, "missing")))
    regular = os.path.join(sockdir, "file")
    open(regular, "w").close()
    with pytest.raises(NotifError) as info:
        libnotif.Publisher(regular)
    cases.append((info.value, errno.EEXIST, regular))
    live = os.path.join(sockdir, "live.sock")
    with libnotif.Publisher(live):
        with pytest.raises(NotifError) as info:
            libnotif.Publisher(live)
        cases.append((info.value, errno.EADDRINUSE, live))
    for exc, code, needle in cases:
        assert exc.errno == code, exc
        assert needle in exc.strerror, exc
        assert exc.errno_name == errno.errorcode[code]
        assert errno.errorcode[code] in str(exc)
    assert open(regular).read() == ""  # left untouched


def test_option_errors(sockdir):
    path = os.path.join(sockdir, "o.sock")
    with pytest.raises(NotifError) as info:
        libnotif.Publisher(path, max_subscribers=0)
    assert info.value.errno == errno.EINVAL and "max_subscribers" in str(info.value)
    with pytest.raises(NotifError) as info:
        libnotif.Publisher(path, mode=0o1777)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(NotifError) as info:
        libnotif.Publisher(path, subscriber_buffer=64 * 1024, max_message=60 * 1024)
    assert info.value.errno == errno.EINVAL and info.value.strerror
    with pytest.raises(ValueError):
        libnotif.Publisher(path, slow_policy="sometimes")
    with pytest.raises(ValueError):
        libnotif.Publisher(path, mode="rw-")
    with libnotif.Publisher(path, mode=0o600, slow_policy="disconnect", linger_ms=0,
                         backlog=1 << 20, max_subscribers=4, subscriber_buffer=1 << 20,
                         max_message=4096):
        pass


def test_close_twice_and_after_close(sockdir):
    path = os.path.join(sockdir, "c.sock")
    pub = libnotif.Publisher(path)
    assert os.path.exists(path)
    pub.close()
    pub.close()
    assert pub.closed and not os.path.exists(path)
    with pytest.raises(NotifError) as info:
        pub.emit({"a": 1})
    assert info.value.errno == errno.EBADF
    with pytest.raises(NotifError):
        pub.stats()
    with libnotif.Publisher(path) as pub2:
        pass
    with libnotif.Publisher(path) as pub2:  # the path is free again
        pub2.close()


def test_handle_is_dead_in_forked_child(sockdir):
    path = os.path.join(sockdir, "f.sock")
    with libnotif.Publisher(path) as pub:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                try:
                    pub.emit({"a": 1})
                except NotifError as exc:
                    code = 0 if exc.errno == errno.EBADF else 2
                pub.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert os.path.exists(path)  # the child's close left the parent's socket
        assert pub.emit({"a": 1}) == 0


def run_python(code, env_extra):
    env = dict(os.environ)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)


def test_notif_library_override(sockdir):
    copy = os.path.join(sockdir, "libnotif-copy.so")
    shutil.copyfile(libnotif.library_path(), copy)
    path = os.path.join(sockdir, "ov.sock")
    code = ("import libnotif; p = libnotif.Publisher(%r); print(libnotif.library_path()); p.close()" % path)
    proc = run_python(code, {"NOTIF_LIBRARY": copy})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == copy
    # A bad override is an error, not a silent fallback to the shipped copy.
    proc = run_python("import libnotif; libnotif.Publisher(%r)" % path,
                      {"NOTIF_LIBRARY": os.path.join(sockdir, "nope.so")})
    assert proc.returncode != 0
    assert "NOTIF_LIBRARY" in proc.stderr and "nope.so" in proc.stderr
    # Without it: the copy shipped in the package.
    env = {k: v for k, v in os.environ.items() if k != "NOTIF_LIBRARY"}
    proc = subprocess.run([sys.executable, "-c", "import libnotif; print(libnotif.library_path())"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == os.path.join(os.path.dirname(libnotif.__file__), "libnotif.so")


def test_emit_from_threads_then_close(sockdir):
    import threading
    path = os.path.join(sockdir, "t.sock")
    pub = libnotif.Publisher(path)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(path)
    wait_subscribers(pub, 1)
    errors = []

    def worker(i):
        for j in range(200):
            try:
                pub.emit({"t": i, "j": j})
            except NotifError as exc:
                if exc.errno != errno.EBADF:
                    errors.append(exc)
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    pub.close()
    for t in threads:
        t.join(30)
    sock.close()
    assert not errors
