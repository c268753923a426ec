"""Access control and socket activation from Python: Publisher(allow_uids=,
allow_gids=), Publisher.from_fd(), Publisher.from_systemd(), and the oslo
driver's sock_allow_users / sock_allow_groups.

The allow-list tests connect as another user from forked children that drop
their privileges, so they need root (CI runs as root); elsewhere they are
skipped with that reason.
"""

import errno
import fcntl
import grp
import logging
import os
import pwd
import socket
import stat
import subprocess
import sys
import time

import pytest

import libnotif
from libnotif.errors import NotifError

from conftest import wait_for, wait_subscribers

NOBODY = 65534
OTHER = 65533  # a uid/gid nobody lists

# The children forked to connect only make socket calls before _exit; eventlet
# (imported by oslo.messaging in other tests) warns about any fork.
pytestmark = pytest.mark.filterwarnings("ignore:Using fork:DeprecationWarning")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: the child connecting as uid %d must setuid to it" % NOBODY)


# -- connecting as another user ------------------------------------------------
def connect_as(path, uid, gid, groups=()):
    """Forks a child that becomes uid/gid (supplementary groups `groups`),
    connects to `path` and waits up to 10 s for its first line. Exit status: 0
    it read a notification, 1 it was closed at accept (end-of-file at once, or
    the "denied" error line, then end-of-file), 2 timeout or read error, 4
    anything else, 20 it could not drop privileges, 30 + errno connect()
    failed."""
    pid = os.fork()
    if pid != 0:
        return pid
    code = 3
    try:
        try:
            os.setgroups(list(groups))
            os.setgid(gid)
            os.setuid(uid)
        except OSError:
            code = 20
            raise
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            code = 30 + (exc.errno or 0)
            raise
        sock.settimeout(10)
        try:
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            if not data:
                code = 1
            elif not data.startswith(b'{"notif":'):
                code = 0
            elif (data.startswith(b'{"notif":{"error":') and b'"reason":"denied"' in data
                  and data.endswith(b"\n") and not sock.recv(1)):
                code = 1
            else:
                code = 4
        except OSError:
            code = 2
    finally:
        os._exit(code)


