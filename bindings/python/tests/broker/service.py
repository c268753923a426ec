"""A service for the forwarder's tests: the real oslo Notifier with whatever
drivers its config file names, sending COUNT notifications at RATE per second
(0: as fast as it can), each notifier.info() call timed.

    python service.py CONFIG COUNT RATE OUT [TAG]

OUT gets one JSON line: {"latencies": [seconds per call], "sent": [...]} where
sent lists (n, monotonic time of the call) for each notification. The payloads
are payload(n) below, identical from run to run.
"""

import json
import os
import sys
import time

import oslo_messaging
from oslo_config import cfg


def payload(n, tag=""):
    return {"n": n, "tag": tag, "name": "instance-%05d" % n, "flavor": {"vcpus": n % 8, "ram": 512},
            "text": "caf\u00e9 \u2603 \"quoted\" \\ back", "list": [1, 2.5, None, True, "x"],
            "nested": {"deep": {"deeper": [n, {"k": "v"}]}}}


def main():
    config, count, rate, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    tag = sys.argv[5] if len(sys.argv) > 5 else ""
    # What is measured is the notifier's cost, not the other builds sharing
    # this machine's cores: ahead of them in the scheduler when allowed (root).
    try:
        os.nice(-10)
    except OSError:
        pass
    conf = cfg.ConfigOpts()
    conf(["--config-file", config], project="svc")
    transport = oslo_messaging.get_notification_transport(conf)
    notifier = oslo_messaging.Notifier(transport, publisher_id="compute.host-1")
    # The drivers are loaded (the socket is open): wait for the test's go (OUT.go).
    deadline = time.monotonic() + 120
    while not os.path.exists(out + ".go") and time.monotonic() < deadline:
        time.sleep(0.01)
    latencies, sent = [], []
    interval = 1.0 / rate if rate > 0 else 0.0
    start = time.monotonic()
    for n in range(count):
        if interval:
            due = start + n * interval
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
        t0 = time.monotonic()
        notifier.info({}, "compute.instance.update", payload(n, tag))
        t1 = time.monotonic()
        latencies.append(t1 - t0)
        sent.append((n, t0))
    with open(out, "w") as f:
        json.dump({"latencies": latencies, "sent": sent}, f)
    # The socket (and its replay ring) lives as long as this process: stay
    # until the test has what it waits for (OUT.exit), at most 10 minutes.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            open(out + ".exit").close()
            break
        except FileNotFoundError:
            time.sleep(0.05)
    transport.cleanup()


if __name__ == "__main__":
    main()
