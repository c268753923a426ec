package notif

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The subscriber is pure Go (no cgo): it speaks the wire protocol of the
// README and docs/subscription-protocol.md directly.

const (
	maxRequestLine   = 64 << 10 // the publisher's limit, newline included
	maxLine          = 64 << 20 // longest line accepted from the publisher
	firstBackoff     = 100 * time.Millisecond
	maxBackoff       = 5 * time.Second
	heartbeatMisses  = 3 // heartbeat intervals of silence that mean a dead connection
	minHeartbeat     = 100 * time.Millisecond
	maxHeartbeat     = time.Hour
	maxSocketPathLen = 107 // sun_path minus its NUL
	eventBuffer      = 16
)

// EventKind says what an Event is.
type EventKind int

const (
	// Notification: Data holds one notification line, without its newline.
	Notification EventKind = iota
	// Reconnected: the connection was lost and re-established. Sent before
	// anything from the new connection. The subscription resumes after the
	// last notification it delivered (it sends its cursor): when the
	// publisher still holds what was emitted in between (its replay ring,
	// WithReplayBytes on the publisher), nothing was missed; what it no longer
	// holds comes as a Dropped event next. A publisher without cursors (an
	// older one) cannot say: notifications in between may be missing.
	Reconnected
	// Dropped: the publisher dropped Dropped notifications for this
	// subscriber because it fell behind (WithMarkers), or, when resuming
	// (a reconnection, WithAfter, WithReplay), that many notifications after
	// the cursor are no longer held. Unknown set (Dropped 0): the count is
	// not known (the publisher restarted since the cursor, or cannot tell).
	Dropped
	// ConnectFailed: connecting failed for a reason that waiting for the
	// publisher to start does not fix: the path is not a socket, its
	// directory does not exist, permission is denied. Err says which. The
	// subscription keeps trying with its back-off (reporting the same
	// failure only once) unless WithGiveUpOnConnectFailure ends it. A socket
	// file nobody listens on, or no socket yet in an existing directory, is
	// a publisher not running: no event, the subscription waits. A socket
	// that accepts no connection (its listen backlog full: a stuck
	// publisher, or one made to hang its readers) is reported (EAGAIN) and
	// tried again even with WithGiveUpOnConnectFailure.
	ConnectFailed
)

