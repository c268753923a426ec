package notif

// The protocol vectors (tests/protocol-vectors, format in its README) through
// the pure Go subscriber: how it classifies every control line (parseControl,
// the one reader serve uses), matches filters and globs (filter.go), checks
// and reads cursors (cursor.go), and what a Subscription makes of control and
// error lines written by a fake publisher. vectors_cgo_test.go runs the
// request, emit, filter and cursor vectors against the real publisher. The
// Rust and Python clients and the server read the same files.

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const vectorDir = "../../tests/protocol-vectors"

type controlVector struct {
	Line   string                     `json:"line"`
	Class  string                     `json:"class"`
	Fields map[string]json.RawMessage `json:"fields"`
	Emit   string                     `json:"emit"`
	Note   string                     `json:"note"`
}

type requestVector struct {
	Name   string          `json:"name"`
	Line   string          `json:"line"`
	PadTo  int             `json:"pad_to"`
	Expect json.RawMessage `json:"expect"`
}

type filterVector struct {
	Name      string          `json:"name"`
	Subscribe json.RawMessage `json:"subscribe"`
	Cases     []struct {
		Line  string `json:"line"`
		Match bool   `json:"match"`
	} `json:"cases"`
}

type globVector struct {
	Pattern string `json:"pattern"`
	Text    string `json:"text"`
	Match   bool   `json:"match"`
}

type cursorVector struct {
	Text   string          `json:"text"`
	Parsed json.RawMessage `json:"parsed"`
}

// loadVectors reads one file of vectors into v (a pointer to a slice).
func loadVectors(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vectorDir, name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if reflect.ValueOf(v).Elem().Len() == 0 {
		t.Fatalf("%s holds no vector", name)
	}
}

// sameJSON: a and b are the same JSON value (numbers compared by their text
// as json.Number, so integers over 2^53 stay exact).
func sameJSON(a, b []byte) bool {
	decode := func(raw []byte) (any, bool) {
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var v any
		return v, d.Decode(&v) == nil
	}
	x, okX := decode(a)
	y, okY := decode(b)
	return okX && okY && reflect.DeepEqual(normalNumbers(x), normalNumbers(y))
}

// normalNumbers makes 1765158000 and 1765158000.0 the same number.
func normalNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		if _, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return string(v)
		}
		f, _ := v.Float64()
		return strconv.FormatFloat(f, 'g', -1, 64)
	case map[string]any:
		for k, e := range v {
			v[k] = normalNumbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = normalNumbers(e)
		}
	}
	return v
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// classify is parseControl's answer in the vectors' terms: a class and its fields.
func classify(t *testing.T, line []byte) (string, []byte) {
	c, ok := parseControl(line)
	if !ok {
		return "notification", []byte(`{}`)
	}
	switch c.kind {
	case ctlAck:
		var epoch any
		if c.epoch != "" {
			epoch = c.epoch
		}
		return "ack", mustJSON(t, map[string]any{"epoch": epoch})
	case ctlSeq:
		return "seq", mustJSON(t, map[string]any{"seq": c.n})
	case ctlDropped:
		if c.unknown {
			return "dropped", []byte(`{"count":"unknown"}`)
		}
		return "dropped", mustJSON(t, map[string]any{"count": c.n})
	case ctlHeartbeat:
		return "heartbeat", mustJSON(t, map[string]any{"time": c.time})
	case ctlError:
		return "error", mustJSON(t, map[string]any{"reason": actedReason(c.reason), "message": c.message})
	case ctlStats:
		return "stats", mustJSON(t, map[string]any{"stats": c.stats})
	}
	return "unknown_control", []byte(`{}`)
}

func TestVectorsControlLines(t *testing.T) {
	var vectors []controlVector
	loadVectors(t, "control_lines.json", &vectors)
	for _, v := range vectors {
		class, fields := classify(t, []byte(v.Line))
		want := mustJSON(t, v.Fields)
		if class != v.Class || !sameJSON(fields, want) {
			t.Errorf("%q: %s %s, want %s %s (%s)", v.Line, class, fields, v.Class, want, v.Note)
		}
	}
}

// errnoOfReason is what a Subscription ends with after an error line of
// this reason (the reason acted on), WithoutReconnect.
var errnoOfReason = map[string]syscall.Errno{
	"bad_request":     syscall.EPROTO,
	"request_timeout": syscall.EPROTO,
	"too_costly":      syscall.EPROTO,
	"denied":          syscall.EACCES,
	"full":            syscall.EUSERS,
	"too_slow":        syscall.EPIPE,
	"memory":          syscall.EPIPE,
}

