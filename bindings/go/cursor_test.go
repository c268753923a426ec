package notif

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cursors against the hand-driven fake publisher (pure Go: CGO_ENABLED=0
// too). The resume tests against the real library are in replay_test.go.

const (
	epochA = "5f3a9c0d12e4b7a8"
	epochB = "0123456789abcdef"
)

func ack(epoch string) string {
	return `{"notif":{"subscribed":true,"version":"0.1.0","epoch":"` + epoch + `"}}` + "\n"
}

// Each notification's number comes from the seq lines (next = previous + 1
// unless one says otherwise); the cursor is resumed from on reconnection,
// where the publisher's unnumbered lines before the acknowledgement are
// skipped and its dropped markers ("unknown" too) are delivered.
func TestCursorsAndResume(t *testing.T) {
	_, fake, s, c := subscribeToFake(t)
	if req := readRequest(t, c); req != `{"cursor":true}` {
		t.Fatalf("request %s", req)
	}
	if got := s.Cursor(); got != "" {
		t.Fatalf("Cursor() before anything = %q", got)
	}
	write(t, c, `{"n":"early"}`+"\n"+ack(epochA)+`{"notif":{"seq":10}}`+"\n"+`{"n":10}`+"\n"+`{"n":11}`+"\n"+
		`{"notif":{"seq":15}}`+"\n"+`{"n":15}`+"\n")
	type want struct {
		kind    EventKind
		data    string
		cursor  string // of the event
		dropped uint64
		unknown bool
	}
	check := func(ws []want, after string) {
		t.Helper()
		for i, w := range ws {
			ev := next(t, s)
			if ev.Kind != w.kind || string(ev.Data) != w.data || ev.Cursor() != w.cursor || ev.Dropped != w.dropped || ev.Unknown != w.unknown {
				t.Fatalf("event %d: got %v %q cursor %q dropped %d unknown %v, want %+v", i, ev.Kind, ev.Data, ev.Cursor(), ev.Dropped, ev.Unknown, w)
			}
			// What the receiver took: this event's cursor, or the last one.
			if w.cursor != "" {
				after = w.cursor
			}
			if got := s.Cursor(); got != after {
				t.Fatalf("after event %d: Cursor() = %q, want %q", i, got, after)
			}
		}
	}
	// Received before the request was read: no number, the cursor stays.
	check([]want{
		{kind: Notification, data: `{"n":"early"}`},
		{kind: Notification, data: `{"n":10}`, cursor: epochA + "-10"},
		{kind: Notification, data: `{"n":11}`, cursor: epochA + "-11"},
		{kind: Notification, data: `{"n":15}`, cursor: epochA + "-15"},
	}, "")

	// Disconnected for being slow: it resumes after 15; the lines before the
	// acknowledgement are the publisher's to resend (or count), not ours.
	write(t, c, `{"notif":{"error":"bye","reason":"too_slow"}}`+"\n")
	c.Close()
	c = fake.accept(t)
	if req := readRequest(t, c); req != `{"cursor":true,"after":"`+epochA+`-15"}` {
		t.Fatalf("request on reconnection %s", req)
	}
	write(t, c, `{"n":"unnumbered"}`+"\n"+ack(epochA)+`{"notif":{"dropped":2}}`+"\n"+`{"notif":{"seq":18}}`+"\n"+`{"n":18}`+"\n")
	check([]want{
		{kind: Reconnected},
		{kind: Dropped, dropped: 2},
		{kind: Notification, data: `{"n":18}`, cursor: epochA + "-18"},
	}, epochA+"-15")
	if s.DroppedTotal() != 2 {
		t.Fatalf("DroppedTotal %d", s.DroppedTotal())
	}

	// The publisher restarted: another epoch, a count it cannot know.
	c.Close()
	c = fake.accept(t)
	if req := readRequest(t, c); req != `{"cursor":true,"after":"`+epochA+`-18"}` {
		t.Fatalf("request after the restart %s", req)
	}
	write(t, c, ack(epochB)+`{"notif":{"dropped":"unknown"}}`+"\n"+`{"notif":{"seq":0}}`+"\n"+`{"n":0}`+"\n"+`{"n":1}`+"\n")
	check([]want{
		{kind: Reconnected},
		{kind: Dropped, unknown: true},
		{kind: Notification, data: `{"n":0}`, cursor: epochB + "-0"},
		{kind: Notification, data: `{"n":1}`, cursor: epochB + "-1"},
	}, epochA+"-18")
	if s.DroppedTotal() != 2 {
		t.Fatalf("DroppedTotal %d after an unknown count", s.DroppedTotal())
	}
	expectNothing(t, s)
}

// Cursor counts only what the receiver took: events waiting in the channel,
// and one the goroutine is blocked offering, are not.
func TestCursorIgnoresQueuedEvents(t *testing.T) {
	_, _, s, c := subscribeToFake(t, WithAfter(epochA+"-99"))
	readRequest(t, c)
	const n = 5 * eventBuffer
	var b strings.Builder
	b.WriteString(ack(epochA) + `{"notif":{"seq":100}}` + "\n")
	for i := 100; i < 100+n; i++ {
		fmt.Fprintf(&b, `{"n":%d}`+"\n", i)
	}
	write(t, c, b.String())
	// Let the goroutine fill the channel and block on the next event.
	deadline := time.Now().Add(waitLong)
	for len(s.Events()) < eventBuffer && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if got := s.Cursor(); got != epochA+"-99" {
		t.Fatalf("Cursor() with a full channel = %q, want WithAfter's", got)
	}
	for i := 100; i < 100+n; i++ {
		ev := nextNotification(t, s)
		want := fmt.Sprintf("%s-%d", epochA, i)
		if string(ev) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("got %s", ev)
		}
		if got := s.Cursor(); got != want {
			t.Fatalf("Cursor() = %q, want %q", got, want)
		}
	}
	s.Close()
	if got := s.Cursor(); got != fmt.Sprintf("%s-%d", epochA, 100+n-1) {
		t.Fatalf("Cursor() after Close = %q", got)
	}
}

