//go:build cgo

package notif

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Resuming with cursors against the real library: the publisher's replay
// ring (WithReplayBytes), the subscriber's cursors, WithAfter, and the
// reconnections that resume by themselves.

// numbered is notification n of the tests' stream; kept ones (n%3 == 0) have
// an event_type a filter selects.
func numbered(n int) string {
	kind := "other"
	if n%3 == 0 {
		kind = "keep.it"
	}
	return fmt.Sprintf(`{"event_type":"%s","n":%d}`, kind, n)
}

// number reads n back from a notification line without encoding/json (the
// 100,000-notification test reads many).
func number(t *testing.T, line []byte) int {
	t.Helper()
	i := bytes.LastIndex(line, []byte(`"n":`))
	if i < 0 {
		t.Fatalf("no n in %s", line)
	}
	v, err := strconv.Atoi(string(bytes.TrimSuffix(line[i+4:], []byte("}"))))
	if err != nil {
		t.Fatalf("bad n in %s", line)
	}
	return v
}

// emitAll emits numbered notifications [from, to), waiting out a full backlog
// (EAGAIN drops the notification: emit it again, so the stream has no hole).
func emitAll(t *testing.T, p *Publisher, from, to int) {
	t.Helper()
	if err := emitRange(p, from, to); err != nil {
		t.Fatal(err)
	}
}