// A fake publisher acknowledges, then writes every control vector but the
// error lines: the Subscription (WithMarkers) hands out exactly the
// notification lines, a Dropped event for each dropped line, nothing else.
func TestVectorsControlLinesThroughASubscription(t *testing.T) {
	var vectors []controlVector
	loadVectors(t, "control_lines.json", &vectors)
	path := sockPath(t)
	fake := newFakePublisher(t, path)
	s := subscribe(t, path, WithMarkers(), WithoutReconnect())
	c := fake.accept(t)
	readRequest(t, c)
	var stream strings.Builder
	stream.WriteString(`{"notif":{"subscribed":true,"version":"0.1.0"}}` + "\n")
	var want []Event
	for _, v := range vectors {
		if v.Class == "error" {
			continue // it ends the subscription: TestVectorsErrorLines
		}
		if strings.Contains(v.Line, "\n") {
			t.Fatalf("%q: a line with a newline cannot be written as one line", v.Line)
		}
		stream.WriteString(v.Line + "\n")
		switch v.Class {
		case "notification":
			want = append(want, Event{Kind: Notification, Data: []byte(v.Line)})
		case "dropped":
			ev := Event{Kind: Dropped}
			if err := json.Unmarshal(v.Fields["count"], &ev.Dropped); err != nil {
				ev.Unknown = true
			}
			want = append(want, ev)
		}
	}
	write(t, c, stream.String())
	c.Close()
	for _, w := range want {
		got := next(t, s)
		if got.Kind != w.Kind || !bytes.Equal(got.Data, w.Data) || got.Dropped != w.Dropped || got.Unknown != w.Unknown {
			t.Fatalf("got %v %q %d %v, want %v %q %d %v", got.Kind, got.Data, got.Dropped, got.Unknown,
				w.Kind, w.Data, w.Dropped, w.Unknown)
		}
	}
	expectErrno(t, expectClosed(t, s, waitLong), syscall.EPIPE)
}

// Each error line as the answer to the request ends the subscription with
// the errno of the reason a client acts on.
func TestVectorsErrorLines(t *testing.T) {
	var vectors []controlVector
	loadVectors(t, "control_lines.json", &vectors)
	path := sockPath(t)
	fake := newFakePublisher(t, path)
	ran := 0
	for _, v := range vectors {
		if v.Class != "error" {
			continue
		}
		var reason string
		if err := json.Unmarshal(v.Fields["reason"], &reason); err != nil {
			t.Fatal(err)
		}
		want, known := errnoOfReason[reason]
		if !known {
			t.Fatalf("%q: reason %q has no errno here", v.Line, reason)
		}
		s := subscribe(t, path, WithoutReconnect())
		c := fake.accept(t)
		readRequest(t, c)
		write(t, c, v.Line+"\n")
		err := expectClosed(t, s, waitLong)
		if e := expectErrno(t, err, want); e.Errno != want {
			t.Errorf("%q: %v", v.Line, err)
		}
		ran++
	}
	if ran == 0 {
		t.Fatal("no error vector")
	}
}

// vectorFilter is a filter vector's subscribe object as the Go API takes it
// (Filter), and the wire form the request carries.
func vectorFilter(t *testing.T, subscribe json.RawMessage) (Filter, *requestFilter) {
	t.Helper()
	var wire requestFilter
	d := json.NewDecoder(bytes.NewReader(subscribe))
	d.DisallowUnknownFields()
	if err := d.Decode(&wire); err != nil {
		t.Fatalf("%s: %v", subscribe, err)
	}
	return Filter{EventTypes: wire.EventTypes, Priorities: wire.Priorities, Publishers: wire.Publishers}, &wire
}

func TestVectorsFilters(t *testing.T) {
	var vectors []filterVector
	loadVectors(t, "filters.json", &vectors)
	for _, v := range vectors {
		f, wire := vectorFilter(t, v.Subscribe)
		// WithFilters writes the vector's subscribe object (none for {}).
		var request map[string]json.RawMessage
		if err := json.Unmarshal([]byte(requestOf(t, WithFilters(f))), &request); err != nil {
			t.Fatal(err)
		}
		if sent, ok := request["subscribe"]; ok != !wire.empty() || ok && !sameJSON(sent, v.Subscribe) {
			t.Errorf("%s: the request's subscribe is %s, want %s", v.Name, sent, v.Subscribe)
		}
		for _, c := range v.Cases {
			if got := wire.lets([]byte(c.Line)); got != c.Match {
				t.Errorf("%s: %s: match %v, want %v", v.Name, c.Line, got, c.Match)
			}
		}
	}
}

func TestVectorsGlobs(t *testing.T) {
	var vectors []globVector
	loadVectors(t, "globs.json", &vectors)
	for _, v := range vectors {
		if got := globMatch(v.Pattern, v.Text); got != v.Match {
			t.Errorf("glob %q ~ %q: %v, want %v", v.Pattern, v.Text, got, v.Match)
		}
		// The same through a filter, on event_type and on publisher_id.
		for _, c := range globCases(t, v) {
			if got := c.filter.lets(c.line); got != v.Match {
				t.Errorf("glob %q ~ %q as %s: %v, want %v", v.Pattern, v.Text, c.line, got, v.Match)
			}
		}
	}
}

