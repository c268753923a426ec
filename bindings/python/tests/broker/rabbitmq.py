"""A real RabbitMQ for the forwarder's tests: Debian's rabbitmq-server (installed
with apt-get when missing, as root), started in the background on 127.0.0.1
with its own node name, ports, data directory, Erlang cookie and epmd, so that
it touches nothing of the machine's own broker (no systemd needed), and
stopped at the end."""

import os
import shutil
import socket
import subprocess
import tempfile
import time


# The real scripts: /usr/sbin's wrappers switch to the rabbitmq user and its
# home (/var/lib/rabbitmq), which is the machine's broker, not ours.
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_installed():
    if os.access(SERVER, os.X_OK) and os.access(CTL, os.X_OK):
        return
    if os.geteuid() != 0:
        raise RuntimeError("rabbitmq-server is not installed and this is not root: "
                           "apt-get install rabbitmq-server")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # policy-rc.d may forbid starting the system's broker: we start our own.
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdin=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                    "rabbitmq-server"], check=True, env=env, stdin=subprocess.DEVNULL)


class RabbitMQ:
    def __init__(self):
        ensure_installed()
        self.dir = tempfile.mkdtemp(prefix="notif-rabbit-")
        self.port = _free_port()
        self.dist_port = _free_port()
        self.epmd_port = _free_port()
        self.node = "notiftest%d@localhost" % os.getpid()
        self.url = "rabbit://guest:guest@127.0.0.1:%d/" % self.port
        conf = os.path.join(self.dir, "rabbitmq.conf")
        with open(conf, "w") as f:
            f.write("listeners.tcp.default = 127.0.0.1:%d\n" % self.port)
            f.write("loopback_users = none\n")
            # A loaded test machine: no disk or memory alarm that blocks publishers.
            f.write("disk_free_limit.absolute = 1MB\n")
            f.write("vm_memory_high_watermark.relative = 0.8\n")
        plugins = os.path.join(self.dir, "enabled_plugins")
        with open(plugins, "w") as f:
            f.write("[].\n")
        self.env = dict(
            os.environ,
            HOME=self.dir,  # its own .erlang.cookie
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_CONFIG_FILE=conf,
            RABBITMQ_ENABLED_PLUGINS_FILE=plugins,
            RABBITMQ_MNESIA_BASE=os.path.join(self.dir, "mnesia"),
            RABBITMQ_LOG_BASE=os.path.join(self.dir, "log"),
            RABBITMQ_PID_FILE=os.path.join(self.dir, "rabbit.pid"),
            RABBITMQ_LOGS="-",
        )
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        # Our own epmd, started here so that we know its pid (the one erl would
        # start is a daemon nobody can tell from another's).
        self.epmd = subprocess.Popen(["epmd", "-port", str(self.epmd_port), "-address",
                                      "127.0.0.1"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.epmd_port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.epmd.poll() is not None:
                    raise RuntimeError("epmd did not start on port %d" % self.epmd_port)
                time.sleep(0.05)
        self.proc = subprocess.Popen([SERVER], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            self.await_startup(180)
        except Exception:
            self.stop()
            raise

    def await_startup(self, timeout):
        """rabbitmqctl await_startup, again until the node is known to epmd
        (before that it fails at once: "not running at all")."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl("await_startup", timeout=60)
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise
                time.sleep(0.5)

    def ctl(self, *args, timeout=120):
        out = subprocess.run([CTL, "-n", self.node, "--timeout",
                              str(int(timeout)), *args],
                             env=self.env, capture_output=True, text=True, timeout=timeout + 30,
                             stdin=subprocess.DEVNULL)
        if out.returncode != 0:
            raise RuntimeError("rabbitmqctl %s: %s%s (server log: %s)" % (
                " ".join(args), out.stdout, out.stderr, self.log.name))
        return out.stdout

    def stop_app(self):
        """The broker stops (connections closed, port refused); the node stays."""
        self.ctl("stop_app")

    def start_app(self):
        self.ctl("start_app")
        self.await_startup(120)

    def queue_depth(self, name):
        for line in self.ctl("list_queues", "-q", "name", "messages").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == name:
                return int(parts[1])
        return None

    def stop(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.ctl("stop", timeout=60)
                except Exception:
                    pass
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, 9)
                    self.proc.wait()
        finally:
            self.epmd.terminate()
            self.epmd.wait()
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