func (k EventKind) String() string {
	switch k {
	case Notification:
		return "Notification"
	case Reconnected:
		return "Reconnected"
	case Dropped:
		return "Dropped"
	case ConnectFailed:
		return "ConnectFailed"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is what a Subscription delivers.
type Event struct {
	Kind    EventKind
	Data    []byte   // Notification: the JSON object, a fresh copy the receiver owns
	Dropped uint64   // Dropped: how many notifications were dropped (0 with Unknown)
	Unknown bool     // Dropped: some were missed, how many is not known
	Err     error    // ConnectFailed: why (an *Error: ENOTSOCK, ENOENT, ENOTDIR, EACCES...)
	pos     position // Notification: its place in the publisher's numbering
}

// Cursor is the cursor of a Notification event, "" when the publisher did
// not number it (an older publisher; a notification that arrived before the
// publisher read the request) and for other events. Pass it to WithAfter to
// resume after this notification.
func (e Event) Cursor() string { return e.pos.String() }

// position is one notification's place: the publisher's epoch ("" for none)
// and its number. Kept apart so that a cursor string is only made when asked.
type position struct {
	epoch string
	seq   uint64
}

func (p position) String() string {
	if p.epoch == "" {
		return ""
	}
	return p.epoch + "-" + strconv.FormatUint(p.seq, 10)
}

// parsePosition reads a cursor validCursor accepted ("": none).
func parsePosition(c string) position {
	epoch, seq, ok := strings.Cut(c, "-")
	if !ok {
		return position{}
	}
	n, _ := strconv.ParseUint(seq, 10, 64)
	return position{epoch, n}
}

// SubscribeOption configures Subscribe.
type SubscribeOption func(*subscribeConfig)

type subscribeConfig struct {
	filter      Filter
	markers     bool
	heartbeat   time.Duration
	noReconnect bool
	giveUp      bool   // WithGiveUpOnConnectFailure
	after       string // WithAfter
	replay      bool   // WithReplay
}

// WithAfter resumes after the notification cursor names (a Cursor or an
// Event's Cursor() saved earlier): the publisher first sends every
// notification after it that it still holds (that passes the filter), then
// the live stream, with no gap and no duplicate between the two. What it no
// longer holds comes first as a Dropped event (Unknown when the publisher
// restarted since: a cursor of another epoch). "" starts with the live
// stream, as without the option (so a cursor file that does not exist yet
// can be passed as is). Subscribe fails with EINVAL for a string that is not
// a cursor, or with WithReplay.
func WithAfter(cursor string) SubscribeOption {
	return func(c *subscribeConfig) { c.after = cursor }
}

// WithReplay starts with every notification the publisher's replay ring
// holds (see the publisher's WithReplayBytes), oldest first, then the live
// stream. When the ring does not go back to the publisher's first
// notification, a Dropped event with the count of the older ones comes first.
func WithReplay() SubscribeOption {
	return func(c *subscribeConfig) { c.replay = true }
}

// validCursor: EPOCH-SEQ, 16 lowercase hexadecimal digits, a dash, a decimal
// number (the protocol's form; the publisher checks it too).
func validCursor(c string) bool {
	epoch, seq, ok := strings.Cut(c, "-")
	if !ok || len(epoch) != 16 || len(seq) == 0 || len(seq) > 20 {
		return false
	}
	for i := 0; i < len(epoch); i++ {
		if !('0' <= epoch[i] && epoch[i] <= '9' || 'a' <= epoch[i] && epoch[i] <= 'f') {
			return false
		}
	}
	for i := 0; i < len(seq); i++ {
		if seq[i] < '0' || seq[i] > '9' {
			return false
		}
	}
	_, err := strconv.ParseUint(seq, 10, 64)
	return err == nil
}

// WithMarkers asks the publisher to report notifications it drops for this
// subscriber: they arrive as Dropped events.
func WithMarkers() SubscribeOption {
	return func(c *subscribeConfig) { c.markers = true }
}

// WithHeartbeat asks the publisher for a heartbeat whenever the stream has
// been idle for d (0.1 s to 1 h). Three intervals of silence are then taken as
// a dead connection (reconnect, or ETIMEDOUT with WithoutReconnect).
// Heartbeats are not delivered as events.
func WithHeartbeat(d time.Duration) SubscribeOption {
	return func(c *subscribeConfig) { c.heartbeat = d }
}

// WithGiveUpOnConnectFailure ends the subscription at the first
// ConnectFailed (the path is not a socket, its directory is missing,
// permission denied): the event is delivered, then Events is closed and Err
// returns the failure. Without it the subscription keeps trying (the path
// may become right: a directory the publisher's service creates, say).
func WithGiveUpOnConnectFailure() SubscribeOption {
	return func(c *subscribeConfig) { c.giveUp = true }
}

// WithoutReconnect makes Subscribe fail when the publisher is not there, and
// ends the subscription (Err says why) when the connection is lost.
func WithoutReconnect() SubscribeOption {
	return func(c *subscribeConfig) { c.noReconnect = true }
}

type subscribeRequest struct {
	Subscribe *requestFilter `json:"subscribe,omitempty"`
	Markers   bool           `json:"markers,omitempty"`
	Heartbeat float64        `json:"heartbeat_s,omitempty"`
	Cursor    bool           `json:"cursor,omitempty"`
	After     string         `json:"after,omitempty"`
	Replay    bool           `json:"replay,omitempty"`
}

type requestFilter struct {
	EventTypes []string `json:"event_types,omitempty"`
	Priorities []string `json:"priorities,omitempty"`
	Publishers []string `json:"publishers,omitempty"`
}

func (f *requestFilter) empty() bool {
	return len(f.EventTypes) == 0 && len(f.Priorities) == 0 && len(f.Publishers) == 0
}

// Subscription is a connection to a publisher that delivers its
// notifications on a channel, reconnecting by itself (unless
// WithoutReconnect) with a back-off from 100 ms doubling to 5 s.
type Subscription struct {
	ctx       context.Context
	path      string
	base      subscribeRequest // the request without its resume point
	filter    *requestFilter
	heartbeat time.Duration
	reconnect bool
	markers   bool // drop markers were asked for
	giveUp    bool

	events chan Event
	done   chan struct{} // closed by Close or by the context: stop
	exited chan struct{} // closed when the reading goroutine has returned

	mu       sync.Mutex
	conn     net.Conn // the current connection, closed by stop
	stopped  bool
	stopErr  error // why it was stopped: nil (Close) or the context's error
	err      error // Err: set before events is closed
	stopOnce sync.Once
	dropped  atomic.Uint64

	// The reading goroutine's own: where to resume on the next connection
	// (the cursor of the last notification put in the channel, or
	// WithAfter's), and whether to ask for the ring instead (WithReplay,
	// until a notification was delivered).
	resume position
	replay bool
	// An older publisher refused "cursor" (an unknown key to it): ask it
	// for what the options ask, as before cursors, from then on.
	legacy      bool
	userResume  bool // WithAfter or WithReplay: no fallback, the publisher cannot do it
	cursorsSeen bool // an acknowledgement carried an epoch: the publisher knows cursors

	// What Cursor reports: the cursor after the last event the receiver
	// took from the channel (see cursorTrack).
	track       cursorTrack
	cursorQuery chan chan position
}

// cursorTrack knows which events are still in the channel: sent events were
// put in it, len(events) are still there, so the receiver has taken
// sent-len(events). ring holds the cursor after each of the last
// eventBuffer+1 events sent (a non-notification event keeps the previous
// one). Sends that do not block are made under mu, so sent and the channel
// agree whenever mu is free; during a send that blocks (the channel is
// full), sending is set and the goroutine answers Cursor's queries itself.
type cursorTrack struct {
	mu       sync.Mutex
	sent     uint64
	ring     [eventBuffer + 1]position
	initial  position // before any event: WithAfter's cursor, or none
	sending  bool
	sendDone chan struct{} // closed when the blocking send ends
}

// record notes one event sent; mu held.
func (t *cursorTrack) record(ev Event) {
	after := t.at(t.sent)
	if ev.Kind == Notification && ev.pos.epoch != "" {
		after = ev.pos
	}
	t.ring[t.sent%uint64(len(t.ring))] = after
	t.sent++
}

// at is the position once n events were taken; mu held.
func (t *cursorTrack) at(n uint64) position {
	if n == 0 {
		return t.initial
	}
	return t.ring[(n-1)%uint64(len(t.ring))]
}

// now is the cursor after what the receiver took, with queued events still
// in the channel; mu held and no send in progress.
func (t *cursorTrack) now(queued int) position {
	return t.at(t.sent - uint64(queued))
}

// Subscribe connects to the publisher at path (a socket file path, or
// "@name" for a Linux abstract socket) and writes its subscription request:
// the options' filter, markers and heartbeat, and always "cursor": true, so
// that it knows each notification's cursor (Cursor) and resumes after the
// last one it delivered when it reconnects (see Reconnected).
//
// Unless WithoutReconnect is given, it succeeds even when the publisher is not
// there yet (no socket yet, or a socket nobody listens on) and keeps trying;
// a path that waiting will not fix (not a socket, its directory missing) is
// reported as a ConnectFailed event (see WithGiveUpOnConnectFailure). Errors
// (*Error): EINVAL (empty path, bad options), ENAMETOOLONG, and the connect
// error (EACCES; and with WithoutReconnect ENOENT, ECONNREFUSED, ENOTSOCK,
// ENOTDIR).
//
// Cancelling ctx ends the subscription promptly: the channel is closed and
// Err returns ctx's error.
func Subscribe(ctx context.Context, path string, opts ...SubscribeOption) (*Subscription, error) {
	var cfg subscribeConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	if path == "" || strings.IndexByte(path, 0) >= 0 {
		return nil, newError("subscribe", syscall.EINVAL, fmt.Sprintf("invalid socket path %q", path))
	}
	if len(path) > maxSocketPathLen {
		return nil, newError("subscribe", syscall.ENAMETOOLONG,
			fmt.Sprintf("the socket path is %d bytes; at most %d fit", len(path), maxSocketPathLen))
	}
	s := &Subscription{
		ctx:       ctx,
		path:      path,
		filter:    &requestFilter{cfg.filter.EventTypes, cfg.filter.Priorities, cfg.filter.Publishers},
		giveUp:    cfg.giveUp,
		heartbeat: cfg.heartbeat,
		reconnect: !cfg.noReconnect,
		markers:   cfg.markers,
		events:    make(chan Event, eventBuffer),
		done:      make(chan struct{}),
		exited:    make(chan struct{}),
	}
	if cfg.heartbeat != 0 && (cfg.heartbeat < minHeartbeat || cfg.heartbeat > maxHeartbeat) {
		return nil, newError("subscribe", syscall.EINVAL,
			fmt.Sprintf("heartbeat %v is out of range (%v to %v)", cfg.heartbeat, minHeartbeat, maxHeartbeat))
	}
	if cfg.after != "" && !validCursor(cfg.after) {
		return nil, newError("subscribe", syscall.EINVAL, fmt.Sprintf(
			"%q is not a cursor (EPOCH-SEQ: 16 hexadecimal digits, a dash, a number)", cfg.after))
	}
	if cfg.after != "" && cfg.replay {
		return nil, newError("subscribe", syscall.EINVAL, "WithAfter and WithReplay exclude each other")
	}
	s.base = subscribeRequest{Markers: cfg.markers, Heartbeat: cfg.heartbeat.Seconds(), Cursor: true}
	if !s.filter.empty() {
		s.base.Subscribe = s.filter
	}
	s.resume, s.replay = parsePosition(cfg.after), cfg.replay
	s.userResume = cfg.after != "" || cfg.replay
	s.track.initial = s.resume
	s.cursorQuery = make(chan chan position)
	// The longest request: with the longest cursor.
	if _, err := s.requestLine(strings.Repeat("f", 16) + "-18446744073709551615"); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	conn, outcome, err := s.dial()
	if err != nil && (!s.reconnect || outcome == dialFailed) {
		return nil, err
	}
	s.conn = conn // nil: not there yet, the goroutine keeps trying

	stopWatch := context.AfterFunc(ctx, func() { s.stop(ctx.Err()) })
	go func() {
		defer close(s.exited)
		defer stopWatch()
		s.run(conn, outcome, err)
	}()
	return s, nil
}

// Events is the channel notifications and other events arrive on. It is
// closed when the subscription ends: after Close, when the context is done,
// when the publisher refused the request or this subscriber (denied, full),
// or (WithoutReconnect) when the connection is lost. Err then says why.
func (s *Subscription) Events() <-chan Event { return s.events }

// Err is why the subscription ended, once Events is closed: nil after Close,
// the context's error after cancellation, an *Error wrapping EPROTO when the
// publisher refused the request, EACCES when its allow-lists refuse this
// process (error reason "denied"), EUSERS when it has max_subscribers already
// (reason "full"): none of these is retried. A publisher that disconnects us
// for being too slow or for its memory budget ("too_slow", "memory") is a lost
// connection: the subscription reconnects. The ConnectFailed error that ended
// it (WithGiveUpOnConnectFailure), and with WithoutReconnect the error that
// ended the connection (EPIPE: the publisher closed it, ETIMEDOUT: no
// heartbeat, EMSGSIZE: a line over 64 MiB). Before the channel is closed it
// returns nil.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// DroppedTotal is the number of notifications the publisher reported dropped
// for this subscriber so far (WithMarkers, and when resuming; Dropped events
// of unknown count add nothing).
func (s *Subscription) DroppedTotal() uint64 { return s.dropped.Load() }

// Cursor is the cursor of the last notification the receiver took from
// Events (events still waiting in the channel are not counted): save it, and
// a later subscription WithAfter(cursor) gets the notifications that came
// after it. Before the first notification it is WithAfter's cursor, or "".
// A notification the publisher did not number (see Event.Cursor) leaves it as
// it was. Safe to call from any goroutine, also after Close.
func (s *Subscription) Cursor() string {
	for {
		s.track.mu.Lock()
		if !s.track.sending {
			c := s.track.now(len(s.events))
			s.track.mu.Unlock()
			return c.String()
		}
		done := s.track.sendDone
		s.track.mu.Unlock()
		reply := make(chan position, 1)
		select {
		case s.cursorQuery <- reply:
			return (<-reply).String()
		case <-done:
			// The send ended meanwhile: look again.
		}
	}
}

// requestLine is the request for a connection that resumes after cursor
// ("": from WithReplay's ring, or live).
func (s *Subscription) requestLine(cursor string) ([]byte, error) {
	req := s.base
	if s.legacy {
		if req.Subscribe == nil && !req.Markers && req.Heartbeat == 0 {
			return nil, nil // the plain stream: nothing to write
		}
		req.Cursor = false
	} else {
		req.After = cursor
		req.Replay = cursor == "" && s.replay
	}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, newError("subscribe", syscall.EINVAL, err.Error())
	}
	line = append(line, '\n')
	if len(line) > maxRequestLine {
		return nil, newError("subscribe", syscall.EINVAL, fmt.Sprintf(
			"the subscription request is %d bytes; the publisher accepts at most %d", len(line), maxRequestLine))
	}
	return line, nil
}

// Close ends the subscription: it closes the connection and waits until the
// reading goroutine is gone (the Events channel is then closed; events
// already in it can still be read). Safe to call more than once and from any
// goroutine.
func (s *Subscription) Close() {
	s.stop(nil)
	<-s.exited
}

func (s *Subscription) stop(why error) {
	if why == nil {
		why = s.ctx.Err() // cancelled, then closed: the cancellation is why
	}
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopped = true
		s.stopErr = why
		if s.conn != nil {
			s.conn.Close() // unblocks a read in progress
		}
		s.mu.Unlock()
		close(s.done)
	})
}

