package notif

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The subscriber is pure Go (no cgo): it speaks the wire protocol of the
// README and docs/subscription-protocol.md directly. Its parts:
//
//   - subscriber.go: Subscribe, the Subscription and its events (what the
//     receiver sees: Events, Err, Cursor, Close);
//   - subscriber_options.go: the options and the request line they make;
//   - subscriber_connection.go: one connection (reading lines, classifying
//     control lines, what an error line or a read error means);
//   - subscriber_reconnect.go: connecting, reconnecting and the back-off;
//   - subscriber_path.go: what a failed connect says about the path;
//   - cursor.go: cursors (their form, and what Cursor reports);
//   - filter.go: Filter, and matching a notification against it.

const (
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
