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
	// A publisher that lists its subscribers lists ours, connected in the past.
	for _, sub := range answer.SubscriberList {
		if sub.ConnectedAt.After(time.Now()) {
			t.Errorf("connected in the future: %+v", sub)
		}
	}
}