func (s *Subscription) dial() (net.Conn, dialOutcome, error) {
	// A Unix connect(2) never waits here (a full listen backlog is EAGAIN at
	// once, reported); the timeout only makes the bound explicit.
	conn, err := net.DialTimeout("unix", s.path, 5*time.Second)
	if err != nil {
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			errno = syscall.EIO
		}
		outcome, err := connectFailure(s.path, errno, errnoText(err))
		return nil, outcome, err
	}
	return conn, dialConnected, nil
}

func errnoText(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	return err.Error()
}

// setConn records the current connection, or closes it at once if the
// subscription was stopped meanwhile. It reports whether to go on.
func (s *Subscription) setConn(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		if conn != nil {
			conn.Close()
		}
		return false
	}
	s.conn = conn
	return true
}

// send delivers an event unless the subscription is stopped first, keeping
// track of it for Cursor.
func (s *Subscription) send(ev Event) bool {
	t := &s.track
	t.mu.Lock()
	select {
	case s.events <- ev:
		t.record(ev)
		t.mu.Unlock()
		return true
	default:
	}
	// The channel is full: wait for the receiver without holding mu, and
	// answer Cursor meanwhile (sent is exact: this event is not in yet).
	done := make(chan struct{})
	t.sending, t.sendDone = true, done
	t.mu.Unlock()
	end := func(ok bool) bool {
		t.mu.Lock()
		if ok {
			t.record(ev)
		}
		t.sending = false
		close(done)
		t.mu.Unlock()
		return ok
	}
	for {
		select {
		case s.events <- ev:
			return end(true)
		case reply := <-s.cursorQuery:
			t.mu.Lock()
			reply <- t.now(len(s.events))
			t.mu.Unlock()
		case <-s.done:
			return end(false)
		}
	}
}

