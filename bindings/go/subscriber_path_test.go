package notif

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// expectConnectFailed waits for a ConnectFailed event and checks its errno.
func expectConnectFailed(t *testing.T, s *Subscription, want syscall.Errno) *Error {
	t.Helper()
	ev := next(t, s)
	if ev.Kind != ConnectFailed {
		t.Fatalf("got %v %q, want ConnectFailed", ev.Kind, ev.Data)
	}
	return expectErrno(t, ev.Err, want)
}

// checkText fails on the doubled and misleading texts of earlier versions.
func checkText(t *testing.T, err error, mustContain string) {
	t.Helper()
	text := err.Error()
	if !strings.Contains(text, mustContain) {
		t.Errorf("%q does not say %q", text, mustContain)
	}
	for _, errno := range []syscall.Errno{syscall.ENOENT, syscall.EPIPE, syscall.ECONNREFUSED, syscall.ENOTSOCK} {
		if n := strings.Count(text, errno.Error()); n > 1 {
			t.Errorf("%q says %q %d times", text, errno.Error(), n)
		}
	}
	if strings.Contains(text, "broken pipe") {
		t.Errorf("%q calls a normal close a broken pipe", text)
	}
}

func TestConnectFailedOnARegularFileThenRecovers(t *testing.T) {
	path := sockPath(t)
	if err := os.WriteFile(path, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Subscribe(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := expectConnectFailed(t, s, syscall.ENOTSOCK)
	checkText(t, e, "a regular file, not a socket")
	if !strings.Contains(e.Message, path) {
		t.Errorf("message %q does not name the path", e.Message)
	}
	// It keeps trying and reports the same failure only once: when the path
	// becomes a publisher's socket, the next event is its notification.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expectServedOnceListening(t, s, path)
}

func TestConnectFailedOnAMissingDirectoryThenRecovers(t *testing.T) {
	dir := filepath.Dir(sockPath(t))
	missing := filepath.Join(dir, "later")
	path := filepath.Join(missing, "s.sock")
	s, err := Subscribe(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e := expectConnectFailed(t, s, syscall.ENOENT)
	checkText(t, e, "directory "+missing+" does not exist")
	if err := os.Mkdir(missing, 0o700); err != nil {
		t.Fatal(err)
	}
	expectServedOnceListening(t, s, path)
}

func TestGiveUpOnConnectFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string
		errno syscall.Errno
		says  string
	}{
		{"missing directory", func(t *testing.T) string {
			return filepath.Join(filepath.Dir(sockPath(t)), "no", "s.sock")
		}, syscall.ENOENT, "does not exist"},
		{"directory", func(t *testing.T) string {
			path := sockPath(t)
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			return path
		}, syscall.ENOTSOCK, "a directory, not a socket"},
		{"component not a directory", func(t *testing.T) string {
			file := sockPath(t)
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(file, "s.sock")
		}, syscall.ENOTDIR, "not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Subscribe(context.Background(), tc.setup(t), WithGiveUpOnConnectFailure())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			expectConnectFailed(t, s, tc.errno)
			err = expectClosed(t, s, waitLong)
			expectErrno(t, err, tc.errno)
			checkText(t, err, tc.says)
		})
	}
}

// A publisher that is merely not running is waited for without an event.
func TestAbsentPublisherIsNoConnectFailure(t *testing.T) {
	path := sockPath(t)
	fake := newFakePublisher(t, path)
	// A socket file nobody listens on (a stopped publisher's leftover).
	fake.ln.SetUnlinkOnClose(false)
	fake.close()
	s, err := Subscribe(context.Background(), path, WithGiveUpOnConnectFailure())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	expectNothing(t, s)
}

func TestErrorTexts(t *testing.T) {
	path := sockPath(t)
	_, err := Subscribe(context.Background(), path, WithoutReconnect())
	expectErrno(t, err, syscall.ENOENT)
	checkText(t, err, "no socket there")

	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Subscribe(context.Background(), path, WithoutReconnect())
	expectErrno(t, err, syscall.ENOTSOCK)
	checkText(t, err, "not a socket")
	os.Remove(path)

	// A publisher that closes the connection normally.
	fake := newFakePublisher(t, path)
	s, err := Subscribe(context.Background(), path, WithoutReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := fake.accept(t)
	readRequest(t, c) // as a publisher does: unread, the close would be a reset
	c.Close()
	err = expectClosed(t, s, waitLong)
	expectErrno(t, err, syscall.EPIPE)
	checkText(t, err, "closed the connection")

	// A library message that names no errno still gets the errno's text.
	e := newError("open", syscall.EADDRINUSE, "another publisher is live at /x")
	if !strings.HasSuffix(e.Error(), "(address already in use)") || !errors.Is(e, syscall.EADDRINUSE) {
		t.Errorf("%q", e.Error())
	}
}
