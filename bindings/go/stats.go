package notif

// Stats is a publisher's counters (notif_stats). Message counts count
// messages; Delivered, DroppedSlow, DroppedClosed, Fanout and Filtered count
// (message, subscriber) pairs.
type Stats struct {
	Subscribers         uint64 `json:"subscribers"`           // subscribers connected now
	Accepted            uint64 `json:"accepted"`              // connections accepted since open (including ones refused for being over the limit)
	Emitted             uint64 `json:"emitted"`               // messages accepted by Emit for at least one subscriber
	Delivered           uint64 `json:"delivered"`             // (message, subscriber) pairs fully written to the subscriber's socket
	DroppedNoSubscriber uint64 `json:"dropped_no_subscriber"` // messages with nobody to go to
	DroppedSlow         uint64 `json:"dropped_slow"`          // (message, subscriber) pairs dropped because that subscriber's buffer was full
	DroppedBacklog      uint64 `json:"dropped_backlog"`       // messages Emit dropped with EAGAIN because the backlog was full
	Rejected            uint64 `json:"rejected"`              // messages Emit refused with EINVAL or EMSGSIZE
	BytesSent           uint64 `json:"bytes_sent"`            // bytes written to subscriber sockets
	Disconnected        uint64 `json:"disconnected"`          // subscribers the publisher closed (too slow, or over max subscribers)
	DroppedClosed       uint64 `json:"dropped_closed"`        // pairs still queued when the subscriber hung up or was closed, or linger ran out
	Refused             uint64 `json:"refused"`               // connections closed at accept because max subscribers were connected
	Fanout              uint64 `json:"fanout"`                // pairs handed to subscribers; after a quiet period Fanout == Delivered + DroppedSlow + DroppedClosed
	Filtered            uint64 `json:"filtered"`              // pairs a subscriber's filter left out
	BadRequests         uint64 `json:"bad_requests"`          // subscription requests that were invalid (answered with an error, then closed)
	StatsRequests       uint64 `json:"stats_requests"`        // stats requests answered on the socket
	Denied              uint64 `json:"denied"`                // connections closed at accept because the peer's credentials matched no allow-list
	Replayed            uint64 `json:"replayed"`              // pairs sent again from the log to subscribers that resumed (after) or asked for the ring (replay); also in Fanout
	ReplayBytes         uint64 `json:"replay_bytes"`          // memory the replay ring holds now (WithReplayBytes; 0 when off)
	ReplayMessages      uint64 `json:"replay_messages"`       // notifications the replay ring holds now
	ReplayOldest        uint64 `json:"replay_oldest"`         // number of the oldest notification the ring holds (NextSeq when it is empty)
	NextSeq             uint64 `json:"next_seq"`              // number the next notification will get
	Writes              uint64 `json:"writes"`                // system calls that wrote to subscriber sockets (the server thread's, and Emit's writing through while it slept)
	Wakeups             uint64 `json:"wakeups"`               // times Emit woke the sleeping server thread (an eventfd write)
	WrittenThrough      uint64 `json:"written_through"`       // pairs Emit wrote to the socket itself while the server thread slept; also in Delivered and Fanout
	DisconnectedCostly  uint64 `json:"disconnected_costly"`   // connections cut off because writing to them cost the server thread too much (reason too_costly); also in Disconnected
	KeptNoSubscriber    uint64 `json:"kept_no_subscriber"`    // notifications emitted while nobody was connected and kept in the replay ring
}