// finish records why the subscription ended and closes the channel.
func (s *Subscription) finish(err error) {
	s.mu.Lock()
	if s.stopped {
		err = s.stopErr
	}
	s.err = err
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	s.mu.Unlock()
	close(s.events)
}

// sleep waits d, or less if the subscription is stopped; it reports whether to go on.
func (s *Subscription) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// run is the reading goroutine: one connection at a time, reconnecting.
func (s *Subscription) run(conn net.Conn, outcome dialOutcome, dialErr error) {
	backoff := firstBackoff
	everConnected := conn != nil
	var reported string // the ConnectFailed last reported: one event per failure, not per attempt
	retrying := false   // connecting again without cursors: not a reconnection
	announce := false   // the new connection is a reconnection: say so once its request is out
	if conn == nil {
		if stop, why := s.connectFailed(outcome, dialErr, &reported); stop {
			s.finish(why)
			return
		}
		if !s.sleep(backoff) {
			s.finish(nil)
			return
		}
		backoff = min(backoff*2, maxBackoff)
	}
	for {
		if conn == nil {
			c, outcome, err := s.dial()
			if err != nil {
				// Absent (quietly), or a failure reported as ConnectFailed:
				// either way, try again after the back-off.
				if stop, why := s.connectFailed(outcome, err, &reported); stop {
					s.finish(why)
					return
				}
				if !s.sleep(backoff) {
					s.finish(nil)
					return
				}
				backoff = min(backoff*2, maxBackoff)
				continue
			}
			if !s.setConn(c) {
				s.finish(nil)
				return
			}
			conn = c
			reported = ""
			announce = everConnected && !retrying
			everConnected = true
			retrying = false
		}
		established := time.Now()
		worked, err := s.serve(conn, announce)
		announce = false
		conn.Close()
		conn = nil
		if s.isStopped() {
			s.finish(nil)
			return
		}
		if err == errRetryWithoutCursors {
			// Not a lost connection: the same one again, plainer.
			retrying = true
			continue
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			s.finish(perm.err)
			return
		}
		if !s.reconnect {
			s.finish(err)
			return
		}
		// A connection that delivered or lasted worked: the publisher is
		// probably restarting, try again at once. One that hangs up at once
		// (over the subscriber limit, say) gets the back-off.
		if worked || time.Since(established) >= time.Second {
			backoff = firstBackoff
			continue
		}
		if !s.sleep(backoff) {
			s.finish(nil)
			return
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

func (s *Subscription) isStopped() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// permanentError ends the subscription even with reconnection (EPROTO).
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }

// activityConn pushes the read deadline forward before every read, so a
// connection is declared dead only after heartbeatMisses intervals without a
// single byte (a long line arriving slowly keeps it alive).
type activityConn struct {
	net.Conn
	silence time.Duration
	worked  bool // at least one byte arrived
}

func (c *activityConn) Read(b []byte) (int, error) {
	if c.silence > 0 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.silence)); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.worked = true
	}
	return n, err
}

