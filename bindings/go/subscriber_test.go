package notif

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Tests of the pure-Go subscriber against a hand-driven fake publisher; they
// run with CGO_ENABLED=0 too. The tests against the real library are in
// publisher_test.go.

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		pattern, text string
		want          bool
	}{
		{"*", "", true},
		{"compute.*", "compute.instance.create.end", true},
		{"*.end", "compute.instance.create.end", true},
		{"c*e*d", "compute.instance.create.end", true},
		{"compute.*", "image.update", false},
		{"compute", "compute.x", false},
		{"a*a*a*b", "aaaaaaaaaaaaaaaaab", true},
		{"a*a*a*b", "aaaaaaaaaaaaaaaaaa", false},
		{"**", "x", true},
		{"Image.*", "image.update", false},
		{"", "", true},
		{"", "x", false},
		{"x*", "x", true},
	}
	for _, c := range cases {
		if got := globMatch(c.pattern, c.text); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pattern, c.text, got, c.want)
		}
	}
}

func TestFilterMatches(t *testing.T) {
	f := &requestFilter{EventTypes: []string{"compute.*"}, Priorities: []string{"error", "INFO"}, Publishers: []string{"*host1"}}
	cases := []struct {
		line string
		want bool
	}{
		{`{"event_type":"compute.x","priority":"info","publisher_id":"c.host1"}`, true},
		{`{"event_type":"compute.x","priority":"ERROR","publisher_id":"c.host1"}`, true},
		{`{"event_type":"compute.x","priority":"WARN","publisher_id":"c.host1"}`, false},
		{`{"event_type":"image.x","priority":"info","publisher_id":"c.host1"}`, false},
		{`{"event_type":"compute.x","priority":"info","publisher_id":"c.host2"}`, false},
		{`{"event_type":"compute.x","priority":"info"}`, false},                                                           // missing field
		{`{"event_type":"compute.x","priority":1,"publisher_id":"c.host1"}`, false},                                       // not a string
		{`{"event_type":"compute.x","priority":null,"publisher_id":"c.host1"}`, false},                                    // not a string
		{`{"event_type":"image\u002ex","priority":"info","publisher_id":"h"}`, false},                                     // escapes decoded
		{`{"event_type":"compute\u002ex","priority":"info","publisher_id":"h.host1"}`, true},                              // escapes decoded
		{`{"payload":{"event_type":"compute.x"},"event_type":"image.x","priority":"info","publisher_id":"host1"}`, false}, // top level only
		{`{"event_type":"image.x","event_type":"compute.x","priority":"info","publisher_id":"host1"}`, true},              // last duplicate wins
		{`{"Event_Type":"compute.x","priority":"info","publisher_id":"host1"}`, false},                                    // keys are exact
		{`{"event_type":"compute.x","priority":"ınfo","publisher_id":"host1"}`, false},                                    // ASCII case only
	}
	for _, c := range cases {
		if got := f.matches([]byte(c.line)); got != c.want {
			t.Errorf("matches(%s) = %v, want %v", c.line, got, c.want)
		}
	}
	// Only the constrained fields are looked at.
	f = &requestFilter{Priorities: []string{"INFO"}}
	if !f.matches([]byte(`{"priority":"info"}`)) || f.matches([]byte(`{"event_type":"x"}`)) {
		t.Error("a priority-only filter")
	}
}

func TestSubscribeArgumentErrors(t *testing.T) {
	ctx := context.Background()
	_, err := Subscribe(ctx, "")
	expectErrno(t, err, syscall.EINVAL)
	_, err = Subscribe(ctx, "/tmp/"+strings.Repeat("x", 200))
	expectErrno(t, err, syscall.ENAMETOOLONG)
	_, err = Subscribe(ctx, "/tmp/x.sock", WithHeartbeat(time.Millisecond))
	expectErrno(t, err, syscall.EINVAL)
	_, err = Subscribe(ctx, "/tmp/x.sock", WithFilter([]string{strings.Repeat("x", 70<<10)}, nil, nil))
	expectErrno(t, err, syscall.EINVAL)
	// WithoutReconnect: an absent publisher is an error at once.
	_, err = Subscribe(ctx, sockPath(t), WithoutReconnect())
	e := expectErrno(t, err, syscall.ENOENT)
	if !strings.Contains(e.Message, "s.sock") {
		t.Errorf("message %q does not name the path", e.Message)
	}
}

