package notif

// Stats is a publisher's counters (notif_stats). Message counts count
// messages; Delivered, DroppedSlow, DroppedClosed, Fanout and Filtered count
// (message, subscriber) pairs.
type Stats struct {
	Subscribers         uint64 // subscribers connected now
	Accepted            uint64 // connections accepted since open (including ones refused for being over the limit)
	Emitted             uint64 // messages accepted by Emit for at least one subscriber
	Delivered           uint64 // (message, subscriber) pairs fully written to the subscriber's socket
	DroppedNoSubscriber uint64 // messages with nobody to go to
	DroppedSlow         uint64 // (message, subscriber) pairs dropped because that subscriber's buffer was full
	DroppedBacklog      uint64 // messages Emit dropped with EAGAIN because the backlog was full
	Rejected            uint64 // messages Emit refused with EINVAL or EMSGSIZE
	BytesSent           uint64 // bytes written to subscriber sockets
	Disconnected        uint64 // subscribers the publisher closed (too slow, or over max subscribers)
	DroppedClosed       uint64 // pairs still queued when the subscriber hung up or was closed, or linger ran out
	Refused             uint64 // connections closed at accept because max subscribers were connected
	Fanout              uint64 // pairs handed to subscribers; after a quiet period Fanout == Delivered + DroppedSlow + DroppedClosed
	Filtered            uint64 // pairs a subscriber's filter left out
	BadRequests         uint64 // subscription requests that were invalid (answered with an error, then closed)
	StatsRequests       uint64 // stats requests answered on the socket
	Denied              uint64 // connections closed at accept because the peer's credentials matched no allow-list
}