// serve reads one connection until it ends, first announcing it as
// Reconnected if asked. It returns whether anything arrived on it, and why it
// ended.
func (s *Subscription) serve(conn net.Conn, announce bool) (worked bool, err error) {
	ac := &activityConn{Conn: conn}
	if s.heartbeat > 0 {
		ac.silence = s.heartbeat * heartbeatMisses
	}
	request, err := s.requestLine(s.resume.String())
	if err != nil {
		return false, &permanentError{err}
	}
	// Resuming (after a cursor, or from the ring): the publisher accounts
	// for everything after the cursor itself, in its numbered stream after
	// the acknowledgement (sent, or counted in a dropped marker), and sends
	// markers whether or not they were asked for.
	resuming := !s.legacy && (s.resume.epoch != "" || s.replay)
	if request != nil {
		// The request is at most 64 KiB: it fits in the socket buffer. A
		// publisher that already hung up is noticed by the read (EOF), so a
		// write error is not reported here.
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = conn.Write(request)
		_ = conn.SetWriteDeadline(time.Time{})
	}
	// Only now: the publisher holds back what it has for a new connection
	// until the request is read (100 ms at most), so a request written at
	// once loses nothing emitted meanwhile, even by a caller that emits as
	// soon as it sees Reconnected.
	if announce && !s.send(Event{Kind: Reconnected}) {
		return false, nil
	}
	reader := bufio.NewReaderSize(ac, 64<<10)
	acknowledged := false
	epoch := ""        // this connection's, from the acknowledgement
	numbered := false  // a seq line said what the next notification's number is
	var nextSeq uint64 // the number of the next notification line
	for {
		line, err := readLine(reader)
		if err != nil {
			return ac.worked, s.connectionError(err)
		}
		// Every line starting {"notif": is a control line (the publisher
		// refuses notifications that start so), on the plain stream too: a
		// publisher that refuses us (denied, full) says so on one.
		if body, ok := controlLine(line); ok {
			switch {
			case body.Subscribed:
				acknowledged = true
				epoch = body.Epoch
				s.cursorsSeen = s.cursorsSeen || epoch != ""
			case body.Seq != nil && acknowledged:
				nextSeq, numbered = *body.Seq, true
				if nextSeq > 0 && epoch != "" {
					// Everything before it was delivered, left out by the
					// filter or reported dropped: a reconnection resumes
					// here, without reporting the same drops again.
					s.resume, s.replay = position{epoch, nextSeq - 1}, false
				}
			case (body.Dropped != nil || body.DroppedUnknown) && (s.markers || resuming):
				ev := Event{Kind: Dropped, Unknown: body.DroppedUnknown}
				if body.Dropped != nil {
					ev.Dropped = *body.Dropped
					s.dropped.Add(*body.Dropped)
				}
				if !s.send(ev) {
					return ac.worked, nil
				}
			case body.Error != nil:
				if !acknowledged && s.olderPublisher(*body.Error, body.Reason) {
					s.legacy = true
					return ac.worked, errRetryWithoutCursors
				}
				return ac.worked, s.refusal(*body.Error, body.Reason)
			}
			// Heartbeats (the deadline moved already), stats answers, markers
			// not asked for and control lines of newer publishers: nothing to
			// deliver.
			continue
		}
		ev := Event{Kind: Notification, Data: line}
		if !acknowledged {
			// Emitted before the publisher read the request: unnumbered
			// and unfiltered. When resuming, the numbered stream after
			// the acknowledgement holds them again (or counts them as
			// dropped): skip them. Otherwise filter here.
			if resuming || !s.filter.empty() && !s.filter.matches(line) {
				continue
			}
		} else if numbered && epoch != "" {
			ev.pos = position{epoch, nextSeq}
			nextSeq++
		}
		if !s.send(ev) {
			return ac.worked, nil
		}
		if ev.pos.epoch != "" {
			// Delivered: the next connection resumes after it.
			s.resume, s.replay = ev.pos, false
		}
	}
}

