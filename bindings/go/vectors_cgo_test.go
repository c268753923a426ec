//go:build cgo

package notif

// The protocol vectors against the real publisher (the cgo Publisher of this
// package) over a real socket: the request lines (written raw, the answer
// read by the Go client's parseControl), what Emit refuses, the filters and
// globs through Subscribe(WithFilters), cursors through WithAfter. The pure
// Go readers of the same vectors are in vectors_test.go.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// requestBytes is a request vector's line, pad_to applied, with its newline.
func requestBytes(t *testing.T, v requestVector) []byte {
	t.Helper()
	line := []byte(v.Line)
	if v.PadTo > 0 {
		if v.PadTo <= len(line)+1 {
			t.Fatalf("%s: pad_to %d", v.Name, v.PadTo)
		}
		last := line[len(line)-1]
		line = append(line[:len(line)-1], bytes.Repeat([]byte(" "), v.PadTo-len(line)-1)...)
		line = append(line, last)
	}
	return append(line, '\n')
}

// rawAnswer writes request to the publisher at path and reads the class of
// its first line, in the vectors' form: {"ack":{"cursor":B}},
// {"error":{"reason":R}} (then the connection is closed) or {"stats":true}.
func rawAnswer(t *testing.T, path string, request []byte) []byte {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitLong))
	// A publisher that refuses a long line may close before reading it all.
	_, _ = conn.Write(request)
	reader := bufio.NewReader(conn)
	line, err := readLine(reader)
	if err != nil {
		t.Fatalf("%q: no answer: %v", request, err)
	}
	c, ok := parseControl(line)
	switch {
	case ok && c.kind == ctlAck:
		return []byte(fmt.Sprintf(`{"ack":{"cursor":%v}}`, c.epoch != ""))
	case ok && c.kind == ctlError:
		if more, err := readLine(reader); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%q: after the error line: %q %v, want the end of the stream", request, more, err)
		}
		return mustJSON(t, map[string]any{"error": map[string]string{"reason": actedReason(c.reason)}})
	case ok && c.kind == ctlStats:
		return []byte(`{"stats":true}`)
	}
	t.Fatalf("%q: unexpected answer %q", request, line)
	return nil
}

// The request vectors: the Go client builds its requests and reads none, so
// these run against the publisher, its answers read by the Go client.
func TestVectorsRequestsAgainstThePublisher(t *testing.T) {
	var vectors []requestVector
	loadVectors(t, "requests.json", &vectors)
	path := sockPath(t)
	openPub(t, path)
	for _, v := range vectors {
		if got := rawAnswer(t, path, requestBytes(t, v)); !sameJSON(got, v.Expect) {
			t.Errorf("%s: %s, want %s", v.Name, got, v.Expect)
		}
	}
}

// Emit refuses (EINVAL) every line the vectors mark refused; an accepted one
// reaches a Go subscriber as a notification, as it was emitted.
func TestVectorsEmit(t *testing.T) {
	var vectors []controlVector
	loadVectors(t, "control_lines.json", &vectors)
	path := sockPath(t)
	p := openPub(t, path)
	s := subscribe(t, path, WithoutReconnect())
	waitSubscribers(t, p, 1)
	var accepted []string
	for _, v := range vectors {
		n, err := p.Emit([]byte(v.Line))
		switch v.Emit {
		case "refused":
			if !errors.Is(err, syscall.EINVAL) {
				t.Errorf("emit %q: %d %v, want EINVAL", v.Line, n, err)
			}
		case "accepted":
			if err != nil || n != 1 {
				t.Errorf("emit %q: %d %v, want 1 subscriber", v.Line, n, err)
			}
			accepted = append(accepted, v.Line)
		default:
			t.Fatalf("%q: emit %q", v.Line, v.Emit)
		}
	}
	for _, line := range accepted {
		if got := nextNotification(t, s); string(got) != line {
			t.Errorf("received %q, want %q", got, line)
		}
	}
}

// filterSubscription: one Go subscription of a filter or glob vector and the
// lines each case emits, with whether it must arrive.
type filterSubscription struct {
	name  string
	opts  []SubscribeOption
	lines []string
	match []bool
	sub   *Subscription
}

