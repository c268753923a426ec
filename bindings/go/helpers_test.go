package notif

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Bounds for the waits of the tests: generous, so a loaded 2-core machine does
// not make them flaky; a passing test never waits them out.
const (
	waitLong = 20 * time.Second
	quiet    = 200 * time.Millisecond // how long "nothing more arrives" is watched
)

// sockPath is a fresh socket path, short enough for sun_path (t.TempDir
// embeds the test's name and can be too long).
func sockPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "notif-go")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// next returns the next event, failing the test if none comes in time or the
// channel closes.
func next(t *testing.T, s *Subscription) Event {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		if !ok {
			t.Fatalf("events closed early: Err() = %v", s.Err())
		}
		return ev
	case <-time.After(waitLong):
		t.Fatalf("no event within %v", waitLong)
	}
	return Event{}
}

// nextNotification skips Reconnected/Dropped events.
func nextNotification(t *testing.T, s *Subscription) []byte {
	t.Helper()
	for {
		ev := next(t, s)
		if ev.Kind == Notification {
			return ev.Data
		}
	}
}

// expectClosed waits for the events channel to close (draining it) and returns Err().
func expectClosed(t *testing.T, s *Subscription, within time.Duration) error {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case _, ok := <-s.Events():
			if !ok {
				return s.Err()
			}
		case <-deadline:
			t.Fatalf("events not closed within %v", within)
		}
	}
}

// expectNothing checks that no event arrives for a while.
func expectNothing(t *testing.T, s *Subscription) {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		if ok {
			t.Fatalf("unexpected event %v %q", ev.Kind, ev.Data)
		}
		t.Fatalf("events closed: %v", s.Err())
	case <-time.After(quiet):
	}
}

func expectErrno(t *testing.T, err error, want syscall.Errno) *Error {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v: want errno %v", err, want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *notif.Error", err, err)
	}
	if e.Message == "" {
		t.Fatalf("error %v has no message", err)
	}
	return e
}

// fakePublisher is a hand-driven publisher: the test writes exactly the bytes
// it wants (control lines, unfiltered lines before the acknowledgement).
type fakePublisher struct {
	ln    *net.UnixListener
	conns chan *net.UnixConn
}

func newFakePublisher(t *testing.T, path string) *fakePublisher {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePublisher{ln: ln, conns: make(chan *net.UnixConn, 8)}
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				close(f.conns)
				return
			}
			f.conns <- c
		}
	}()
	t.Cleanup(f.close)
	return f
}

func (f *fakePublisher) close() { f.ln.Close() }

func (f *fakePublisher) accept(t *testing.T) *net.UnixConn {
	t.Helper()
	select {
	case c, ok := <-f.conns:
		if !ok {
			t.Fatal("fake publisher closed")
		}
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(waitLong):
		t.Fatal("no connection to the fake publisher")
	}
	return nil
}

// readRequest reads the subscriber's request line.
func readRequest(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitLong))
	defer c.SetReadDeadline(time.Time{})
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			t.Fatalf("reading the request: %v (so far %q)", err, line)
		}
		if b[0] == '\n' {
			return string(line)
		}
		line = append(line, b[0])
	}
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

// subscribe is a Subscription to path, closed when the test ends.
func subscribe(t *testing.T, path string, opts ...SubscribeOption) *Subscription {
	t.Helper()
	s, err := Subscribe(context.Background(), path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// subscribeToFake is a fake publisher at a fresh path, a Subscription to it
// (closed when the test ends) and the connection the fake accepted from it.
func subscribeToFake(t *testing.T, opts ...SubscribeOption) (string, *fakePublisher, *Subscription, *net.UnixConn) {
	t.Helper()
	path := sockPath(t)
	fake := newFakePublisher(t, path)
	s := subscribe(t, path, opts...)
	return path, fake, s, fake.accept(t)
}

// requestOf is the request line a Subscription with opts writes first.
func requestOf(t *testing.T, opts ...SubscribeOption) string {
	t.Helper()
	_, _, _, c := subscribeToFake(t, opts...)
	return readRequest(t, c)
}

// expectServedOnceListening starts a fake publisher at path, where s has
// been waiting for one, and expects s's next event to be the notification it
// sends first.
func expectServedOnceListening(t *testing.T, s *Subscription, path string) {
	t.Helper()
	c := newFakePublisher(t, path).accept(t)
	write(t, c, `{"n":1}`+"\n")
	if ev := next(t, s); ev.Kind != Notification || string(ev.Data) != `{"n":1}` {
		t.Fatalf("got %v %q %v, want the notification", ev.Kind, ev.Data, ev.Err)
	}
}

// listenFD is a Unix stream socket bound at path and listening with backlog,
// as a raw descriptor (flags: SOCK_CLOEXEC...).
func listenFD(t *testing.T, path string, flags, backlog int) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|flags, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, backlog); err != nil {
		t.Fatal(err)
	}
	return fd
}