def exit_code(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def expect_received(pub, pid):
    """Emits until the child has read something and exited (a subscriber count
    could still include the previous child's connection)."""
    deadline = time.monotonic() + 15
    while True:
        pub.emit({"event_type": "hello"})
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("the child (pid %d) never received anything" % pid)
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0


def expect_closed_at_accept(pid):
    assert exit_code(pid) == 1, "the child was not closed at accept (1: EOF)"


@pytest.fixture
def open_dir(sockdir):
    """sockdir, searchable by the unprivileged children."""
    os.chmod(sockdir, 0o755)
    return sockdir


def group_name(gid):
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return None


def user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


# -- allow lists ---------------------------------------------------------------
@needs_root
def test_listed_uid_gets_in_others_are_closed_and_counted(open_dir):
    path = os.path.join(open_dir, "uid.sock")
    with libnotif.Publisher(path, mode="0666", allow_uids=[NOBODY]) as pub:
        expect_received(pub, connect_as(path, NOBODY, NOBODY))
        expect_closed_at_accept(connect_as(path, OTHER, OTHER))
        # root is not special: it is not listed either
        expect_closed_at_accept(connect_as(path, 0, 0))
        stats = wait_for(lambda: (lambda s: s if s["denied"] == 2 else None)(pub.stats()),
                         what="two denied connections")
        assert stats["accepted"] == 3


@needs_root
def test_unlisted_uid_is_closed_at_once_and_counted_as_denied(open_dir):
    path = os.path.join(open_dir, "deny.sock")
    with libnotif.Publisher(path, mode=0o666, allow_uids=[OTHER], linger_ms=0) as pub:
        t0 = time.monotonic()
        expect_closed_at_accept(connect_as(path, NOBODY, NOBODY))
        assert time.monotonic() - t0 < 5  # EOF at once, not the child's 10 s timeout
        wait_for(lambda: pub.stats()["denied"] == 1, what="the denied counter")
        assert pub.stats()["subscribers"] == 0
        assert pub.emit({"event_type": "nobody.listens"}) == 0


@needs_root
def test_listed_group_by_id_or_name_as_primary_or_supplementary(open_dir):
    path = os.path.join(open_dir, "gid.sock")
    with libnotif.Publisher(path, mode=0o666, allow_gids=[NOBODY]) as pub:
        expect_received(pub, connect_as(path, OTHER, NOBODY))           # primary
        expect_received(pub, connect_as(path, OTHER, OTHER, [NOBODY]))  # supplementary
        expect_closed_at_accept(connect_as(path, NOBODY, OTHER, [OTHER]))  # uid is no group
        wait_for(lambda: pub.stats()["denied"] == 1, what="the denied counter")
    name = group_name(NOBODY)
    if name is None:
        pytest.skip("gid %d has no group entry: cannot check a group name" % NOBODY)
    with libnotif.Publisher(path, mode=0o666, allow_gids=[name]) as pub:
        expect_received(pub, connect_as(path, OTHER, NOBODY))
        expect_closed_at_accept(connect_as(path, OTHER, OTHER))
        wait_for(lambda: pub.stats()["denied"] == 1, what="the denied counter")


@needs_root
def test_uids_and_gids_together_let_in_either(open_dir):
    path = os.path.join(open_dir, "both.sock")
    with libnotif.Publisher(path, mode=0o666, allow_uids=[OTHER], allow_gids=["%d" % NOBODY]) as pub:
        expect_received(pub, connect_as(path, OTHER, OTHER))
        expect_received(pub, connect_as(path, NOBODY, NOBODY))
        expect_closed_at_accept(connect_as(path, NOBODY - 2, NOBODY - 2))
        wait_for(lambda: pub.stats()["denied"] == 1, what="the denied counter")


def test_allow_list_arguments(sockdir):
    path = os.path.join(sockdir, "args.sock")
    with pytest.raises(NotifError) as info:
        libnotif.Publisher(path, allow_gids=["no-such-group-notif-test"])
    assert info.value.errno == errno.ENOENT
    assert "allow_gids" in str(info.value) and "no-such-group-notif-test" in str(info.value)
    with pytest.raises(NotifError) as info:
        libnotif.Publisher(path, allow_uids=["no-such-user-notif-test"])
    assert info.value.errno == errno.ENOENT and "allow_uids" in str(info.value)
    with pytest.raises(TypeError):
        libnotif.Publisher(path, allow_gids="wheel")  # a string is not a list of groups
    with pytest.raises(TypeError):
        libnotif.Publisher(path, allow_uids=1000)
    with pytest.raises(TypeError):
        libnotif.Publisher(path, allow_uids=[True])
    with pytest.raises(TypeError):
        libnotif.Publisher(path, allow_uids=[1.5])
    for bad in (-1, 2 ** 32 - 1, 2 ** 32):
        with pytest.raises(ValueError):
            libnotif.Publisher(path, allow_uids=[bad])
    assert not os.path.exists(path)  # nothing was opened
    # Ids, decimal strings and names; generators are fine; empty means anyone.
    root_group = group_name(0)
    gids = (g for g in [0, "0"] + ([root_group] if root_group else []))
    with libnotif.Publisher(path, allow_uids=[os.getuid(), str(os.getuid())], allow_gids=gids):
        pass
    with libnotif.Publisher(path, allow_uids=[], allow_gids=()) as pub:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        wait_subscribers(pub, 1)
        assert pub.emit({"a": 1}) == 1
        sock.close()
    assert libnotif.publisher.resolve_uids(["0", 7, " 8 "]) == [0, 7, 8]


# -- from_fd -------------------------------------------------------------------
def fd_is_open(fd):
    try:
        os.fstat(fd)
    except OSError as exc:
        assert exc.errno == errno.EBADF
        return False
    return True


def listening_socket(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(16)
    return sock


def test_from_fd_serves_a_socket_it_did_not_create(sockdir):
    path = os.path.join(sockdir, "fd.sock")
    sock = listening_socket(path)
    os.chmod(path, 0o640)
    fd = sock.detach()
    pub = libnotif.Publisher.from_fd(fd, linger_ms=0, mode="0666", allow_uids=[os.getuid()])
    assert pub.fd == fd and pub.path == "fd %d" % fd and "fd %d" % fd in repr(pub)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # mode does not apply
    with libnotif.Subscriber(path, timeout=10) as sub:
        wait_subscribers(pub, 1)
        assert pub.emit({"event_type": "fd.hello"}) == 1
        assert sub.recv(10)["event_type"] == "fd.hello"
    assert pub.stats()["denied"] == 0
    pub.close()
    pub.close()
    # The publisher owned the descriptor and closed it; the file is left in place.
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    probe = socket.socket(socket.AF_UNIX)
    with pytest.raises(ConnectionRefusedError):
        probe.connect(path)
    probe.close()
    with pytest.raises(NotifError) as info:
        pub.emit({"a": 1})
    assert info.value.errno == errno.EBADF


def test_from_fd_failures_leave_the_descriptor_to_the_caller(sockdir):
    r, w = os.pipe()
    try:
        with pytest.raises(NotifError) as info:
            libnotif.Publisher.from_fd(r)
        assert info.value.errno == errno.ENOTSOCK, info.value
        assert info.value.strerror
        os.fstat(r)  # still open, and still ours
        os.write(w, b"x")
        assert os.read(r, 1) == b"x"
    finally:
        os.close(r)
        os.close(w)
    regular = os.path.join(sockdir, "file")
    with open(regular, "w+") as f:
        with pytest.raises(NotifError) as info:
            libnotif.Publisher.from_fd(f.fileno())
        assert info.value.errno == errno.ENOTSOCK
        os.fstat(f.fileno())
    # A Unix socket that is not listening, a TCP listener: EINVAL, still usable.
    unbound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    for sock in (unbound, tcp):
        with pytest.raises(NotifError) as info:
            libnotif.Publisher.from_fd(sock.fileno())
        assert info.value.errno == errno.EINVAL, info.value
        sock.getsockname()
        sock.close()
    # Not a descriptor. (Not a number just closed: the library makes an eventfd
    # before it looks at fd, which would then get the lowest free number.)
    unused = next(fd for fd in range(1000, 2000) if not fd_is_open(fd))
    for fd in (unused, -1):
        with pytest.raises(NotifError) as info:
            libnotif.Publisher.from_fd(fd)
        assert info.value.errno == errno.EBADF
    # A socket object is refused: both it and the publisher would close the descriptor.
    path = os.path.join(sockdir, "obj.sock")
    sock = listening_socket(path)
    with pytest.raises(TypeError, match="detach"):
        libnotif.Publisher.from_fd(sock)
    with pytest.raises(TypeError, match="path"):
        libnotif.Publisher.from_fd(sock.fileno(), path="/tmp/x")
    with pytest.raises(NotifError) as info:  # bad options fail before anything is taken
        libnotif.Publisher.from_fd(sock.fileno(), max_subscribers=0)
    assert info.value.errno == errno.EINVAL
    sock.getsockname()
    sock.close()


# -- from_systemd --------------------------------------------------------------
def test_from_systemd_without_activation_is_a_clear_error(monkeypatch):
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(libnotif.NotSocketActivated) as info:
        libnotif.Publisher.from_systemd()
    assert isinstance(info.value, NotifError) and info.value.errno == errno.ENOENT
    assert "not socket-activated" in str(info.value) and "LISTEN_PID" in str(info.value)
    # Passed to another process (say our parent, which exec'd us without clearing them).
    monkeypatch.setenv("LISTEN_PID", str(os.getppid()))
    monkeypatch.setenv("LISTEN_FDS", "1")
    with pytest.raises(libnotif.NotSocketActivated, match="another process"):
        libnotif.Publisher.from_systemd()
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "0")
    with pytest.raises(libnotif.NotSocketActivated, match="LISTEN_FDS=0"):
        libnotif.Publisher.from_systemd()
    monkeypatch.setenv("LISTEN_FDS", "one")
    with pytest.raises(libnotif.NotSocketActivated, match="not a number"):
        libnotif.Publisher.from_systemd()
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "other")
    with pytest.raises(libnotif.NotSocketActivated, match="no socket is named 'notif'"):
        libnotif.Publisher.from_systemd("notif")


