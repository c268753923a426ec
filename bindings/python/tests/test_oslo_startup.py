"""Nothing lost at start-up, nothing left behind: the 'unix' driver with
forked {pid} workers, `notif tail` on the glob, and workers that exit
through os._exit() (as oslo.service's do)."""

import json
import os
import socket
import subprocess
import sys

import pytest

pytest.importorskip("oslo_messaging")

from conftest import notif_cli, oslo_service  # noqa: E402


# Both services write SOCKDIR/svc.conf (the 'unix' driver at
# SOCKDIR/n-{pid}.sock, the fake:// transport) before building their notifier.
PRELUDE = r"""
    sockdir = sys.argv[1]
    conf_file = os.path.join(sockdir, "svc.conf")
    with open(conf_file, "w") as f:
        f.write("[DEFAULT]\ntransport_url = fake://\n[oslo_messaging_notifications]\n"
                "driver = unix\nsock_path = %s/n-{pid}.sock\n" % sockdir)
"""


SERVICE = oslo_service(r"""
    from libnotif import oslo_driver

    workers = int(sys.argv[2])
    path = lambda: os.path.join(sockdir, "n-%d.sock" % os.getpid())

    def first():
        # A service takes a while between building its notifier and its first
        # notification; here: until notif tail is connected, bounded. notif
        # tail first probes a new match (connect, close: is it live?) and then
        # subscribes: two accepted connections, the second one staying.
        assert os.path.exists(path()), "the socket is not open before the first notify"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lib = oslo_driver.driver_stats()[path()].get("library", {})
            if lib.get("accepted", 0) >= 2 and lib.get("subscribers", 0) >= 1:
                break
            time.sleep(0.01)
        notifier.info({}, "svc.first", {"pid": os.getpid()})

    first()
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            try:
                first()
                time.sleep(1.5)  # let the line be delivered before the socket goes
                oslo_driver.close_all()
            finally:
                os._exit(0)
        children.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in children]
    time.sleep(0.5)
    print(json.dumps({"parent": os.getpid(), "children": children, "codes": codes}))
""", publisher_id="svc", prelude=PRELUDE)


def test_tail_on_the_glob_gets_every_first_notification(sockdir):
    tail = subprocess.Popen([notif_cli(), "tail", "--count", "4",
                             os.path.join(sockdir, "n-*.sock")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        service = subprocess.run([sys.executable, "-c", SERVICE, sockdir, "3"],
                                 capture_output=True, text=True, timeout=240)
        assert service.returncode == 0, service.stderr
        info = json.loads(service.stdout.strip().splitlines()[-1])
        assert info["codes"] == [0, 0, 0]
        out, err = tail.communicate(timeout=60)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert tail.returncode == 0, err
    got = [json.loads(line) for line in out.splitlines()]
    assert all(m["event_type"] == "svc.first" for m in got)
    assert sorted(m["payload"]["pid"] for m in got) == sorted([info["parent"]] + info["children"])


RESTARTS = oslo_service(r"""
    report = []
    for generation in range(5):
        children, pipes = [], []
        for _ in range(3):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(w)
                notifier.info({}, "svc.tick", {})
                os.read(r, 1)   # stay alive until told to exit
                os._exit(0)     # as oslo.service workers: no atexit, the socket stays
            os.close(r)
            children.append(pid)
            pipes.append(w)
        time.sleep(0.3)
        # Every worker of this generation is live: the directory holds the
        # parent's socket, theirs, and nothing of the generations before.
        names = sorted(n for n in os.listdir(sockdir) if n.startswith("n-"))
        report.append({"live": sorted([os.getpid()] + children), "names": names})
        for w in pipes:
            os.close(w)
        for pid in children:
            os.waitpid(pid, 0)
    print(json.dumps(report))
""", publisher_id="svc", prelude=PRELUDE)


def test_restarted_os_exit_workers_leave_only_live_sockets(sockdir):
    # Things the clean-up must leave alone: a regular file with a dead pid's
    # name, and a dead socket of another owner.
    not_a_socket = os.path.join(sockdir, "n-999999991.sock")
    open(not_a_socket, "w").close()
    others = os.path.join(sockdir, "n-999999992.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(others)
    s.close()
    if os.geteuid() == 0:
        os.chown(others, 12345, 12345)
    proc = subprocess.run([sys.executable, "-c", RESTARTS, sockdir], capture_output=True,
                          text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report) == 5
    keep = ["n-999999991.sock"] + (["n-999999992.sock"] if os.geteuid() == 0 else [])
    for generation in report:
        want = sorted(["n-%d.sock" % pid for pid in generation["live"]] + keep)
        assert generation["names"] == want, generation
    assert os.path.isfile(not_a_socket)


def test_remove_dead_sockets_only_removes_dead_sockets_of_ours(sockdir):
    from libnotif import oslo_driver
    template = os.path.join(sockdir, "n-{pid}.sock")

    def dead(name):
        s = socket.socket(socket.AF_UNIX)
        s.bind(os.path.join(sockdir, name))
        s.close()

    dead("n-999999981.sock")                              # dead: removed
    live = socket.socket(socket.AF_UNIX)                  # a live listener under a dead
    live.bind(os.path.join(sockdir, "n-999999982.sock"))  # pid's name: kept
    live.listen(1)
    dead("other-999999983.sock")                          # another template: kept
    dead("target.sock")
    os.symlink(os.path.join(sockdir, "target.sock"),      # a symlink, not a socket: kept
               os.path.join(sockdir, "n-999999984.sock"))
    dead("n-%d.sock" % os.getpid())                       # our own pid: kept
    dead("n-abc.sock")                                    # not a pid: kept
    try:
        removed = oslo_driver.remove_dead_sockets(template)
    finally:
        live.close()
    assert removed == [os.path.join(sockdir, "n-999999981.sock")]
    left = sorted(os.listdir(sockdir))
    assert left == sorted(["n-999999982.sock", "other-999999983.sock", "target.sock",
                           "n-999999984.sock", "n-%d.sock" % os.getpid(), "n-abc.sock"])
    # {pid} in the directory part: nothing is scanned.
    assert oslo_driver.remove_dead_sockets(os.path.join(sockdir, "{pid}", "n.sock")) == []
