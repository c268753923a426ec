package notif

import (
	"testing"
)

// WithFilters sends the same request as the deprecated WithFilter, copies its
// slices, and the last filter option wins.
func TestWithFiltersRequest(t *testing.T) {
	request := func(opts ...SubscribeOption) string { return requestOf(t, opts...) }
	types := []string{"compute.*"}
	opt := WithFilters(Filter{EventTypes: types, Publishers: []string{"*.host1"}})
	types[0] = "changed.after.the.call"
	want := `{"subscribe":{"event_types":["compute.*"],"publishers":["*.host1"]},"cursor":true}`
	if got := request(opt); got != want {
		t.Errorf("WithFilters: %s, want %s", got, want)
	}
	if got := request(WithFilter([]string{"compute.*"}, nil, []string{"*.host1"})); got != want {
		t.Errorf("WithFilter: %s, want %s", got, want)
	}
	if got := request(WithFilter([]string{"x"}, nil, nil), WithFilters(Filter{Priorities: []string{"error"}})); got != `{"subscribe":{"priorities":["error"]},"cursor":true}` {
		t.Errorf("last option: %s", got)
	}
}