# What systemd does: the sockets become descriptors 3, 4..., LISTEN_PID is set
# to the service's pid and the service is exec'd (exec keeps the pid).
ACTIVATE = r"""
import os, sys
fds = [int(x) for x in sys.argv[1].split(",")]
for i, fd in enumerate(fds):
    os.dup2(fd, 3 + i)
for fd in fds:
    os.close(fd)
env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(fds)),
           LISTEN_FDNAMES=sys.argv[2])
os.execve(sys.executable, [sys.executable, "-c", sys.argv[3]] + sys.argv[4:], env)
"""

SERVICE = r"""
import os, sys, time
import libnotif
name = sys.argv[1] or None
pub = libnotif.Publisher.from_systemd(name, linger_ms=0)
try:
    libnotif.Publisher.from_systemd(name)
except libnotif.NotifError as exc:
    print("again:", exc.errno_name, flush=True)
print("fd:", pub.fd, flush=True)
deadline = time.monotonic() + 20
while pub.stats()["delivered"] < 1 and time.monotonic() < deadline:
    pub.emit({"event_type": "activated", "pid": os.getpid()})
    time.sleep(0.01)
print("delivered:", pub.stats()["delivered"], flush=True)
pub.close()
"""


@pytest.mark.parametrize("name", [None, "notif"])
def test_from_systemd_serves_the_passed_socket(sockdir, name):
    path = os.path.join(sockdir, "sd.sock")
    other_path = os.path.join(sockdir, "other.sock")
    sockets = [listening_socket(path)]
    names = ["notif"]
    if name is not None:  # two sockets passed: ours is the second, found by name
        sockets.insert(0, listening_socket(other_path))
        names.insert(0, "other")
    high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 50) for s in sockets]
    for s in sockets:
        s.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", ACTIVATE, ",".join(map(str, high)), ":".join(names), SERVICE,
         name or ""],
        pass_fds=high, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for fd in high:
        os.close(fd)
    try:
        with libnotif.Subscriber(path, timeout=20) as sub:
            message = sub.recv(20)
        assert message is not None, "nothing from the activated service"
        assert message == {"event_type": "activated", "pid": proc.pid}
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "again: EBUSY"  # the descriptor is served once per process
    assert lines[1] == "fd: %d" % (3 if name is None else 4)
    # The service closed the socket but left the file: it did not create it.
    assert stat.S_ISSOCK(os.stat(path).st_mode)