func TestAfterAndReplayRequests(t *testing.T) {
	request := func(opts ...SubscribeOption) string { return requestOf(t, opts...) }
	cur := epochA + "-1041"
	if got := request(WithAfter(cur), WithFilters(Filter{EventTypes: []string{"a.*"}})); got != `{"subscribe":{"event_types":["a.*"]},"cursor":true,"after":"`+cur+`"}` {
		t.Errorf("WithAfter: %s", got)
	}
	if got := request(WithReplay()); got != `{"cursor":true,"replay":true}` {
		t.Errorf("WithReplay: %s", got)
	}
	if got := request(WithAfter("")); got != `{"cursor":true}` {
		t.Errorf(`WithAfter(""): %s`, got)
	}
	for _, bad := range []string{"x", "5f3a9c0d12e4b7a8", "5f3a9c0d12e4b7a8-", "5F3A9C0D12E4B7A8-1", "5f3a9c0d12e4b7a-1",
		"5f3a9c0d12e4b7a8--1", "5f3a9c0d12e4b7a8-1x", "5f3a9c0d12e4b7a8-18446744073709551616"} {
		_, err := Subscribe(context.Background(), "/tmp/x.sock", WithAfter(bad))
		expectErrno(t, err, syscall.EINVAL)
	}
	_, err := Subscribe(context.Background(), "/tmp/x.sock", WithAfter(cur), WithReplay())
	expectErrno(t, err, syscall.EINVAL)
}

// WithReplay asks for the ring until a notification was delivered; after
// that a reconnection resumes after it.
func TestReplayThenResume(t *testing.T) {
	_, fake, s, c := subscribeToFake(t, WithReplay())
	readRequest(t, c)
	c.Close() // before anything: the ring again
	c = fake.accept(t)
	if req := readRequest(t, c); req != `{"cursor":true,"replay":true}` {
		t.Fatalf("request %s", req)
	}
	write(t, c, ack(epochA)+`{"notif":{"dropped":40}}`+"\n"+`{"notif":{"seq":40}}`+"\n"+`{"n":40}`+"\n")
	if ev := next(t, s); ev.Kind != Reconnected {
		t.Fatalf("got %v", ev.Kind)
	}
	if ev := next(t, s); ev.Kind != Dropped || ev.Dropped != 40 {
		t.Fatalf("got %v %d", ev.Kind, ev.Dropped)
	}
	if ev := next(t, s); ev.Cursor() != epochA+"-40" {
		t.Fatalf("got %v %q %q", ev.Kind, ev.Data, ev.Cursor())
	}
	c.Close()
	c = fake.accept(t)
	if req := readRequest(t, c); req != `{"cursor":true,"after":"`+epochA+`-40"}` {
		t.Fatalf("request %s", req)
	}
}

