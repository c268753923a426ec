// Command example publishes the oslo sample notification a few times on a
// temporary socket and reads it back with the pure-Go subscriber.
//
//	cargo build --release && cd examples/go && go run -tags notif_checkout .
//
// (or, against an installed libnotif found by pkg-config, plain go run .)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"time"

	notif "github.com/notif-dev/notif/bindings/go"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("example: ")
	fixture := flag.String("fixture", defaultFixture(), "the notification to emit (a JSON file)")
	count := flag.Int("n", 3, "how many times to emit it")
	flag.Parse()

	sample, err := os.ReadFile(*fixture)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "notif-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "notifications.sock")

	// The daemon's side.
	pub, err := notif.Open(path, notif.WithMode(0o600), notif.WithLinger(500*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	fmt.Printf("libnotif %s publishing on %s\n", notif.Version(), path)

	// A consumer's side: only compute.* notifications, drops reported.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub, err := notif.Subscribe(ctx, path,
		notif.WithFilters(notif.Filter{EventTypes: []string{"compute.*"}}), notif.WithMarkers())
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	// Emitting before the publisher has accepted the subscriber would reach
	// nobody (Emit returns 0): wait for it.
	for {
		st, err := pub.Stats()
		if err != nil {
			log.Fatal(err)
		}
		if st.Subscribers > 0 {
			break
		}
		if ctx.Err() != nil {
			log.Fatal("the subscriber never connected")
		}
		time.Sleep(5 * time.Millisecond)
	}

	for i := 0; i < *count; i++ {
		n, err := pub.Emit(sample)
		if err != nil {
			log.Fatal(err)
		}
		// Filtered out by the subscriber: it asked for compute.* only.
		if _, err := pub.EmitValue(map[string]any{"event_type": "image.update", "seq": i}); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("emitted #%d to %d subscriber(s)\n", i+1, n)
	}

	for received := 0; received < *count; {
		ev, ok := <-sub.Events()
		if !ok {
			log.Fatalf("subscription ended: %v", sub.Err())
		}
		switch ev.Kind {
		case notif.Notification:
			var n struct {
				EventType string         `json:"event_type"`
				Publisher string         `json:"publisher_id"`
				Priority  string         `json:"priority"`
				Payload   map[string]any `json:"payload"`
			}
			if err := json.Unmarshal(ev.Data, &n); err != nil {
				log.Fatalf("not JSON: %v: %s", err, ev.Data)
			}
			received++
			fmt.Printf("received #%d: %s %s from %s: %v\n", received, n.Priority, n.EventType, n.Publisher, n.Payload)
		case notif.Dropped:
			fmt.Printf("the publisher dropped %d notification(s) for us\n", ev.Dropped)
		case notif.Reconnected:
			fmt.Println("reconnected")
		}
	}

	st, err := pub.Stats()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("stats: emitted %d, delivered %d, filtered %d\n", st.Emitted, st.Delivered, st.Filtered)
}

// defaultFixture is tests/fixtures/small.json of this repository, found from
// this source file's location (go run keeps it).
func defaultFixture() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "tests/fixtures/small.json"
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "tests", "fixtures", "small.json")
}