// Every filter and glob vector through Subscribe(WithFilters) against the
// publisher: all subscribed first, every line emitted once, then the
// publisher closed (it flushes first): each subscription received exactly
// the lines of its own cases that match.
func TestVectorsFiltersThroughThePublisher(t *testing.T) {
	var filters []filterVector
	loadVectors(t, "filters.json", &filters)
	var globs []globVector
	loadVectors(t, "globs.json", &globs)
	var subs []*filterSubscription
	for _, v := range filters {
		f, _ := vectorFilter(t, v.Subscribe)
		fs := &filterSubscription{name: v.Name, opts: []SubscribeOption{WithFilters(f)}}
		for _, c := range v.Cases {
			fs.lines, fs.match = append(fs.lines, c.Line), append(fs.match, c.Match)
		}
		subs = append(subs, fs)
	}
	for _, v := range globs {
		for _, c := range globCases(t, v) {
			f := Filter{EventTypes: c.filter.EventTypes, Publishers: c.filter.Publishers}
			subs = append(subs, &filterSubscription{name: fmt.Sprintf("glob %q ~ %q as %s", v.Pattern, v.Text, c.line),
				opts: []SubscribeOption{WithFilters(f)}, lines: []string{string(c.line)}, match: []bool{v.Match}})
		}
	}
	// A publisher of its own for each batch, so that its stats list them all.
	const batch = 40
	for len(subs) > 0 {
		n := min(batch, len(subs))
		filterBatch(t, subs[:n])
		subs = subs[n:]
	}
}

// filterBatch subscribes each of subs to a new publisher, waits until the
// publisher has read every request (lines emitted before are sent to a
// subscriber unfiltered and unnumbered), emits every line, closes the
// publisher and checks what each subscription received.
func filterBatch(t *testing.T, subs []*filterSubscription) {
	t.Helper()
	path := sockPath(t)
	p, err := Open(path, WithLinger(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for _, fs := range subs {
		// The heartbeat (never due) shows in the publisher's stats once it
		// has read the request.
		fs.sub = subscribe(t, path, append(fs.opts, WithHeartbeat(time.Hour), WithoutReconnect())...)
	}
	deadline := time.Now().Add(waitLong)
	for {
		answer, err := RequestStats(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		read := 0
		for _, info := range answer.SubscriberList {
			if info.Heartbeat != 0 {
				read++
			}
		}
		if read == len(subs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the publisher read %d requests of %d in %v", read, len(subs), waitLong)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The n-th line emitted is number n (its cursor's): each subscription is
	// judged on its own lines, which it receives iff they match.
	first := make([]uint64, len(subs))
	var emitted uint64
	for i, fs := range subs {
		first[i] = emitted
		for _, line := range fs.lines {
			if _, err := p.Emit([]byte(line)); err != nil {
				t.Fatalf("emit %s: %v", line, err)
			}
			emitted++
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for i, fs := range subs {
		got := make(map[uint64]string)
		for ev := range fs.sub.Events() {
			if ev.Kind != Notification {
				continue
			}
			if ev.pos.epoch == "" {
				t.Fatalf("%s: a notification without a number: %s", fs.name, ev.Data)
			}
			got[ev.pos.seq] = string(ev.Data)
		}
		for j, line := range fs.lines {
			data, received := got[first[i]+uint64(j)]
			if received != fs.match[j] || received && data != line {
				t.Errorf("%s: %s: received %v %q, want %v (%v)", fs.name, line, received, data, fs.match[j], fs.sub.Err())
			}
		}
	}
}

// Cursors: {"after": text} is acknowledged with an epoch, then a dropped
// marker of unknown count (another epoch), or refused as bad_request; and the
// Go client resuming WithAfter a valid one gets that Dropped event first.
func TestVectorsCursorsAgainstThePublisher(t *testing.T) {
	var vectors []cursorVector
	loadVectors(t, "cursors.json", &vectors)
	path := sockPath(t)
	openPub(t, path)
	for _, v := range vectors {
		request := append(mustJSON(t, map[string]string{"after": v.Text}), '\n')
		want := `{"ack":{"cursor":true}}`
		if string(v.Parsed) == `"invalid"` {
			want = `{"error":{"reason":"bad_request"}}`
		}
		if got := rawAnswer(t, path, request); !sameJSON(got, []byte(want)) {
			t.Errorf("after %q: %s, want %s", v.Text, got, want)
		}
		if string(v.Parsed) == `"invalid"` {
			continue // WithAfter refuses it before connecting: vectors_test.go
		}
		s := subscribe(t, path, WithAfter(v.Text), WithoutReconnect())
		if ev := next(t, s); ev.Kind != Dropped || !ev.Unknown {
			t.Errorf("WithAfter(%q): first event %v unknown=%v, want Dropped of unknown count", v.Text, ev.Kind, ev.Unknown)
		}
		s.Close()
	}
}
