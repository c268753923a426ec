package notif

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// PublisherStats is a publisher's answer to a stats request on its socket
// (RequestStats): what `notif stats` shows.
type PublisherStats struct {
	Stats          // the counters, as Publisher.Stats returns them
	Version string // the publisher's libnotif version
	// SubscriberList: one entry per connected subscriber, when the publisher
	// lists them (nil from publishers that do not).
	SubscriberList []SubscriberInfo
	// Raw: every member of the answer as sent, those of newer publishers too.
	Raw map[string]json.RawMessage
}

// SubscriberInfo is one subscriber as the publisher sees it.
type SubscriberInfo struct {
	// PID, UID, GID: the peer's credentials (SO_PEERCRED); nil when the
	// publisher does not show them to the asker (only root and the
	// publisher's own user see other peers').
	PID, UID, GID *uint32
	ConnectedAt   time.Time
	Filter        *Filter       // the filter it asked for; nil: everything
	Markers       bool          // it asked for drop markers
	Heartbeat     time.Duration // the heartbeat interval it asked for; 0: none
	QueuedBytes   uint64        // bytes queued for it now
	Delivered     uint64        // notifications delivered on this connection
	DroppedSlow   uint64        // notifications dropped because it was too slow
}

type subscriberWire struct {
	PID         *uint32        `json:"pid"`
	UID         *uint32        `json:"uid"`
	GID         *uint32        `json:"gid"`
	ConnectedAt float64        `json:"connected_at"`
	Filter      *requestFilter `json:"filter"`
	Markers     bool           `json:"markers"`
	Heartbeat   *float64       `json:"heartbeat_s"`
	QueuedBytes uint64         `json:"queued_bytes"`
	Delivered   uint64         `json:"delivered"`
	DroppedSlow uint64         `json:"dropped_slow"`
}

// RequestStats asks the publisher at path (a socket path, or "@name") for
// its counters and subscribers over the socket ({"stats":true}, the
// subscription protocol), as any process that may connect can; it needs no
// cgo. It gives up when ctx is done, and in any case after
// DefaultStatsTimeout when ctx has no deadline: a socket that never accepts
// (its listen backlog full) or accepts and never answers is reported as
// ETIMEDOUT, never waited on for ever.
//
// Errors (*Error): the connect errors of Subscribe with WithoutReconnect,
// EPROTO when the publisher refused the request or answered with something
// that is not a stats line, EPIPE when it closed the connection first, and
// ctx's error.
// DefaultStatsTimeout bounds RequestStats when its context has no deadline.
const DefaultStatsTimeout = 5 * time.Second

func RequestStats(ctx context.Context, path string) (*PublisherStats, error) {
	// Our own deadline when the caller gave none: reported as ETIMEDOUT
	// rather than as the context's error.
	timeout := time.Duration(0)
	if _, ok := ctx.Deadline(); !ok {
		timeout = DefaultStatsTimeout
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	ctxErr := func() error {
		if timeout != 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return newPlainError("stats", syscall.ETIMEDOUT, fmt.Sprintf(
				"%s: no answer to the stats request within %v: not a notif publisher, or a stuck one?", path, timeout))
		}
		return ctx.Err()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	// A full listen backlog fails at once (EAGAIN): try again until the deadline.
	for err != nil && errors.Is(err, syscall.EAGAIN) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
			conn, err = d.DialContext(ctx, "unix", path)
		}
	}
	if err != nil {
		// The dial's own deadline (the context's) may pass a moment before
		// the context reports it: a timeout is the deadline either way.
		var netErr net.Error
		dialTimedOut := errors.As(err, &netErr) && netErr.Timeout()
		if ctx.Err() != nil || dialTimedOut {
			if errors.Is(err, syscall.EAGAIN) || (dialTimedOut && timeout != 0) {
				return nil, newPlainError("stats", syscall.ETIMEDOUT, fmt.Sprintf(
					"%s: accepts no connection (its listen backlog stayed full): a stuck publisher, or not a notif publisher", path))
			}
			if e := ctxErr(); e != nil {
				return nil, e
			}
			return nil, context.DeadlineExceeded
		}
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			errno = syscall.EIO
		}
		_, e := connectFailure(path, errno, errnoText(err))
		e.Op = "stats"
		return nil, e
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	fail := func(errno syscall.Errno, format string, args ...any) (*PublisherStats, error) {
		if ctx.Err() != nil {
			return nil, ctxErr()
		}
		return nil, newPlainError("stats", errno, fmt.Sprintf("%s: ", path)+fmt.Sprintf(format, args...))
	}
	const closed = "the publisher closed the connection without answering the stats request"
	if _, err := conn.Write([]byte("{\"stats\":true}\n")); err != nil {
		// It hung up already (EPIPE, ECONNRESET): the same as hanging up unanswered.
		return fail(syscall.EPIPE, closed)
	}
	reader := bufio.NewReaderSize(conn, 64<<10)
	for {
		line, err := readLine(reader)
		var tooLong *Error
		switch {
		case err != nil && ctx.Err() == nil && errors.As(err, &tooLong):
			return nil, tooLong // a line over 64 MiB
		case err != nil:
			return fail(syscall.EPIPE, closed)
		}
		// Notifications emitted before the publisher read the request may
		// come first, and other control lines: skipped.
		c, ok := parseControl(line)
		switch {
		case ok && c.kind == ctlError:
			return fail(syscall.EPROTO, "the publisher refused the stats request: %s", c.message)
		case !ok || c.kind != ctlStats:
			continue
		}
		return decodeStats(path, c.stats)
	}
}

func decodeStats(path string, raw json.RawMessage) (*PublisherStats, error) {
	bad := func(err error) error {
		return newPlainError("stats", syscall.EPROTO, fmt.Sprintf("%s: the stats answer does not decode: %v", path, err))
	}
	answer := &PublisherStats{}
	if err := json.Unmarshal(raw, &answer.Raw); err != nil {
		return nil, bad(err)
	}
	if err := json.Unmarshal(raw, &answer.Stats); err != nil {
		return nil, bad(err)
	}
	if v, ok := answer.Raw["version"]; ok {
		_ = json.Unmarshal(v, &answer.Version)
	}
	list, ok := answer.Raw["subscriber_list"]
	if !ok {
		return answer, nil
	}
	var wire []subscriberWire
	if err := json.Unmarshal(list, &wire); err != nil {
		return nil, bad(err)
	}
	answer.SubscriberList = make([]SubscriberInfo, 0, len(wire))
	for _, w := range wire {
		info := SubscriberInfo{
			PID: w.PID, UID: w.UID, GID: w.GID,
			ConnectedAt: time.UnixMicro(int64(w.ConnectedAt * 1e6)),
			Markers:     w.Markers,
			QueuedBytes: w.QueuedBytes, Delivered: w.Delivered, DroppedSlow: w.DroppedSlow,
		}
		if w.Filter != nil {
			info.Filter = &Filter{EventTypes: w.Filter.EventTypes, Priorities: w.Filter.Priorities, Publishers: w.Filter.Publishers}
		}
		if w.Heartbeat != nil {
			info.Heartbeat = time.Duration(*w.Heartbeat * float64(time.Second))
		}
		answer.SubscriberList = append(answer.SubscriberList, info)
	}
	return answer, nil
}