// errRetryWithoutCursors: connect again at once, without asking for cursors.
var errRetryWithoutCursors = errors.New("the publisher does not know cursors")

// olderPublisher tells a publisher from before cursors, which refuses the
// request's "cursor" key as unknown (bad_request), from one that refuses
// the options' own request.
func (s *Subscription) olderPublisher(message, reason string) bool {
	return !s.legacy && !s.userResume && !s.cursorsSeen &&
		(reason == "" || reason == "bad_request") && strings.Contains(message, `"cursor"`)
}

// refusal is what an error line from the publisher means, by its reason:
// too_slow and memory end this connection like any lost connection (the
// subscription reconnects); denied (EACCES), full (EUSERS) and a refused
// request (EPROTO: bad_request, request_timeout, no or an unknown reason)
// end the subscription.
func (s *Subscription) refusal(message, reason string) error {
	switch reason {
	case "too_slow", "memory":
		why := "this subscriber was too slow"
		if reason == "memory" {
			why = "its memory budget for subscribers ran out"
		}
		return newError("subscribe", syscall.EPIPE, fmt.Sprintf(
			"the publisher at %s closed the connection because %s (%s: %s)", s.path, why, reason, message))
	case "denied":
		return &permanentError{newError("subscribe", syscall.EACCES, fmt.Sprintf(
			"the publisher at %s does not let this user subscribe (its allow-lists; denied: %s)", s.path, message))}
	case "full":
		return &permanentError{newError("subscribe", syscall.EUSERS, fmt.Sprintf(
			"the publisher at %s has as many subscribers as it accepts (its max_subscribers; full: %s)", s.path, message))}
	}
	return &permanentError{newError("subscribe", syscall.EPROTO, fmt.Sprintf(
		"the publisher at %s refused the subscription request: %s", s.path, message))}
}

