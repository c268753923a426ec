package notif

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// One connection of a subscription: the request written, then every line
// read, classified (a control line or a notification) and acted on, until the
// connection ends and says why.

const (
	maxLine         = 64 << 20 // longest line accepted from the publisher
	heartbeatMisses = 3        // heartbeat intervals of silence that mean a dead connection
)

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
		if c, ok := parseControl(line); ok {
			switch c.kind {
			case ctlAck:
				acknowledged = true
				epoch = c.epoch
				s.cursorsSeen = s.cursorsSeen || epoch != ""
			case ctlSeq:
				if !acknowledged {
					break
				}
				nextSeq, numbered = c.n, true
				if nextSeq > 0 && epoch != "" {
					// Everything before it was delivered, left out by the
					// filter or reported dropped: a reconnection resumes
					// here, without reporting the same drops again.
					s.resume, s.replay = position{epoch, nextSeq - 1}, false
				}
			case ctlDropped:
				if !s.markers && !resuming {
					break
				}
				ev := Event{Kind: Dropped, Unknown: c.unknown}
				if !c.unknown {
					ev.Dropped = c.n
					s.dropped.Add(c.n)
				}
				if !s.send(ev) {
					return ac.worked, nil
				}
			case ctlError:
				if !acknowledged && s.olderPublisher(c.message, c.reason) {
					s.legacy = true
					return ac.worked, errRetryWithoutCursors
				}
				return ac.worked, s.refusal(c.message, c.reason)
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
			if resuming || !s.filter.lets(line) {
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
	switch actedReason(reason) {
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

// actedReason is the reason of an error line a client acts on: a known one
// as is; none, one that is not a string or one this client does not know:
// bad_request.
func actedReason(reason string) string {
	switch reason {
	case "bad_request", "request_timeout", "too_slow", "memory", "denied", "full", "too_costly":
		return reason
	}
	return "bad_request"
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

// controlKind is what a control line is, as this client reads it: the
// classes of tests/protocol-vectors/control_lines.json.
type controlKind int

const (
	// ctlUnknown: a control line this client does not understand (a newer
	// publisher's) or a malformed one: skipped, never a notification.
	ctlUnknown controlKind = iota
	// ctlAck: {"notif":{"subscribed":true,...}}, with an epoch with cursors.
	ctlAck
	// ctlSeq: {"notif":{"seq":N}}, the next notification's number.
	ctlSeq
	// ctlDropped: {"notif":{"dropped":N}}, or "unknown".
	ctlDropped
	// ctlHeartbeat: {"notif":{"heartbeat":T}}.
	ctlHeartbeat
	// ctlError: {"notif":{"error":"...","reason":"..."}}.
	ctlError
	// ctlStats: {"notif":{"stats":{...}}}.
	ctlStats
)

// control is one control line: its kind and what it carries.
type control struct {
	kind    controlKind
	epoch   string          // ctlAck: the publisher's epoch (with cursors; validEpoch), or ""
	n       uint64          // ctlSeq: the number; ctlDropped: how many
	unknown bool            // ctlDropped: "unknown", how many is not known
	time    float64         // ctlHeartbeat: Unix seconds
	message string          // ctlError
	reason  string          // ctlError: as sent; "" when absent or not a string (older publishers)
	stats   json.RawMessage // ctlStats: the object
}

// parseControl recognises a control line: one whose first member is named
// "notif", i.e. that starts with {"notif": (the publisher compacts every
// line and refuses notifications that start so). ok is true for every such
// line, known, unknown or malformed (none is a notification). The first of
// these the body holds decides: subscribed true, seq, dropped, heartbeat,
// error, stats (as the Rust client reads it).
func parseControl(line []byte) (c control, ok bool) {
	if !bytes.HasPrefix(line, []byte(`{"notif":`)) {
		return c, false
	}
	var object map[string]json.RawMessage
	if json.Unmarshal(line, &object) != nil {
		return c, true
	}
	// encoding/json matches struct fields case-insensitively: maps keep the
	// exact spelling (and the last of duplicate keys, as the publisher does).
	var fields map[string]json.RawMessage
	if json.Unmarshal(object["notif"], &fields) != nil {
		return c, true
	}
	has := func(name string, v any) bool {
		raw, found := fields[name]
		// null decodes into anything, as nothing: it is no value here.
		return found && string(raw) != "null" && json.Unmarshal(raw, v) == nil
	}
	var subscribed bool
	var word string
	switch {
	case has("subscribed", &subscribed) && subscribed:
		c.kind = ctlAck
		if has("epoch", &c.epoch) && !validEpoch(c.epoch) {
			c.epoch = "" // not a cursor's epoch: as without cursors
		}
	case has("seq", &c.n):
		c.kind = ctlSeq
	case has("dropped", &c.n):
		c.kind = ctlDropped
	case has("dropped", &word) && word == "unknown":
		c.kind, c.unknown = ctlDropped, true
	case has("heartbeat", &c.time):
		c.kind = ctlHeartbeat
	case has("error", &c.message):
		c.kind = ctlError
		_ = has("reason", &c.reason)
	case bytes.HasPrefix(fields["stats"], []byte("{")):
		c.kind, c.stats = ctlStats, fields["stats"]
	}
	return c, true
}
