package notif

import "encoding/json"

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

type requestFilter struct {
	EventTypes []string `json:"event_types,omitempty"`
	Priorities []string `json:"priorities,omitempty"`
	Publishers []string `json:"publishers,omitempty"`
}

func (f *requestFilter) empty() bool {
	return len(f.EventTypes) == 0 && len(f.Priorities) == 0 && len(f.Publishers) == 0
}

// lets says whether a notification line passes f: an empty filter lets
// every line through.
func (f *requestFilter) lets(line []byte) bool { return f.empty() || f.matches(line) }

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