// connectionError turns a read error into the error that ends a connection.
func (s *Subscription) connectionError(err error) error {
	var notifErr *Error
	switch {
	case errors.As(err, &notifErr):
		return notifErr
	case errors.Is(err, io.EOF):
		return newPlainError("subscribe", syscall.EPIPE, fmt.Sprintf("the publisher at %s closed the connection", s.path))
	case errors.Is(err, os.ErrDeadlineExceeded):
		return newError("subscribe", syscall.ETIMEDOUT, fmt.Sprintf(
			"nothing from the publisher at %s for %v, not even a heartbeat", s.path, s.heartbeat*heartbeatMisses))
	case errors.Is(err, syscall.ECONNRESET):
		return newPlainError("subscribe", syscall.ECONNRESET, fmt.Sprintf("the publisher at %s reset the connection", s.path))
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		errno = syscall.EIO
	}
	return newError("subscribe", errno, fmt.Sprintf("reading from %s: %v", s.path, errnoText(err)))
}

// readLine returns the next whole line without its newline, in a fresh slice.
// An incomplete last line (the publisher gave up on us mid-line) is
// discarded with the EOF.
func readLine(r *bufio.Reader) ([]byte, error) {
	chunk, err := r.ReadSlice('\n')
	if err == nil {
		return bytes.Clone(chunk[:len(chunk)-1]), nil
	}
	if err != bufio.ErrBufferFull {
		return nil, err
	}
	// A line longer than the buffer: gather it.
	line := bytes.Clone(chunk)
	for {
		chunk, err = r.ReadSlice('\n')
		if len(line)+len(chunk) > maxLine+1 {
			return nil, newError("subscribe", syscall.EMSGSIZE, fmt.Sprintf(
				"a line from the publisher is over %d MiB without a newline; dropped the connection", maxLine>>20))
		}
		line = append(line, chunk...)
		switch err {
		case nil:
			return line[:len(line)-1], nil
		case bufio.ErrBufferFull:
			continue
		default:
			return nil, err
		}
	}
}

