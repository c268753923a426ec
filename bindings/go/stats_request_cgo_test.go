//go:build cgo

package notif

import (
	"context"
	"testing"
	"time"
)

// RequestStats against the real publisher agrees with Publisher.Stats.
func TestRequestStatsFromTheLibrary(t *testing.T) {
	path := sockPath(t)
	p := openPub(t, path)
	s := subscribe(t, path)
	waitSubscribers(t, p, 1)
	for i := 0; i < 3; i++ {
		emit(t, p, `{"event_type":"stats.test"}`)
	}
	for i := 0; i < 3; i++ {
		nextNotification(t, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	answer, err := RequestStats(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	local, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if answer.Emitted != 3 || answer.Emitted != local.Emitted || answer.Version != Version() {
		t.Errorf("over the socket %+v (version %q), in process %+v", answer.Stats, answer.Version, local)
	}
	// The system-call counters, through the json tags and through cgo: the
	// acknowledgement of our request and 3 notifications took 1 to 4 writes
	// (the answer's own write may or may not be counted by now); each emit
	// woke the server thread at most once; nothing else wakes it.
	if answer.Writes < 1 || answer.Writes > 4 || local.Writes < answer.Writes || local.Writes > answer.Writes+1 {
		t.Errorf("writes: %d over the socket, %d in process", answer.Writes, local.Writes)
	}
	if answer.Wakeups > 3 || local.Wakeups != answer.Wakeups {
		t.Errorf("wakeups: %d over the socket, %d in process", answer.Wakeups, local.Wakeups)
	}
	if answer.WrittenThrough > answer.Delivered || local.WrittenThrough != answer.WrittenThrough {
		t.Errorf("written through: %d over the socket (delivered %d), %d in process",
			answer.WrittenThrough, answer.Delivered, local.WrittenThrough)
	}
	// A publisher that lists its subscribers lists ours, connected in the past.
	for _, sub := range answer.SubscriberList {
		if sub.ConnectedAt.After(time.Now()) {
			t.Errorf("connected in the future: %+v", sub)
		}
	}
}
