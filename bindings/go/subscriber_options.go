package notif

import (
	"encoding/json"
	"fmt"
	"syscall"
	"time"
)

// The subscriber's options, and the request line they make.

const (
	maxRequestLine = 64 << 10 // the publisher's limit, newline included
	minHeartbeat   = 100 * time.Millisecond
	maxHeartbeat   = time.Hour
)

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