type controlBody struct {
	Subscribed     bool
	Epoch          string // of the acknowledgement, with cursors
	Seq            *uint64
	Dropped        *uint64
	DroppedUnknown bool // "dropped":"unknown"
	Error          *string
	Reason         string // of an error line; "" from older publishers
}

// controlLine recognises a control line: one whose first member is named
// "notif", i.e. that starts with {"notif": (the publisher compacts every
// line and refuses notifications that start so). ok is true for every such
// line, known, unknown or malformed (none is a notification).
func controlLine(line []byte) (body controlBody, ok bool) {
	if !bytes.HasPrefix(line, []byte(`{"notif":`)) {
		return body, false
	}
	var object map[string]json.RawMessage
	if json.Unmarshal(line, &object) != nil {
		return body, true
	}
	raw, found := object["notif"]
	if !found {
		return body, true
	}
	// Read each known field on its own, so one of an unexpected type does not
	// hide the others (encoding/json matches keys case-insensitively: check
	// the exact spelling first).
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return body, true
	}
	if v, found := fields["subscribed"]; found {
		_ = json.Unmarshal(v, &body.Subscribed)
	}
	if v, found := fields["dropped"]; found {
		var n uint64
		var word string
		if json.Unmarshal(v, &n) == nil {
			body.Dropped = &n
		} else if json.Unmarshal(v, &word) == nil && word == "unknown" {
			body.DroppedUnknown = true
		}
	}
	if v, found := fields["seq"]; found {
		var n uint64
		if json.Unmarshal(v, &n) == nil {
			body.Seq = &n
		}
	}
	if v, found := fields["epoch"]; found {
		_ = json.Unmarshal(v, &body.Epoch)
	}
	if v, found := fields["error"]; found {
		var msg string
		if json.Unmarshal(v, &msg) == nil {
			body.Error = &msg
		}
	}
	if v, found := fields["reason"]; found {
		_ = json.Unmarshal(v, &body.Reason)
	}
	return body, true
}

// matches applies the filter the way the publisher does, to the top-level
// fields of a notification line.
func (f *requestFilter) matches(line []byte) bool {
	var object map[string]json.RawMessage // exact keys; the last duplicate wins
	if json.Unmarshal(line, &object) != nil {
		return false
	}
	field := func(name string) (string, bool) {
		raw, found := object[name]
		if !found {
			return "", false
		}
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return "", false // not a string
		}
		return v, true
	}
	anyGlob := func(patterns []string, name string) bool {
		if len(patterns) == 0 {
			return true
		}
		v, ok := field(name)
		if !ok {
			return false
		}
		for _, p := range patterns {
			if globMatch(p, v) {
				return true
			}
		}
		return false
	}
	if len(f.Priorities) > 0 {
		v, ok := field("priority")
		if !ok {
			return false
		}
		found := false
		for _, p := range f.Priorities {
			if asciiEqualFold(p, v) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return anyGlob(f.EventTypes, "event_type") && anyGlob(f.Publishers, "publisher_id")
}

// globMatch: `*` matches any run of bytes (the empty run too); every other
// byte matches itself.
func globMatch(pattern, text string) bool {
	p, t := 0, 0
	starP, starT := -1, 0
	for t < len(text) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			starP, starT = p+1, t
			p++
		case p < len(pattern) && pattern[p] == text[t]:
			p++
			t++
		case starP >= 0:
			starT++
			p, t = starP, starT
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// asciiEqualFold compares ignoring ASCII case only (as the publisher does;
// strings.EqualFold also folds Unicode).
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
