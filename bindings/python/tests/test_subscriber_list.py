"""The stats answer on the socket lists each subscriber (issue 12): Python's
request_stats returns it, with the credentials the asker may see."""
import os

import libnotif

from conftest import wait_for, wait_subscribers


def test_request_stats_lists_each_subscriber(sockdir):
    path = os.path.join(sockdir, "list.sock")
    with libnotif.Publisher(path) as pub:
        filtered = libnotif.Subscriber(path, event_types=["compute.*"], timeout=10)
        plain = libnotif.Subscriber(path, timeout=10)
        wait_subscribers(pub, 2)
        pub.emit({"event_type": "compute.instance.update"})
        assert next(iter(filtered))["event_type"] == "compute.instance.update"
        assert next(iter(plain))["event_type"] == "compute.instance.update"
        stats = wait_for(lambda: (lambda s: s if len(s["subscriber_list"]) == 2
                                  and all(e["delivered"] == 1 for e in s["subscriber_list"])
                                  else None)(libnotif.request_stats(path)),
                         what="both subscribers listed with their deliveries")
        # The asker is not a subscriber, and is not listed.
        assert stats["subscribers"] == 2
        entries = stats["subscriber_list"]
        with_filter = [e for e in entries if e["filter"] is not None]
        assert len(with_filter) == 1
        assert with_filter[0]["filter"] == {"event_types": ["compute.*"]}
        for entry in entries:
            # Same user as the publisher: the credentials are shown.
            assert entry["pid"] == os.getpid()
            assert entry["uid"] == os.getuid()
            assert entry["gid"] == os.getgid()
            assert entry["dropped_slow"] == 0
            assert entry["queued_bytes"] >= 0
            assert entry["connected_at"] > 1.7e9
        filtered.close()
        plain.close()
