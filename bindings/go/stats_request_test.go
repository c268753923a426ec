package notif

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

func TestRequestStatsFromAFakePublisher(t *testing.T) {
	path := sockPath(t)
	fake := newFakePublisher(t, path)
	done := make(chan *PublisherStats, 1)
	go func() {
		answer, err := RequestStats(context.Background(), path)
		if err != nil {
			t.Error(err)
		}
		done <- answer
	}()
	c := fake.accept(t)
	if req := readRequest(t, c); req != `{"stats":true}` {
		t.Fatalf("request %q", req)
	}
	// A notification emitted before the request was read, another control
	// line, then the answer (with a member of a newer publisher).
	write(t, c, `{"event_type":"x","notif":1}`+"\n"+`{"notif":{"heartbeat":1.5}}`+"\n")
	write(t, c, `{"notif":{"stats":{"subscribers":2,"delivered":7,"dropped_no_subscriber":3,"version":"0.1.0","future":[1],`+
		`"subscriber_list":[`+
		`{"pid":42,"uid":1000,"gid":100,"connected_at":1700000000.25,"filter":{"event_types":["compute.*"],"priorities":["error"]},"markers":true,"heartbeat_s":2.5,"queued_bytes":64,"delivered":5,"dropped_slow":1},`+
		`{"pid":null,"uid":null,"gid":null,"connected_at":1700000001,"filter":null,"markers":false,"heartbeat_s":null,"queued_bytes":0,"delivered":2,"dropped_slow":0}]}}}`+"\n")
	var answer *PublisherStats
	select {
	case answer = <-done:
	case <-time.After(waitLong):
		t.Fatal("no answer")
	}
	if answer == nil {
		t.FailNow()
	}
	if answer.Subscribers != 2 || answer.Delivered != 7 || answer.DroppedNoSubscriber != 3 || answer.Version != "0.1.0" {
		t.Errorf("counters %+v version %q", answer.Stats, answer.Version)
	}
	if string(answer.Raw["future"]) != "[1]" {
		t.Errorf("raw %s", answer.Raw["future"])
	}
	if len(answer.SubscriberList) != 2 {
		t.Fatalf("list %+v", answer.SubscriberList)
	}
	first, second := answer.SubscriberList[0], answer.SubscriberList[1]
	if first.PID == nil || *first.PID != 42 || *first.UID != 1000 || *first.GID != 100 {
		t.Errorf("credentials %v %v %v", first.PID, first.UID, first.GID)
	}
	if !first.ConnectedAt.Equal(time.Unix(1700000000, 250_000_000)) || !first.Markers || first.Heartbeat != 2500*time.Millisecond ||
		first.QueuedBytes != 64 || first.Delivered != 5 || first.DroppedSlow != 1 {
		t.Errorf("first %+v", first)
	}
	if first.Filter == nil || len(first.Filter.EventTypes) != 1 || first.Filter.EventTypes[0] != "compute.*" || first.Filter.Priorities[0] != "error" {
		t.Errorf("filter %+v", first.Filter)
	}
	if second.PID != nil || second.UID != nil || second.Filter != nil || second.Heartbeat != 0 || second.Delivered != 2 {
		t.Errorf("second %+v", second)
	}
}

func TestRequestStatsErrors(t *testing.T) {
	// Refused, closed, silent (the context ends it), absent.
	path := sockPath(t)
	fake := newFakePublisher(t, path)
	errs := make(chan error, 1)
	ask := func(ctx context.Context) {
		go func() {
			_, err := RequestStats(ctx, path)
			errs <- err
		}()
	}
	result := func() error {
		t.Helper()
		select {
		case err := <-errs:
			return err
		case <-time.After(waitLong):
			t.Fatal("RequestStats did not return")
		}
		return nil
	}

	ask(context.Background())
	c := fake.accept(t)
	readRequest(t, c)
	write(t, c, `{"notif":{"error":"no stats for you","reason":"denied"}}`+"\n")
	err := result()
	e := expectErrno(t, err, syscall.EPROTO)
	checkText(t, e, "no stats for you")

	ask(context.Background())
	fake.accept(t).Close()
	err = result()
	expectErrno(t, err, syscall.EPIPE)
	checkText(t, err, "without answering")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	ask(ctx)
	fake.accept(t)
	if err := result(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("silent publisher: %v", err)
	}

	fake.close()
	_, err = RequestStats(context.Background(), path)
	expectErrno(t, err, syscall.ENOENT)
	checkText(t, err, "no socket there")
}
