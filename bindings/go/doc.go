// Package notif is the Go binding of libnotif: a daemon publishes JSON
// notifications on a Unix socket and any number of local subscribers read
// them, one compact JSON object per line.
//
// The package has two halves:
//
//   - Publisher (cgo; needs libnotif): Open a socket, Emit notifications,
//     read Stats, Close. Present only when cgo is enabled.
//   - Subscription (pure Go, no cgo, builds with CGO_ENABLED=0): Subscribe to
//     a publisher's socket and receive its notifications on a channel, with
//     optional server-side filters (WithFilters), drop markers and heartbeats
//     (docs/subscription-protocol.md), reconnecting by itself. It knows the
//     cursor of each notification (Event.Cursor, Subscription.Cursor),
//     starts after a saved one (WithAfter) or from the publisher's replay
//     ring (WithReplay; the publisher's WithReplayBytes), and resumes after
//     its own when it reconnects, so that nothing the ring holds is missed.
//
// The module is not published: use a checkout with
//
//	require github.com/notif-dev/notif/bindings/go v0.0.0
//	replace github.com/notif-dev/notif/bindings/go => ../notif/bindings/go
//
// and import it as notif "github.com/notif-dev/notif/bindings/go".
//
// Building the publisher half: by default it links an installed libnotif
// through pkg-config (`#cgo pkg-config: notif`), the shared libnotif.so.0,
// as cgo wrappers of system libraries do. After `make install`
// (PREFIX=/usr/local by default; run ldconfig for a system prefix):
//
//	go build ./...
//
// For another prefix: PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig, and an rpath
// (go build -ldflags="-r $PREFIX/lib") or LD_LIBRARY_PATH=$PREFIX/lib at run
// time. Inside a checkout, without installing, the notif_checkout tag links
// the checkout's target/release/libnotif.a statically (after cargo build
// --release):
//
//	go build -tags notif_checkout ./...
//
// Both compile against the module's own copy of notif.h, so `go mod vendor`
// works. With CGO_ENABLED=0 only the subscriber half is built; a program that
// uses the publisher then fails to compile with a message saying to build
// with CGO_ENABLED=1 and libnotif installed.
//
// Go's build cache does not notice when the C library changes (golang/go#29293):
// after rebuilding libnotif, rebuild with `go build -a`, or `go clean -cache`.
package notif
