package notif

import (
	"strconv"
	"strings"
	"sync"
)

// Cursors: a notification's place in the publisher's numbering, the text
// form WithAfter takes, and what Subscription.Cursor reports.

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

// validCursor: EPOCH-SEQ, 16 lowercase hexadecimal digits, a dash, a decimal
// number (the protocol's form; the publisher checks it too).
func validCursor(c string) bool {
	epoch, seq, ok := strings.Cut(c, "-")
	if !ok || !validEpoch(epoch) || len(seq) == 0 || len(seq) > 20 {
		return false
	}
	for i := 0; i < len(seq); i++ {
		if seq[i] < '0' || seq[i] > '9' {
			return false
		}
	}
	_, err := strconv.ParseUint(seq, 10, 64)
	return err == nil
}

// validEpoch: 16 lowercase hexadecimal digits, a publisher's epoch (in a
// cursor, and in the acknowledgement: one of another form is ignored).
func validEpoch(epoch string) bool {
	if len(epoch) != 16 {
		return false
	}
	for i := 0; i < len(epoch); i++ {
		if !('0' <= epoch[i] && epoch[i] <= '9' || 'a' <= epoch[i] && epoch[i] <= 'f') {
			return false
		}
	}
	return true
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
