package notif

// Another local user against the Go client (issue 18, finding 6): the
// attacker is this test binary re-executed as uid/gid 65534, serving sockets
// in a shared directory (1777) of root's; the client runs as root. Needs
// root (CI runs as root); elsewhere the tests skip.
//
// - RequestStats with a context that has no deadline must not hang on a
//   socket that accepts and never answers, nor on one whose listen backlog
//   stays full: it gives up (ETIMEDOUT) and says why;
// - Subscribe reports a socket that accepts no connection (ConnectFailed,
//   EAGAIN) instead of waiting quietly for ever.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const attackerEnv = "NOTIF_GO_ATTACKER"

// TestHostileAttackerHelper is the attacker when re-executed (attackerEnv set):
// "stuck PATH" listens with a full backlog and never accepts; "silent PATH"
// accepts and never answers. It prints "ready" and holds until stdin closes.
func TestHostileAttackerHelper(t *testing.T) {
	spec := os.Getenv(attackerEnv)
	if spec == "" {
		return
	}
	mode, path, _ := strings.Cut(spec, " ")
	var held []any
	switch mode {
	case "stuck":
		listenFD(t, path, 0, 0)
		for {
			c, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := syscall.Connect(c, &syscall.SockaddrUnix{Name: path}); err != nil {
				if !errors.Is(err, syscall.EAGAIN) {
					t.Fatal(err)
				}
				break
			}
			held = append(held, c)
		}
	case "silent":
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				held = append(held, c) // never read, never written
			}
		}()
	default:
		t.Fatalf("unknown attacker mode %q", mode)
	}
	os.Stdout.WriteString("ready\n")
	io.Copy(io.Discard, os.Stdin)
	_ = held
}

// startAttacker runs the attacker as uid 65534 with a socket in a shared
// directory; it is stopped when the test ends.
func startAttacker(t *testing.T, mode string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the attacker runs as uid 65534")
	}
	dir, err := os.MkdirTemp("", "notif-go-hostile")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	// uid 65534 may not reach the test binary where go test built it.
	exe, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "attacker")
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "evil.sock")
	cmd := exec.Command(bin, "-test.run=^TestHostileAttackerHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), attackerEnv+"="+mode+" "+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		for scanner.Scan() {
			if scanner.Text() == "ready" {
				ready <- true
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the attacker ended before it was ready")
		}
	case <-time.After(waitLong):
		t.Fatal("the attacker did not get ready")
	}
	return path
}

// statsWithin runs RequestStats with a context that has no deadline,
// failing the test if it has not returned within a minute.
func statsWithin(t *testing.T, path string) (error, time.Duration) {
	t.Helper()
	started := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := RequestStats(context.Background(), path)
		done <- err
	}()
	select {
	case err := <-done:
		return err, time.Since(started)
	case <-time.After(time.Minute):
		t.Fatalf("RequestStats(context.Background(), %s) still waiting after a minute", path)
	}
	return nil, 0
}

func TestHostileRequestStatsGivesUpOnASocketThatNeverAnswers(t *testing.T) {
	path := startAttacker(t, "silent")
	err, took := statsWithin(t, path)
	t.Logf("RequestStats on a socket that never answers: %v after %v", err, took)
	expectErrno(t, err, syscall.ETIMEDOUT)
}

func TestHostileRequestStatsGivesUpOnASocketThatNeverAccepts(t *testing.T) {
	path := startAttacker(t, "stuck")
	err, took := statsWithin(t, path)
	t.Logf("RequestStats on a socket that never accepts: %v after %v", err, took)
	expectErrno(t, err, syscall.ETIMEDOUT)
	if !strings.Contains(err.Error(), "accepts no connection") {
		t.Fatalf("%v", err)
	}
}

func TestHostileSubscribeReportsASocketThatNeverAccepts(t *testing.T) {
	path := startAttacker(t, "stuck")
	s, err := Subscribe(context.Background(), path, WithGiveUpOnConnectFailure())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ev := next(t, s)
	if ev.Kind != ConnectFailed {
		t.Fatalf("got %v, want ConnectFailed", ev.Kind)
	}
	expectErrno(t, ev.Err, syscall.EAGAIN)
	if !strings.Contains(ev.Err.Error(), "accepts no connection") {
		t.Fatalf("%v", ev.Err)
	}
	// Not given up on: the socket may start accepting.
	expectNothing(t, s)
	// Without reconnection, Subscribe itself says so.
	if _, err := Subscribe(context.Background(), path, WithoutReconnect()); err == nil {
		t.Fatal("Subscribe WithoutReconnect to a socket that accepts nothing succeeded")
	} else {
		expectErrno(t, err, syscall.EAGAIN)
	}
}
