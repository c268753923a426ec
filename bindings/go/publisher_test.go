//go:build cgo

package notif

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests against the real library (target/release, built by cargo build --release).

func fixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../tests/fixtures/small.json")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSpace(b)
}

func openPub(t *testing.T, path string, opts ...Option) *Publisher {
	t.Helper()
	p, err := Open(path, append([]Option{WithLinger(100 * time.Millisecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// waitStats polls the publisher's stats until reached says so, and returns
// them; what names the wait in the failure.
func waitStats(t *testing.T, p *Publisher, reached func(Stats) bool, what func(Stats) string) Stats {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		st, err := p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if reached(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after %v", what(st), waitLong)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSubscribers waits until the publisher has accepted n subscribers.
func waitSubscribers(t *testing.T, p *Publisher, n uint64) {
	t.Helper()
	waitStats(t, p, func(st Stats) bool { return st.Subscribers >= n }, func(st Stats) string {
		return fmt.Sprintf("%d subscribers, want %d,", st.Subscribers, n)
	})
}

func emit(t *testing.T, p *Publisher, msg string) int {
	t.Helper()
	n, err := p.Emit([]byte(msg))
	if err != nil {
		t.Fatalf("Emit(%.60s): %v", msg, err)
	}
	return n
}

func TestVersion(t *testing.T) {
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(Version()) {
		t.Fatalf("Version() = %q", Version())
	}
}

func TestRoundTrip(t *testing.T) {
	path := sockPath(t)
	p := openPub(t, path)
	s := subscribe(t, path)
	waitSubscribers(t, p, 1)
	small := fixture(t)
	if n := emit(t, p, string(small)); n != 1 {
		t.Fatalf("Emit returned %d, want 1", n)
	}
	if got := nextNotification(t, s); !bytes.Equal(got, small) {
		t.Fatalf("got %s\nwant %s", got, small)
	}
	// Pretty-printed input goes out compact; the buffer may be reused at once.
	buf := []byte("{\n  \"a\": [1, 2],\n  \"b\": \"x y\"\n}\n")
	emit(t, p, string(buf))
	for i := range buf {
		buf[i] = 'X'
	}
	if got := nextNotification(t, s); string(got) != `{"a":[1,2],"b":"x y"}` {
		t.Fatalf("got %s", got)
	}
}

func TestEmitValue(t *testing.T) {
	path := sockPath(t)
	p := openPub(t, path)
	s := subscribe(t, path)
	waitSubscribers(t, p, 1)
	type payload struct {
		State string `json:"state"`
		HTML  string `json:"html"`
	}
	v := struct {
		EventType string  `json:"event_type"`
		Priority  string  `json:"priority"`
		Payload   payload `json:"payload"`
	}{"compute.instance.create.end", "INFO", payload{"active", "<b>&</b>"}}
	if n, err := p.EmitValue(v); err != nil || n != 1 {
		t.Fatalf("EmitValue: %d, %v", n, err)
	}
	want := `{"event_type":"compute.instance.create.end","priority":"INFO","payload":{"state":"active","html":"<b>&</b>"}}`
	if got := nextNotification(t, s); string(got) != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if _, err := p.EmitValue(map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if got := nextNotification(t, s); string(got) != `{"n":1}` {
		t.Fatalf("got %s", got)
	}
	// Not an object: the library refuses it.
	_, err := p.EmitValue([]int{1, 2})
	expectErrno(t, err, syscall.EINVAL)
	// Cannot be marshalled: the json error, not an errno.
	_, err = p.EmitValue(map[string]any{"f": func() {}})
	var ute *json.UnsupportedTypeError
	if !errors.As(err, &ute) {
		t.Fatalf("EmitValue(func): %v", err)
	}
}

func TestEmitErrors(t *testing.T) {
	path := sockPath(t)
	p := openPub(t, path, WithMaxMessage(1024))
	// Nobody connected: not even looked at.
	if n := emit(t, p, "not json"); n != 0 {
		t.Fatalf("Emit with nobody = %d", n)
	}
	subscribe(t, path)
	waitSubscribers(t, p, 1)
	cases := []struct {
		msg   []byte
		errno syscall.Errno
		what  string
	}{
		{[]byte("not json"), syscall.EINVAL, ""},
		{[]byte(`{"a":1}{"b":2}`), syscall.EINVAL, ""},
		{[]byte(`[1]`), syscall.EINVAL, ""},
		{[]byte("{\"a\":\"\xff\"}"), syscall.EINVAL, ""},
		{[]byte("{\"a\":1}\x00"), syscall.EINVAL, ""},
		{nil, syscall.EINVAL, ""},
		{[]byte{}, syscall.EINVAL, ""},
		{[]byte(`{"a":"` + strings.Repeat("x", 2000) + `"}`), syscall.EMSGSIZE, ""},
	}
	for _, c := range cases {
		n, err := p.Emit(c.msg)
		if n != 0 {
			t.Errorf("Emit(%.40q) returned %d with an error", c.msg, n)
		}
		e := expectErrno(t, err, c.errno)
		if e.Op != "emit" {
			t.Errorf("Op %q", e.Op)
		}
		t.Logf("%.40q: %v", c.msg, err)
	}
	st, err := p.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Rejected != uint64(len(cases)) {
		t.Errorf("Rejected = %d, want %d", st.Rejected, len(cases))
	}
}

func TestOpenErrors(t *testing.T) {
	dir := filepath.Dir(sockPath(t))
	live := filepath.Join(dir, "live.sock")
	p := openPub(t, live)
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		path  string
		opts  []Option
		errno syscall.Errno
	}{
		{"empty path", "", nil, syscall.EINVAL},
		{"NUL in path", "/tmp/a\x00b", nil, syscall.EINVAL},
		{"too long", "/tmp/" + strings.Repeat("n", 200), nil, syscall.ENAMETOOLONG},
		{"missing directory", filepath.Join(dir, "no/such/dir/s.sock"), nil, syscall.ENOENT},
		{"not a socket", regular, nil, syscall.EEXIST},
		{"live publisher", live, nil, syscall.EADDRINUSE},
		{"subscriber buffer too small", filepath.Join(dir, "o1.sock"), []Option{WithSubscriberBuffer(1)}, syscall.EINVAL},
		{"max message over half the buffer", filepath.Join(dir, "o2.sock"), []Option{WithSubscriberBuffer(64 << 10), WithMaxMessage(64 << 10)}, syscall.EINVAL},
		{"negative size", filepath.Join(dir, "o3.sock"), []Option{WithBacklog(-1)}, syscall.EINVAL},
		{"mode bits", filepath.Join(dir, "o4.sock"), []Option{WithMode(0o777 | os.ModeSetuid)}, syscall.EINVAL},
		{"unknown group", filepath.Join(dir, "o5.sock"), []Option{WithGroup("no-such-group-notif-go")}, syscall.ENOENT},
		{"max subscribers 0", filepath.Join(dir, "o6.sock"), []Option{WithMaxSubscribers(0)}, syscall.EINVAL},
		{"bad slow policy", filepath.Join(dir, "o7.sock"), []Option{WithSlowPolicy(7)}, syscall.EINVAL},
		{"negative linger", filepath.Join(dir, "o8.sock"), []Option{WithLinger(-time.Second)}, syscall.EINVAL},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q, err := Open(c.path, c.opts...)
			if err == nil {
				q.Close()
				t.Fatalf("Open succeeded")
			}
			e := expectErrno(t, err, c.errno)
			if e.Op != "open" {
				t.Errorf("Op %q", e.Op)
			}
			t.Logf("%v", err)
		})
	}
	// The live publisher and the regular file are untouched.
	if b, _ := os.ReadFile(regular); string(b) != "keep me" {
		t.Error("the regular file was touched")
	}
	s := subscribe(t, live)
	waitSubscribers(t, p, 1)
	emit(t, p, `{"still":"alive"}`)
	if got := nextNotification(t, s); string(got) != `{"still":"alive"}` {
		t.Fatalf("got %s", got)
	}
}

func TestOptionsApply(t *testing.T) {
	path := sockPath(t)
	openPub(t, path, WithMode(0o640), WithSubscriberBuffer(1<<20), WithMaxMessage(256<<10),
		WithMaxSubscribers(4), WithLinger(0), WithSlowPolicy(SlowDisconnect), WithBacklog(1<<20),
		WithGroup(fmt.Sprint(os.Getgid())), WithAllowUID(uint32(os.Getuid())))
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("mode %v", fi.Mode())
	}
}

func TestCloseTwiceAndEBADF(t *testing.T) {
	path := sockPath(t)
	p, err := Open(path, WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after Close: %v", err)
	}
	_, err = p.Emit([]byte(`{"a":1}`))
	expectErrno(t, err, syscall.EBADF)
	_, err = p.EmitValue(map[string]int{"a": 1})
	expectErrno(t, err, syscall.EBADF)
	_, err = p.Stats()
	expectErrno(t, err, syscall.EBADF)
	// Concurrent Closes all return, after the handle is gone.
	p, err = Open(path, WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); p.Close() }()
	}
	wg.Wait()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after Close: %v", err)
	}
}

func TestConcurrentEmitAndClose(t *testing.T) {
	for round := 0; round < 5; round++ {
		path := sockPath(t)
		p, err := Open(path, WithLinger(0))
		if err != nil {
			t.Fatal(err)
		}
		s := subscribe(t, path, WithoutReconnect())
		waitSubscribers(t, p, 1)
		msg := fixture(t)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		started := make(chan struct{}, 8)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					if i == 10 {
						started <- struct{}{}
					}
					_, err := p.Emit(msg)
					if errors.Is(err, syscall.EAGAIN) {
						continue // backlog full: dropped and counted
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		for g := 0; g < 8; g++ {
			<-started
		}
		closed := make(chan struct{})
		go func() { p.Close(); close(closed) }()
		wg.Wait()
		<-closed
		close(errs)
		for err := range errs {
			expectErrno(t, err, syscall.EBADF)
		}
		// The subscriber got whole notifications, then the end of the stream.
		for ev := range s.Events() {
			if ev.Kind != Notification || !bytes.Equal(ev.Data, msg) {
				t.Fatalf("unexpected event %v %q", ev.Kind, ev.Data)
			}
		}
		if err := s.Err(); !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("the subscription ended with %v", err)
		}
	}
}

func TestFinalizerClosesForgottenPublisher(t *testing.T) {
	path := sockPath(t)
	func() {
		p, err := Open(path, WithLinger(0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Emit([]byte(`{"a":1}`)); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(waitLong)
	for {
		runtime.GC()
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the socket file is still there after %v of GCs", waitLong)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The path is free again.
	openPub(t, path)
}

// statsFieldsFromHeader reads the field names of notif_stats from notif.h.
func statsFieldsFromHeader(t *testing.T) []string {
	t.Helper()
	h, err := os.ReadFile("../../include/notif.h")
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile(`(?s)typedef struct notif_stats \{(.*?)\} notif_stats;`).FindSubmatch(h)
	if body == nil {
		t.Fatal("notif_stats not found in notif.h")
	}
	var fields []string
	for _, m := range regexp.MustCompile(`(?m)^\s*uint64_t (\w+);`).FindAllSubmatch(body[1], -1) {
		fields = append(fields, string(m[1]))
	}
	return fields
}

func camel(snake string) string {
	var b strings.Builder
	for _, part := range strings.Split(snake, "_") {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func TestStats(t *testing.T) {
	// Every field of the C struct has its Go field, in the same order.
	fields := statsFieldsFromHeader(t)
	st := reflect.TypeOf(Stats{})
	if st.NumField() != len(fields) {
		t.Errorf("Stats has %d fields, notif_stats %d (%v)", st.NumField(), len(fields), fields)
	}
	for i, f := range fields {
		if i >= st.NumField() || st.Field(i).Name != camel(f) {
			t.Errorf("notif_stats field %d %s: Go field %s missing or out of order", i, f, camel(f))
		}
	}

	path := sockPath(t)
	p := openPub(t, path, WithMaxSubscribers(3))
	if n := emit(t, p, `{"nobody":1}`); n != 0 {
		t.Fatal(n)
	}
	plain := subscribe(t, path)
	filtered := subscribe(t, path, WithFilter([]string{"wanted"}, nil, nil))
	waitSubscribers(t, p, 2)
	// A bad request and a stats request, by hand: each is answered with one
	// line, then closed.
	for _, req := range []string{`{"nonsense":1}`, `{"stats":true}`} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(req + "\n"))
		c.SetReadDeadline(time.Now().Add(waitLong))
		line, _ := readAll(c)
		c.Close()
		if !strings.HasPrefix(line, `{"notif":{`) {
			t.Fatalf("answer to %s: %q", req, line)
		}
	}
	// A third subscriber (it never reads), then a fourth connection over
	// max_subscribers: refused, disconnected.
	hold, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	waitSubscribers(t, p, 3)
	extra, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	// It is told why (reason "full"), then closed.
	extra.SetReadDeadline(time.Now().Add(waitLong))
	if line, err := readAll(extra); err != nil || !strings.HasPrefix(line, `{"notif":{"error":`) ||
		!strings.HasSuffix(line, `"reason":"full"}}`+"\n") {
		t.Fatalf("the extra connection got %q (%v), want the full error line and the close", line, err)
	}
	extra.Close()
	// Wait until the filtering subscriber's request is acknowledged: a
	// notification it does not want is then filtered by the publisher.
	var sent int
	deadline := time.Now().Add(waitLong)
	for {
		emit(t, p, `{"event_type":"other"}`)
		sent++
		nextNotification(t, plain)
		st, _ := p.Stats()
		if st.Filtered > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing filtered")
		}
		time.Sleep(time.Millisecond)
	}
	emit(t, p, `{"event_type":"wanted"}`)
	if got := nextNotification(t, plain); string(got) != `{"event_type":"wanted"}` {
		t.Fatal(string(got))
	}
	if got := nextNotification(t, filtered); string(got) != `{"event_type":"wanted"}` {
		t.Fatal(string(got))
	}
	p.Emit([]byte("bad"))
	// The counters settle once everything is written.
	var s Stats
	deadline = time.Now().Add(waitLong)
	for {
		s, err = p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if s.Fanout == s.Delivered+s.DroppedSlow+s.DroppedClosed && s.Subscribers == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never settled: %+v", s)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%+v", s)
	check := func(name string, got, want uint64) {
		if got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	check("Subscribers", s.Subscribers, 3)
	check("Emitted", s.Emitted, uint64(sent)+1)
	check("DroppedNoSubscriber", s.DroppedNoSubscriber, 1)
	check("Rejected", s.Rejected, 1)
	check("Refused", s.Refused, 1)
	// The refused connection and the bad request (closed after its error
	// line); the stats answer is not a disconnection.
	check("Disconnected", s.Disconnected, 2)
	check("BadRequests", s.BadRequests, 1)
	check("StatsRequests", s.StatsRequests, 1)
	check("DroppedBacklog", s.DroppedBacklog, 0)
	check("DroppedSlow", s.DroppedSlow, 0)
	check("Denied", s.Denied, 0)
	check("Accepted", s.Accepted, 6) // 2 subscribers, 2 requests by hand, hold, extra
	if s.Filtered < 1 || s.Delivered < uint64(sent)+2 || s.BytesSent == 0 || s.Fanout < s.Delivered {
		t.Errorf("Filtered/Delivered/BytesSent/Fanout: %+v", s)
	}
}

func readAll(c net.Conn) (string, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(c)
	return b.String(), err
}

func TestSubscriberReconnectsAcrossPublisherRestart(t *testing.T) {
	path := sockPath(t)
	p := openPub(t, path)
	s := subscribe(t, path, WithMarkers())
	waitSubscribers(t, p, 1)
	emit(t, p, `{"n":1}`)
	if got := nextNotification(t, s); string(got) != `{"n":1}` {
		t.Fatal(string(got))
	}
	p.Close()
	p2 := openPub(t, path)
	waitSubscribers(t, p2, 1)
	if ev := next(t, s); ev.Kind != Reconnected {
		t.Fatalf("got %v %q, want Reconnected", ev.Kind, ev.Data)
	}
	// Emitted as soon as the reconnection is announced, maybe before the
	// new publisher has read the request (with the old publisher's cursor):
	// it holds the notification back until then and sends it after the
	// acknowledgement, so nothing is lost (it was, counted as a drop of
	// unknown size, when it came first, before the acknowledgement).
	emit(t, p2, `{"n":2}`)
	if got := nextNotification(t, s); string(got) != `{"n":2}` {
		t.Fatal(string(got))
	}
}

func TestServerSideFilter(t *testing.T) {
	path := sockPath(t)
	p := openPub(t, path)
	s := subscribe(t, path, WithFilter([]string{"compute.*"}, []string{"error"}, []string{"*.host1"}))
	all := subscribe(t, path)
	waitSubscribers(t, p, 2)
	kinds := []struct {
		msg  string
		want bool
	}{
		{`{"event_type":"compute.instance.create.end","priority":"ERROR","publisher_id":"compute.host1","i":%d}`, true},
		{`{"event_type":"image.update","priority":"ERROR","publisher_id":"compute.host1","i":%d}`, false},
		{`{"event_type":"compute.x","priority":"INFO","publisher_id":"compute.host1","i":%d}`, false},
		{`{"event_type":"compute.x","priority":"error","publisher_id":"compute.host2","i":%d}`, false},
		{`{"event_type":"compute.x","publisher_id":"compute.host1","i":%d}`, false},
		{`{"event_type":"compute.x","priority":"Error","publisher_id":"a.host1","i":%d}`, true},
	}
	// Emit right away: some lines may reach the subscriber before the
	// publisher has read its request (the subscriber filters those itself),
	// the rest are filtered by the publisher. Either way only matching ones
	// are delivered. Go on until the publisher has filtered some.
	var want []string
	deadline := time.Now().Add(waitLong)
	for i := 0; ; i++ {
		k := kinds[i%len(kinds)]
		line := fmt.Sprintf(k.msg, i)
		emit(t, p, line)
		if k.want {
			want = append(want, line)
		}
		if got := nextNotification(t, all); string(got) != line {
			t.Fatalf("the plain subscriber got %s, want %s", got, line)
		}
		if i%len(kinds) == len(kinds)-1 {
			st, _ := p.Stats()
			if st.Filtered >= 8 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the publisher filtered nothing: %+v", st)
			}
		}
	}
	for _, w := range want {
		if got := nextNotification(t, s); string(got) != w {
			t.Fatalf("got %s, want %s", got, w)
		}
	}
	expectNothing(t, s)
}

func TestMegabyteNotification(t *testing.T) {
	path := sockPath(t)
	p := openPub(t, path, WithMaxMessage(2<<20))
	s := subscribe(t, path)
	waitSubscribers(t, p, 1)
	big := `{"event_type":"big","payload":"` + strings.Repeat("0123456789abcdef", (1<<20)/16) + `"}`
	for i := 0; i < 3; i++ {
		emit(t, p, big)
		emit(t, p, `{"small":true}`)
	}
	for i := 0; i < 3; i++ {
		if got := nextNotification(t, s); string(got) != big {
			t.Fatalf("big line %d: %d bytes, want %d", i, len(got), len(big))
		}
		if got := nextNotification(t, s); string(got) != `{"small":true}` {
			t.Fatalf("got %.80s", got)
		}
	}
}

func TestDropMarkersFromRealPublisher(t *testing.T) {
	path := sockPath(t)
	p := openPub(t, path, WithSubscriberBuffer(64<<10), WithMaxMessage(4<<10))
	s := subscribe(t, path, WithMarkers())
	// With markers the request is acknowledged before anything counts: wait
	// for the first notification to come through.
	waitSubscribers(t, p, 1)
	deadline := time.Now().Add(waitLong)
	for got := false; !got; {
		emit(t, p, `{"probe":1}`)
		select {
		case ev := <-s.Events():
			got = ev.Kind == Notification
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no probe came through")
		}
	}
	// Nobody reads the channel now: the socket fills and the publisher drops.
	msg := `{"fill":"` + strings.Repeat("x", 2000) + `"}`
	for i := 0; i < 3000; i++ {
		if _, err := p.Emit([]byte(msg)); err != nil && !errors.Is(err, syscall.EAGAIN) {
			t.Fatal(err)
		}
	}
	// Drain: the markers add up to dropped_slow.
	var markers uint64
	for {
		select {
		case ev := <-s.Events():
			if ev.Kind == Dropped {
				markers += ev.Dropped
			}
			continue
		case <-time.After(quiet):
		}
		st, err := p.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.DroppedSlow > 0 && markers == st.DroppedSlow && s.DroppedTotal() == markers {
			t.Logf("%d dropped, reported by markers", markers)
			return
		}
		if time.Now().After(deadline.Add(waitLong)) {
			t.Fatalf("markers %d, dropped_slow %d", markers, st.DroppedSlow)
		}
	}
}

func TestOpenFD(t *testing.T) {
	path := sockPath(t)
	fd := listenFD(t, path, syscall.SOCK_CLOEXEC, 16)
	p, err := OpenFD(fd, WithLinger(0))
	if err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	s := subscribe(t, path)
	waitSubscribers(t, p, 1)
	emit(t, p, `{"via":"fd"}`)
	if got := nextNotification(t, s); string(got) != `{"via":"fd"}` {
		t.Fatal(string(got))
	}
	p.Close()
	// It never removes a file it did not create.
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the socket file is gone: %v", err)
	}
	// Not a listening socket: EINVAL, and the descriptor stays ours.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	// A bound Unix socket that does not listen: EINVAL.
	fd2, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd2)
	if err := syscall.Bind(fd2, &syscall.SockaddrUnix{Name: path + "2"}); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path + "2")
	_, err = OpenFD(fd2)
	expectErrno(t, err, syscall.EINVAL)
	// Not a socket at all: notif.h says EINVAL; the library says ENOTSOCK.
	_, err = OpenFD(int(r.Fd()))
	if !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSOCK) {
		t.Fatalf("OpenFD(pipe): %v", err)
	}
	_, err = OpenFD(-1)
	expectErrno(t, err, syscall.EBADF)
}