// Without options the request asks for cursors only, and nothing else is
// ever written.
func TestNoOptionsAsksForCursorsOnly(t *testing.T) {
	_, _, s, c := subscribeToFake(t)
	if req := readRequest(t, c); req != `{"cursor":true}` {
		t.Fatalf("request %s", req)
	}
	// A line whose first member is "notif" is a control line, never a
	// notification, even on the plain stream; a drop marker nobody asked for
	// is not reported either.
	write(t, c, `{"a":1}`+"\n"+`{"notif":{"dropped":3}}`+"\n"+`{"notif":{"x":1},"b":0}`+"\n"+`{"b":2,"notif":1}`+"\n")
	if got := nextNotification(t, s); string(got) != `{"a":1}` {
		t.Fatalf("got %q", got)
	}
	if got := next(t, s); got.Kind != Notification || string(got.Data) != `{"b":2,"notif":1}` {
		t.Fatalf("got %v %q", got.Kind, got.Data)
	}
	if s.DroppedTotal() != 0 {
		t.Fatalf("DroppedTotal %d", s.DroppedTotal())
	}
	c.SetReadDeadline(time.Now().Add(quiet))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, syscall.ETIMEDOUT) && !isTimeout(err) {
		t.Fatalf("the subscriber wrote something: n=%d err=%v", n, err)
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func TestRequestLineAndControlLines(t *testing.T) {
	path := sockPath(t)
	fake := newFakePublisher(t, path)
	s, err := Subscribe(context.Background(), path,
		WithFilter([]string{"compute.*"}, []string{"ERROR"}, nil), WithMarkers(), WithHeartbeat(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := fake.accept(t)
	var req map[string]any
	line := readRequest(t, c)
	if err := json.Unmarshal([]byte(line), &req); err != nil {
		t.Fatalf("request %q: %v", line, err)
	}
	want := `{"subscribe":{"event_types":["compute.*"],"priorities":["ERROR"]},"markers":true,"heartbeat_s":5,"cursor":true}`
	if line != want {
		t.Fatalf("request %s, want %s", line, want)
	}
	// Before the acknowledgement: unfiltered, filtered here.
	write(t, c, `{"event_type":"image.x","priority":"ERROR","n":1}`+"\n")
	write(t, c, `{"event_type":"compute.x","priority":"error","n":2}`+"\n")
	write(t, c, `{"event_type":"compute.x","n":3}`+"\n")
	write(t, c, `{"event_type":"compute.x","priority":"ERROR","n":4}`+"\n")
	write(t, c, `{"notif":{"subscribed":true,"version":"0.1.0"}}`+"\n")
	// After it, the publisher filters: everything is delivered.
	write(t, c, `{"event_type":"after.ack","n":5}`+"\n")
	write(t, c, `{"notif":{"heartbeat":1700000000.5}}`+"\n")
	write(t, c, `{"notif":{"dropped":7}}`+"\n")
	write(t, c, `{"notif":{"future":{"x":1}}}`+"\n") // a newer publisher's control line
	write(t, c, `{"notif":42}`+"\n")
	write(t, c, `{"notif":{"stats":{"subscribers":1}}}`+"\n")
	write(t, c, `{"notif":{"dropped":1},"n":6}`+"\n") // first member notif: a control line
	write(t, c, `{"n":7}`+"\n")

	wantEvents := []Event{
		{Kind: Notification, Data: []byte(`{"event_type":"compute.x","priority":"error","n":2}`)},
		{Kind: Notification, Data: []byte(`{"event_type":"compute.x","priority":"ERROR","n":4}`)},
		{Kind: Notification, Data: []byte(`{"event_type":"after.ack","n":5}`)},
		{Kind: Dropped, Dropped: 7},
		{Kind: Dropped, Dropped: 1},
		{Kind: Notification, Data: []byte(`{"n":7}`)},
	}
	for i, w := range wantEvents {
		got := next(t, s)
		if got.Kind != w.Kind || !bytes.Equal(got.Data, w.Data) || got.Dropped != w.Dropped {
			t.Fatalf("event %d: got %v %q %d, want %v %q %d", i, got.Kind, got.Data, got.Dropped, w.Kind, w.Data, w.Dropped)
		}
	}
	if s.DroppedTotal() != 8 {
		t.Errorf("DroppedTotal %d", s.DroppedTotal())
	}
	expectNothing(t, s)
}

func TestRefusedRequestIsPermanent(t *testing.T) {
	_, fake, s, c := subscribeToFake(t, WithMarkers())
	readRequest(t, c)
	write(t, c, `{"notif":{"error":"unknown key \"x\""}}`+"\n")
	c.Close()
	err := expectClosed(t, s, waitLong)
	e := expectErrno(t, err, syscall.EPROTO)
	if !strings.Contains(e.Message, `unknown key "x"`) {
		t.Errorf("message %q", e.Message)
	}
	// It did not reconnect.
	select {
	case c := <-fake.conns:
		t.Fatalf("reconnected after a refusal: %v", c.RemoteAddr())
	case <-time.After(quiet):
	}
}

// A publisher that refuses a subscriber for its allow-lists or its
// max_subscribers says so on one error line, then closes: the subscription
// ends with EACCES or EUSERS and does not connect again.
func TestDeniedAndFullArePermanent(t *testing.T) {
	for _, tc := range []struct {
		line  string
		errno syscall.Errno
		words string
	}{
		{`{"notif":{"error":"uid 1000 may not subscribe","reason":"denied"}}`, syscall.EACCES, "allow-lists"},
		{`{"notif":{"error":"1 subscriber already","reason":"full"}}`, syscall.EUSERS, "max_subscribers"},
	} {
		for _, opts := range [][]SubscribeOption{nil, {WithMarkers()}, {WithoutReconnect()}} {
			path, fake, s, c := subscribeToFake(t, opts...)
			write(t, c, tc.line+"\n")
			c.Close()
			err := expectClosed(t, s, waitLong)
			e := expectErrno(t, err, tc.errno)
			if !strings.Contains(e.Message, tc.words) || !strings.Contains(e.Message, path) {
				t.Errorf("message %q", e.Message)
			}
			select {
			case c := <-fake.conns:
				t.Fatalf("reconnected after %s: %v", tc.line, c.RemoteAddr())
			case <-time.After(quiet):
			}
			s.Close()
			fake.close()
		}
	}
}

// too_slow and memory end a connection like any lost connection: the
// subscription reconnects.
func TestTooSlowAndMemoryReconnect(t *testing.T) {
	for _, reason := range []string{"too_slow", "memory"} {
		path, fake, s, c := subscribeToFake(t)
		write(t, c, `{"n":1}`+"\n"+`{"notif":{"error":"bye","reason":"`+reason+`"}}`+"\n")
		c.Close()
		if got := nextNotification(t, s); string(got) != `{"n":1}` {
			t.Fatalf("got %q", got)
		}
		c2 := fake.accept(t)
		if got := next(t, s); got.Kind != Reconnected {
			t.Fatalf("%s: got %v, want Reconnected", reason, got.Kind)
		}
		write(t, c2, `{"n":2}`+"\n")
		if got := nextNotification(t, s); string(got) != `{"n":2}` {
			t.Fatalf("got %q", got)
		}
		s.Close()
		fake.close()

		// Without reconnection: EPIPE, saying why.
		path = sockPath(t)
		fake = newFakePublisher(t, path)
		s, err := Subscribe(context.Background(), path, WithoutReconnect())
		if err != nil {
			t.Fatal(err)
		}
		c = fake.accept(t)
		write(t, c, `{"notif":{"error":"bye","reason":"`+reason+`"}}`+"\n")
		c.Close()
		e := expectErrno(t, expectClosed(t, s, waitLong), syscall.EPIPE)
		if !strings.Contains(e.Message, reason) {
			t.Errorf("message %q", e.Message)
		}
		fake.close()
	}
}

// A publisher that closes without a line is a lost connection, as before.
func TestBareCloseIsALostConnection(t *testing.T) {
	_, _, s, c := subscribeToFake(t, WithoutReconnect())
	readRequest(t, c) // as a publisher does: unread, the close would be a reset
	c.Close()
	expectErrno(t, expectClosed(t, s, waitLong), syscall.EPIPE)
}

func TestLongLines(t *testing.T) {
	_, _, s, c := subscribeToFake(t)
	big := `{"big":"` + strings.Repeat("x", 1<<20) + `"}`
	go func() {
		// In pieces, with a short line in between, so the reader's buffer
		// boundaries fall everywhere.
		for _, part := range []string{big[:1000], big[1000:300000], big[300000:] + "\n", `{"small":1}` + "\n", big + "\n"} {
			c.Write([]byte(part))
		}
	}()
	for i, want := range []string{big, `{"small":1}`, big} {
		if got := nextNotification(t, s); string(got) != want {
			t.Fatalf("line %d: %d bytes, want %d", i, len(got), len(want))
		}
	}
}

func TestIncompleteLastLineIsDiscarded(t *testing.T) {
	_, _, s, c := subscribeToFake(t, WithoutReconnect())
	readRequest(t, c)
	write(t, c, `{"a":1}`+"\n"+`{"cut":"sho`)
	c.Close()
	if got := nextNotification(t, s); string(got) != `{"a":1}` {
		t.Fatalf("got %q", got)
	}
	err := expectClosed(t, s, waitLong)
	expectErrno(t, err, syscall.EPIPE)
}

func TestHeartbeatSilenceWithoutReconnect(t *testing.T) {
	_, _, s, c := subscribeToFake(t, WithHeartbeat(200*time.Millisecond), WithoutReconnect())
	readRequest(t, c)
	write(t, c, `{"notif":{"subscribed":true,"version":"0.1.0"}}`+"\n")
	// Heartbeats keep it alive (silence of 3 x 200 ms would not)...
	for i := 0; i < 20; i++ {
		time.Sleep(50 * time.Millisecond)
		write(t, c, `{"notif":{"heartbeat":1.0}}`+"\n")
	}
	write(t, c, `{"n":1}`+"\n")
	if got := nextNotification(t, s); string(got) != `{"n":1}` {
		t.Fatalf("got %q", got)
	}
	// ...and silence kills it (3 x 200 ms).
	start := time.Now()
	err := expectClosed(t, s, waitLong)
	expectErrno(t, err, syscall.ETIMEDOUT)
	if time.Since(start) < 500*time.Millisecond {
		t.Errorf("declared dead after %v", time.Since(start))
	}
}

func TestReconnectToFakePublisher(t *testing.T) {
	path, fake, s, c := subscribeToFake(t)
	write(t, c, `{"n":1}`+"\n")
	if got := nextNotification(t, s); string(got) != `{"n":1}` {
		t.Fatalf("got %q", got)
	}
	fake.close()
	c.Close()
	// Absent for a while: the back-off runs (100, 200, 400 ms...).
	time.Sleep(500 * time.Millisecond)
	fake2 := newFakePublisher(t, path)
	c2 := fake2.accept(t)
	write(t, c2, `{"n":2}`+"\n")
	if ev := next(t, s); ev.Kind != Reconnected {
		t.Fatalf("got %v %q, want Reconnected", ev.Kind, ev.Data)
	}
	if got := nextNotification(t, s); string(got) != `{"n":2}` {
		t.Fatalf("got %q", got)
	}
}

func TestLatePublisherIsNotAReconnect(t *testing.T) {
	path := sockPath(t)
	s, err := Subscribe(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	time.Sleep(150 * time.Millisecond)
	expectServedOnceListening(t, s, path)
}

func TestContextCancel(t *testing.T) {
	t.Run("connected", func(t *testing.T) {
		path := sockPath(t)
		fake := newFakePublisher(t, path)
		ctx, cancel := context.WithCancel(context.Background())
		s, err := Subscribe(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		fake.accept(t)
		expectNothing(t, s)
		start := time.Now()
		cancel()
		if err := expectClosed(t, s, 2*time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err() = %v", err)
		}
		t.Logf("closed %v after cancel", time.Since(start))
	})
	t.Run("waiting to reconnect", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		s, err := Subscribe(ctx, sockPath(t)) // nobody there: back-off
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := expectClosed(t, s, 3*time.Second); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Err() = %v", err)
		}
	})
	t.Run("blocked delivering", func(t *testing.T) {
		// Nobody reads the channel: cancellation still ends it.
		path := sockPath(t)
		fake := newFakePublisher(t, path)
		ctx, cancel := context.WithCancel(context.Background())
		s, err := Subscribe(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		c := fake.accept(t)
		for i := 0; i < 3*eventBuffer; i++ {
			write(t, c, `{"n":1}`+"\n")
		}
		time.Sleep(50 * time.Millisecond)
		cancel()
		done := make(chan struct{})
		go func() { s.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("Close did not return after cancel")
		}
		if err := expectClosed(t, s, time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("Err() = %v", err)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Subscribe(ctx, sockPath(t)); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestCloseSubscription(t *testing.T) {
	_, _, s, c := subscribeToFake(t)
	s.Close()
	s.Close()
	if err := expectClosed(t, s, time.Second); err != nil {
		t.Fatalf("Err() after Close = %v", err)
	}
	// The connection is gone on the publisher's side (after the request,
	// if it was written before the Close).
	c.SetReadDeadline(time.Now().Add(waitLong))
	if got, err := io.ReadAll(c); err != nil || len(got) > 0 && string(got) != `{"cursor":true}`+"\n" {
		t.Fatalf("connection still open, or more than the request: %q, %v", got, err)
	}
}
