package notif

// Filter says which notifications a subscriber wants (WithFilters); the
// publisher applies it (docs/subscription-protocol.md). Each list constrains
// one top-level field of a notification; a nil or empty list puts no
// constraint on its field; the lists combine with AND, the entries of one
// list with OR. When a list is given, a notification whose field is missing
// or not a string does not match.
type Filter struct {
	// EventTypes: globs on event_type ("compute.instance.*"). `*` matches
	// any run of characters; every other character matches itself.
	EventTypes []string
	// Priorities: priority values, compared ignoring ASCII case ("error").
	Priorities []string
	// Publishers: globs on publisher_id ("compute.*").
	Publishers []string
}

func (f Filter) clone() Filter {
	return Filter{
		EventTypes: append([]string(nil), f.EventTypes...),
		Priorities: append([]string(nil), f.Priorities...),
		Publishers: append([]string(nil), f.Publishers...),
	}
}

// WithFilters asks the publisher for only the notifications f matches:
//
//	notif.Subscribe(ctx, path, notif.WithFilters(notif.Filter{
//		EventTypes: []string{"compute.instance.*"},
//		Priorities: []string{"error", "critical"},
//	}))
//
// Later WithFilters (or WithFilter) options replace earlier ones. The slices
// are copied.
func WithFilters(f Filter) SubscribeOption {
	f = f.clone()
	return func(c *subscribeConfig) { c.filter = f }
}

// WithFilter is WithFilters(Filter{EventTypes: eventTypes, Priorities:
// priorities, Publishers: publishers}).
//
// Deprecated: three positional lists of the same type are easy to swap; use
// WithFilters, whose fields are named.
func WithFilter(eventTypes, priorities, publishers []string) SubscribeOption {
	return WithFilters(Filter{EventTypes: eventTypes, Priorities: priorities, Publishers: publishers})
}
