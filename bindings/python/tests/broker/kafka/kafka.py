"""A real Kafka for the forwarder's Kafka tests (make test-kafka): a KRaft broker
(broker and controller in one JVM) from Apache Kafka's jars on Maven Central,
copied by bindings/python/tests/broker/kafka/run.sh into build/kafka/lib, run with
Java 17 on 127.0.0.1 with its own ports and data directory."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", ".."))
LIB = os.environ.get("NOTIF_KAFKA_LIB", os.path.join(ROOT, "build", "kafka", "lib"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Kafka:
    def __init__(self):
        if not os.path.isdir(LIB):
            raise RuntimeError("%s is missing: run bindings/python/tests/broker/kafka/run.sh "
                               "(make test-kafka)" % LIB)
        self.dir = tempfile.mkdtemp(prefix="notif-kafka-")
        self.port = _free_port()
        self.cport = _free_port()
        self.url = "kafka://127.0.0.1:%d" % self.port
        self.props = os.path.join(self.dir, "server.properties")
        with open(self.props, "w") as f:
            f.write("\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                "controller.quorum.voters=1@127.0.0.1:%d" % self.cport,
                "listeners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d"
                % (self.port, self.cport),
                "advertised.listeners=PLAINTEXT://127.0.0.1:%d" % self.port,
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                "log.dirs=%s" % os.path.join(self.dir, "data"),
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                ""]))
        with open(os.path.join(self.dir, "log4j.properties"), "w") as f:
            f.write("log4j.rootLogger=WARN, stdout\n"
                    "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
                    "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
                    "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n")
        self.java = ["java", "-Xmx512m", "-Xms256m",
                     "-Dlog4j.configuration=file:%s" % os.path.join(self.dir, "log4j.properties"),
                     "-cp", os.path.join(LIB, "*")]
        uuid = subprocess.run(self.java + ["kafka.tools.StorageTool", "random-uuid"],
                              capture_output=True, text=True, check=True,
                              timeout=120).stdout.strip().splitlines()[-1]
        subprocess.run(self.java + ["kafka.tools.StorageTool", "format", "-t", uuid, "-c",
                                    self.props], capture_output=True, text=True, check=True,
                       timeout=120)
        self.log = open(os.path.join(self.dir, "server.log"), "ab")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(self.java + ["kafka.Kafka", self.props], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("kafka did not start: see %s" % self.log.name)
                time.sleep(0.2)

    def pause(self):
        """The broker stops (SIGTERM: a clean shutdown; the data stays)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def create_topics(self, names):
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": "127.0.0.1:%d" % self.port})
        futures = admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1)
                                       for n in names])
        for f in futures.values():
            try:
                f.result(60)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise

    def stop(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.pause()
        finally:
            self.log.close()
            shutil.rmtree(self.dir, ignore_errors=True)
