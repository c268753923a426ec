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