// A publisher from before cursors refuses the "cursor" key: the subscription
// connects again at once without it (no Reconnected: nothing was lost), as it
// did before cursors; one given WithAfter cannot do without and fails.
func TestOlderPublisherWithoutCursors(t *testing.T) {
	refusal := `{"notif":{"error":"unknown key \"cursor\" in the request (known: subscribe, markers, heartbeat_s, stats)","reason":"bad_request"}}` + "\n"
	for _, tc := range []struct {
		opts  []SubscribeOption
		plain string // the request without cursors, "" for none
	}{
		{nil, ""},
		{[]SubscribeOption{WithMarkers()}, `{"markers":true}`},
	} {
		_, fake, s, c := subscribeToFake(t, tc.opts...)
		readRequest(t, c)
		write(t, c, refusal)
		c.Close()
		c = fake.accept(t)
		if tc.plain != "" {
			if req := readRequest(t, c); req != tc.plain {
				t.Fatalf("request without cursors %s, want %s", req, tc.plain)
			}
		}
		write(t, c, `{"n":1}`+"\n")
		if ev := next(t, s); ev.Kind != Notification || string(ev.Data) != `{"n":1}` || ev.Cursor() != "" {
			t.Fatalf("got %v %q %q", ev.Kind, ev.Data, ev.Cursor())
		}
		if tc.plain == "" {
			c.SetReadDeadline(time.Now().Add(quiet))
			if n, _ := c.Read(make([]byte, 1)); n != 0 {
				t.Fatal("wrote a request on the plain stream")
			}
		}
		// A lost connection later: still without cursors, now a reconnection.
		c.Close()
		c = fake.accept(t)
		write(t, c, `{"n":2}`+"\n")
		if ev := next(t, s); ev.Kind != Reconnected {
			t.Fatalf("got %v", ev.Kind)
		}
		if got := nextNotification(t, s); string(got) != `{"n":2}` {
			t.Fatalf("got %s", got)
		}
		s.Close()
		fake.close()
	}

	path, fake, s, c := subscribeToFake(t, WithAfter(epochA+"-1"))
	readRequest(t, c)
	write(t, c, refusal)
	c.Close()
	expectErrno(t, expectClosed(t, s, waitLong), syscall.EPROTO)

	// A refusal that is not about cursors is the options' own: EPROTO.
	path = sockPath(t)
	fake = newFakePublisher(t, path)
	s, err := Subscribe(context.Background(), path, WithMarkers())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c = fake.accept(t)
	readRequest(t, c)
	write(t, c, `{"notif":{"error":"unknown key \"x\"","reason":"bad_request"}}`+"\n")
	c.Close()
	expectErrno(t, expectClosed(t, s, waitLong), syscall.EPROTO)
}

// After a seq line a reconnection resumes just before the notification it
// announced, so that drops already reported are not reported again.
func TestResumePointFollowsSeqLines(t *testing.T) {
	_, fake, s, c := subscribeToFake(t, WithAfter(epochA+"-3"))
	readRequest(t, c)
	write(t, c, ack(epochA)+`{"notif":{"dropped":6}}`+"\n"+`{"notif":{"seq":10}}`+"\n")
	if ev := next(t, s); ev.Kind != Dropped || ev.Dropped != 6 {
		t.Fatalf("got %v %d", ev.Kind, ev.Dropped)
	}
	c.Close() // before notification 10
	c = fake.accept(t)
	if req := readRequest(t, c); req != `{"cursor":true,"after":"`+epochA+`-9"}` {
		t.Fatalf("request %s", req)
	}
	if got := s.Cursor(); got != epochA+"-3" {
		t.Fatalf("Cursor() = %q: it moves with what is handed out only", got)
	}
}