type globCase struct {
	filter *requestFilter
	line   []byte
}

// globCases: a glob vector as a filter on event_types, then on publishers,
// each with a notification carrying the text in that field.
func globCases(t *testing.T, v globVector) []globCase {
	return []globCase{
		{&requestFilter{EventTypes: []string{v.Pattern}}, mustJSON(t, map[string]string{"event_type": v.Text})},
		{&requestFilter{Publishers: []string{v.Pattern}}, mustJSON(t, map[string]string{"publisher_id": v.Text})},
	}
}

// cursorParsed is a cursor as the vectors write it: {"epoch":..,"seq":".."} or "invalid".
func cursorParsed(t *testing.T, text string) []byte {
	if !validCursor(text) {
		return []byte(`"invalid"`)
	}
	p := parsePosition(text)
	return mustJSON(t, map[string]string{"epoch": p.epoch, "seq": strconv.FormatUint(p.seq, 10)})
}

func TestVectorsCursors(t *testing.T) {
	var vectors []cursorVector
	loadVectors(t, "cursors.json", &vectors)
	for _, v := range vectors {
		if got := cursorParsed(t, v.Text); !sameJSON(got, v.Parsed) {
			t.Errorf("cursor %q: %s, want %s", v.Text, got, v.Parsed)
		}
		if string(v.Parsed) != `"invalid"` || v.Text == "" {
			// "" is WithAfter's "no cursor" (the API's, documented);
			// valid cursors: against the publisher (vectors_cgo_test.go).
			continue
		}
		_, err := Subscribe(context.Background(), "/nonexistent/s.sock", WithAfter(v.Text))
		expectErrno(t, err, syscall.EINVAL)
	}
}

// A cursor the Go client reads back from an acknowledgement it made itself:
// WithAfter of each valid vector is sent as is, and the publisher's
// acknowledgement is what resumes it.
func TestVectorsCursorsInTheRequest(t *testing.T) {
	var vectors []cursorVector
	loadVectors(t, "cursors.json", &vectors)
	for _, v := range vectors {
		if string(v.Parsed) == `"invalid"` {
			continue
		}
		var request map[string]any
		if err := json.Unmarshal([]byte(requestOf(t, WithAfter(v.Text))), &request); err != nil {
			t.Fatal(err)
		}
		// Sent in the canonical form (leading zeros dropped): the same cursor.
		if sent, _ := request["after"].(string); !sameJSON(cursorParsed(t, sent), v.Parsed) {
			t.Errorf("WithAfter(%q) sent after %q", v.Text, request["after"])
		}
	}
}

// RequestStats reads the same control lines: every one that is not stats or
// an error is skipped before the answer (the stats vectors that are not an
// object too), and every stats vector is an answer.
func TestVectorsControlLinesBeforeAStatsAnswer(t *testing.T) {
	var vectors []controlVector
	loadVectors(t, "control_lines.json", &vectors)
	path := sockPath(t)
	fake := newFakePublisher(t, path)
	for _, answer := range vectors {
		if answer.Class != "stats" {
			continue
		}
		done := make(chan error, 1)
		var got *PublisherStats
		go func() {
			var err error
			got, err = RequestStats(context.Background(), path)
			done <- err
		}()
		c := fake.accept(t)
		readRequest(t, c)
		for _, v := range vectors {
			if v.Class != "stats" && v.Class != "error" {
				write(t, c, v.Line+"\n")
			}
		}
		write(t, c, answer.Line+"\n")
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("before %q: %v", answer.Line, err)
			}
		case <-time.After(waitLong):
			t.Fatal("RequestStats did not return")
		}
		if want := answer.Fields["stats"]; !sameJSON(mustJSON(t, got.Raw), want) {
			t.Errorf("stats %s, want %s", mustJSON(t, got.Raw), want)
		}
	}
}

// Not in the vectors (yet): a member whose value is null is no value (Go's
// encoding/json decodes null into anything as nothing: it read as seq 0, an
// empty error message...). See DISAGREEMENTS.md.
func TestControlNullIsNoValue(t *testing.T) {
	for _, line := range []string{
		`{"notif":{"subscribed":null}}`, `{"notif":{"seq":null}}`, `{"notif":{"dropped":null}}`,
		`{"notif":{"heartbeat":null}}`, `{"notif":{"error":null}}`, `{"notif":{"stats":null}}`,
	} {
		if class, fields := classify(t, []byte(line)); class != "unknown_control" {
			t.Errorf("%s: %s %s, want unknown_control", line, class, fields)
		}
	}
	if class, fields := classify(t, []byte(`{"notif":{"subscribed":true,"epoch":null}}`)); class != "ack" || string(fields) != `{"epoch":null}` {
		t.Errorf("ack with a null epoch: %s %s", class, fields)
	}
}