# -- oslo options --------------------------------------------------------------
@pytest.fixture
def oslo(sockdir):
    pytest.importorskip("oslo_messaging")
    from libnotif import oslo_driver
    oslo_driver.close_all()
    yield oslo_driver
    oslo_driver.close_all()


def make_notifier(sockdir, path, extra):
    import oslo_messaging
    from oslo_config import cfg
    conf_file = os.path.join(sockdir, "access.conf")
    with open(conf_file, "w") as f:
        f.write("[DEFAULT]\ntransport_url = fake://\n[oslo_messaging_notifications]\n"
                "driver = unix\nsock_path = %s\n%s" % (path, extra))
    conf = cfg.ConfigOpts()
    conf(["--config-file", conf_file], project="notif-test", default_config_files=[])
    transport = oslo_messaging.get_notification_transport(conf)
    return conf, oslo_messaging.Notifier(transport, publisher_id="compute.host1")


def test_oslo_allow_options_resolve_names_and_numbers(oslo, sockdir, monkeypatch):
    root_user, root_group = user_name(0), group_name(0)
    if root_user is None or root_group is None:
        pytest.skip("uid/gid 0 have no passwd/group entry")
    path = os.path.join(sockdir, "allow.sock")
    seen = []
    real = oslo.Publisher

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return real(*args, **kwargs)

    # Before the driver is made: it opens its socket at once.
    monkeypatch.setattr(oslo, "Publisher", spy)
    conf, notifier = make_notifier(
        sockdir, path, "sock_allow_users = %s, %d\nsock_allow_groups = %s,%d\n"
        % (root_user, NOBODY, root_group, NOBODY))
    group = conf["oslo_messaging_notifications"]
    assert group.sock_allow_users == [root_user, str(NOBODY)]
    assert group.sock_allow_groups == [root_group, str(NOBODY)]
    assert oslo._allow_lists(group.sock_allow_users, group.sock_allow_groups) == (
        [0, NOBODY], [0, NOBODY])
    notifier.info({}, "compute.open", {})
    assert oslo.driver_stats()[path]["open"]
    assert seen[0]["allow_uids"] == [0, NOBODY] and seen[0]["allow_gids"] == [0, NOBODY]


@needs_root
def test_oslo_allow_list_is_enforced(oslo, open_dir):
    path = os.path.join(open_dir, "enforced.sock")
    _, notifier = make_notifier(open_dir, path,
                                "sock_mode = 0666\nsock_allow_users = %d\n" % NOBODY)
    notifier.info({}, "compute.open", {})
    pub = oslo._slots[path].publisher
    expect_received(pub, connect_as(path, NOBODY, NOBODY))
    expect_closed_at_accept(connect_as(path, OTHER, OTHER))
    wait_for(lambda: oslo.driver_stats()[path]["library"]["denied"] == 1,
             what="the denied counter")


@pytest.mark.parametrize("option,kind", [("sock_allow_groups", "group"),
                                         ("sock_allow_users", "user")])
def test_oslo_unknown_name_logs_one_clear_error(oslo, sockdir, caplog, option, kind):
    path = os.path.join(sockdir, "unknown.sock")
    _, notifier = make_notifier(sockdir, path, "%s = 0, no-such-%s-notif\n" % (option, kind))
    caplog.set_level(logging.DEBUG, logger="libnotif.oslo_driver")
    for i in range(5):
        notifier.info({}, "compute.dropped", {"i": i})
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    text = errors[0].getMessage()
    assert path in text and option in text and "no such %s 'no-such-%s-notif'" % (kind, kind) \
        in text, text
    stats = oslo.driver_stats()[path]
    assert stats["dropped_unopened"] == 5 and not stats["open"]
    assert not os.path.exists(path)  # not opened without the access control asked for


def test_oslo_config_generator_documents_the_allow_options():
    pytest.importorskip("oslo_config")
    gen = os.path.join(os.path.dirname(sys.executable), "oslo-config-generator")
    proc = subprocess.run([gen, "--namespace", "libnotif.oslo_driver"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for option in ("sock_allow_users", "sock_allow_groups"):
        assert "\n#%s =\n" % option in out, out
    help_text = out.split("#sock_allow_users =")[0].rsplit("\n\n", 1)[-1]
    help_text = " ".join(line.lstrip("# ") for line in help_text.splitlines())
    assert "(list value)" in help_text and "peer credentials" in help_text, help_text