func emitRange(p *Publisher, from, to int) error {
	for n := from; n < to; n++ {
		for {
			_, err := p.Emit([]byte(numbered(n)))
			if err == nil {
				break
			}
			if !errorsIsEAGAIN(err) {
				return fmt.Errorf("emit %d: %v", n, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

func errorsIsEAGAIN(err error) bool {
	e, ok := err.(*Error)
	return ok && e.Errno == syscall.EAGAIN
}

// waitNextSeq waits until the server thread has numbered n notifications.
func waitNextSeq(t *testing.T, p *Publisher, n uint64) Stats {
	t.Helper()
	return waitStats(t, p, func(st Stats) bool { return st.NextSeq >= n }, func(st Stats) string {
		return fmt.Sprintf("next_seq %d, want %d,", st.NextSeq, n)
	})
}

// TestHelperSubscriberProcess is the subscriber process of the tests below,
// run as this test binary with NOTIF_HELPER set: it subscribes to
// NOTIF_PATH (after NOTIF_AFTER, with the event type filter NOTIF_TYPES),
// prints "READY" once connected, then the n of each of NOTIF_COUNT
// notifications and, last, "CURSOR <its cursor>", and exits.
func TestHelperSubscriberProcess(t *testing.T) {
	if os.Getenv("NOTIF_HELPER") != "subscriber" {
		t.Skip("the subscriber process of TestResumeInAnotherProcess")
	}
	// Without a cursor, from the ring: then every notification is numbered
	// (one that arrived before the publisher read the request has no cursor).
	opts := []SubscribeOption{WithoutReconnect(), WithReplay()}
	if after := os.Getenv("NOTIF_AFTER"); after != "" {
		opts = []SubscribeOption{WithoutReconnect(), WithAfter(after)}
	}
	if types := os.Getenv("NOTIF_TYPES"); types != "" {
		opts = append(opts, WithFilters(Filter{EventTypes: strings.Split(types, ",")}))
	}
	count, _ := strconv.Atoi(os.Getenv("NOTIF_COUNT"))
	s, err := Subscribe(context.Background(), os.Getenv("NOTIF_PATH"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "READY")
	out.Flush()
	for got := 0; got < count; {
		ev := next(t, s)
		switch ev.Kind {
		case Notification:
			fmt.Fprintln(out, number(t, ev.Data))
			got++
		case Dropped:
			fmt.Fprintf(out, "DROPPED %d %v\n", ev.Dropped, ev.Unknown)
		default:
			t.Fatalf("unexpected %v", ev.Kind)
		}
	}
	fmt.Fprintln(out, "CURSOR", s.Cursor())
	out.Flush()
	s.Close()
}

// subscriberProcess starts the helper; ready waits for its READY, finish for
// its exit, and returns the numbers it got and its cursor.
type subscriberProcess struct {
	cmd   *exec.Cmd
	lines *bufio.Scanner
}

func startSubscriberProcess(t *testing.T, path, after, types string, count int) *subscriberProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSubscriberProcess$", "-test.count=1", "-test.timeout=120s")
	cmd.Env = append(os.Environ(), "NOTIF_HELPER=subscriber", "NOTIF_PATH="+path, "NOTIF_AFTER="+after,
		"NOTIF_TYPES="+types, "NOTIF_COUNT="+strconv.Itoa(count))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sp := &subscriberProcess{cmd: cmd, lines: bufio.NewScanner(stdout)}
	if !sp.lines.Scan() || sp.lines.Text() != "READY" {
		t.Fatalf("the subscriber process did not start: %q", sp.lines.Text())
	}
	return sp
}

func (sp *subscriberProcess) finish(t *testing.T) (numbers []int, dropped []string, cursor string) {
	t.Helper()
	for sp.lines.Scan() {
		line := sp.lines.Text()
		switch {
		case strings.HasPrefix(line, "CURSOR "):
			cursor = strings.TrimPrefix(line, "CURSOR ")
		case strings.HasPrefix(line, "DROPPED "):
			dropped = append(dropped, line)
		case line == "PASS" || strings.HasPrefix(line, "ok ") || strings.HasPrefix(line, "---") || strings.HasPrefix(line, "==="):
		default:
			n, err := strconv.Atoi(line)
			if err != nil {
				t.Fatalf("the subscriber process said %q", line)
			}
			numbers = append(numbers, n)
		}
	}
	if err := sp.cmd.Wait(); err != nil {
		t.Fatalf("the subscriber process failed: %v", err)
	}
	if cursor == "" {
		t.Fatal("the subscriber process gave no cursor")
	}
	return numbers, dropped, cursor
}

// A subscriber process reads 1,000 notifications of a numbered stream, saves
// its cursor and exits; the publisher emits 5,000 more; a new process
// subscribing with that cursor gets exactly the next ones, in order, then the
// live stream, with no gap and no duplicate. The same with a filter on the
// resuming process.
func TestResumeInAnotherProcess(t *testing.T) {
	for _, filtered := range []bool{false, true} {
		t.Run(fmt.Sprintf("filtered=%v", filtered), func(t *testing.T) {
			path := sockPath(t)
			p := openPub(t, path, WithReplayBytes(16<<20))
			first := startSubscriberProcess(t, path, "", "", 1000)
			waitSubscribers(t, p, 1)
			emitAll(t, p, 0, 1500) // it leaves after 1,000 of them
			got, dropped, cursor := first.finish(t)
			if len(dropped) != 0 || len(got) != 1000 {
				t.Fatalf("the first process got %d notifications, drops %v", len(got), dropped)
			}
			for i, n := range got {
				if n != i {
					t.Fatalf("the first process's notification %d is number %d", i, n)
				}
			}
			emitAll(t, p, 1500, 6500) // nobody listening: the ring keeps them
			waitNextSeq(t, p, 6500)

			types, want := "", []int(nil)
			for n := 1000; n < 7000; n++ {
				if !filtered || n%3 == 0 {
					want = append(want, n)
				}
			}
			if filtered {
				types = "keep.*"
			}
			second := startSubscriberProcess(t, path, cursor, types, len(want))
			waitSubscribers(t, p, 1)
			emitAll(t, p, 6500, 7000) // live
			got, dropped, _ = second.finish(t)
			if len(dropped) != 0 {
				t.Fatalf("the resuming process was told of drops: %v", dropped)
			}
			if len(got) != len(want) {
				t.Fatalf("the resuming process got %d notifications, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("the resuming process's notification %d is number %d, want %d", i, got[i], want[i])
				}
			}
			st, _ := p.Stats()
			t.Logf("after %s: replayed %d, ring %d messages, %d bytes", cursor, st.Replayed, st.ReplayMessages, st.ReplayBytes)
			if st.Replayed == 0 {
				t.Error("Stats.Replayed is 0")
			}
			// The stats answer on the socket carries the same fields.
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			ps, err := RequestStats(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			if ps.NextSeq != 7000 || ps.ReplayMessages != st.ReplayMessages || ps.ReplayOldest != st.ReplayOldest || ps.Replayed == 0 || ps.ReplayBytes == 0 {
				t.Errorf("RequestStats: %+v, Stats: %+v", ps.Stats, st)
			}
		})
	}
}

// A library subscriber that reads slowly, on a publisher with the disconnect
// policy and a small subscriber buffer but a large ring, is disconnected and
// reconnects many times during a 100,000-notification stream, and ends with
// every notification exactly once, in order.
func TestSlowSubscriberResumesWithoutLoss(t *testing.T) {
	const total = 100000
	path := sockPath(t)
	p := openPub(t, path, WithSlowPolicy(SlowDisconnect), WithSubscriberBuffer(16<<10),
		WithMemoryLimit(128<<20), WithReplayBytes(64<<20))
	s := subscribe(t, path, WithReplay()) // every notification numbered, the first too
	waitSubscribers(t, p, 1)
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		// In bursts, so that the reader falls behind again and again.
		for n := 0; n < total; n += 2000 {
			if err := emitRange(p, n, n+2000); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	reconnects := 0
	deadline := time.After(100 * time.Second)
	for want := 0; want < total; {
		var ev Event
		select {
		case ev = <-s.Events():
		case <-deadline:
			t.Fatalf("stuck at %d of %d after %d reconnections", want, total, reconnects)
		}
		switch ev.Kind {
		case Notification:
			if n := number(t, ev.Data); n != want {
				st, _ := p.Stats()
				t.Fatalf("notification %d is number %d (after %d reconnections); publisher %+v", want, n, reconnects, st)
			}
			want++
			if want%100 == 0 {
				time.Sleep(time.Millisecond) // slow
			}
		case Reconnected:
			reconnects++
		default:
			t.Fatalf("%v event (dropped %d, unknown %v) at %d", ev.Kind, ev.Dropped, ev.Unknown, want)
		}
	}
	<-emitted
	st, _ := p.Stats()
	t.Logf("%d notifications, %d reconnections; publisher: disconnected %d, replayed %d, dropped_slow %d",
		total, reconnects, st.Disconnected, st.Replayed, st.DroppedSlow)
	if reconnects < 2 || st.Disconnected < 2 {
		t.Fatalf("reconnected %d times, disconnected %d: the test did not exercise resuming", reconnects, st.Disconnected)
	}
	if s.Cursor() == "" || !strings.HasSuffix(s.Cursor(), fmt.Sprintf("-%d", total-1)) {
		t.Errorf("Cursor() = %q, want number %d", s.Cursor(), total-1)
	}
	expectNothing(t, s)
}

// A cursor older than the ring gets a Dropped event with the count of what
// the ring lost, one of another epoch a Dropped event of unknown count; then
// the ring's notifications, then live.
func TestOldCursorAndOtherEpoch(t *testing.T) {
	const total = 20000
	path := sockPath(t)
	p := openPub(t, path, WithReplayBytes(64<<10))
	first := subscribe(t, path, WithReplay()) // so that even an early notification is numbered
	waitSubscribers(t, p, 1)
	emit(t, p, numbered(0))
	if got := nextNotification(t, first); number(t, got) != 0 {
		t.Fatalf("got %s", got)
	}
	old := first.Cursor()
	epoch, seq, _ := strings.Cut(old, "-")
	if seq != "0" || !validCursor(old) {
		t.Fatalf("cursor %q", old)
	}
	first.Close()
	// In steps the server thread takes one by one: the ring keeps whole
	// batches, and one batch larger than the ring would leave it empty.
	for n := 1; n < total; n += 500 {
		emitAll(t, p, n, min(n+500, total))
		waitNextSeq(t, p, uint64(min(n+500, total)))
	}

	other := fmt.Sprintf("%016x-5", ^mustParseHex(t, epoch))
	for i, tc := range []struct {
		after   string
		unknown bool
	}{
		{old, false},
		{other, true},
	} {
		end := total + i // notifications so far (the previous case emitted one live)
		st := waitNextSeq(t, p, uint64(end))
		oldest := int(st.ReplayOldest)
		if oldest <= 1 || oldest >= end || st.ReplayMessages != uint64(end-oldest) {
			t.Fatalf("the ring holds %d messages from %d: the test wants it to have lost some", st.ReplayMessages, oldest)
		}
		t.Logf("ring: %d messages from number %d, %d bytes", st.ReplayMessages, oldest, st.ReplayBytes)
		var dropped uint64 // unknown: none counted
		if !tc.unknown {
			dropped = uint64(oldest - 1) // 1 .. oldest-1 are gone
		}
		s := subscribe(t, path, WithAfter(tc.after))
		ev := next(t, s)
		if ev.Kind != Dropped || ev.Dropped != dropped || ev.Unknown != tc.unknown {
			t.Fatalf("after %s: first event %v dropped %d unknown %v, want dropped %d unknown %v",
				tc.after, ev.Kind, ev.Dropped, ev.Unknown, dropped, tc.unknown)
		}
		for want := oldest; want < end; want++ {
			if got := nextNotification(t, s); number(t, got) != want {
				t.Fatalf("after %s: got %s, want number %d", tc.after, got, want)
			}
		}
		live := end
		emit(t, p, numbered(live))
		ev = next(t, s)
		if ev.Kind != Notification || number(t, ev.Data) != live || ev.Cursor() != fmt.Sprintf("%s-%d", epoch, live) {
			t.Fatalf("after %s: live event %v %s %q", tc.after, ev.Kind, ev.Data, ev.Cursor())
		}
		if s.DroppedTotal() != dropped {
			t.Errorf("DroppedTotal %d", s.DroppedTotal())
		}
		s.Close()
	}
}

func mustParseHex(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
