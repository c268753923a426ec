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
//     optional server-side filters, drop markers and heartbeats
//     (docs/subscription-protocol.md), reconnecting by itself.
//
// Building the publisher half: by default the cgo flags point at this
// repository's own build (include/ and target/release/, with an rpath), so in
// a checkout `cargo build --release` (or `make`) and then `go build` is all
// it takes. Against an installed libnotif (`make install`, which also
// installs notif.pc), build with the notif_pkgconfig tag:
//
//	go build -tags notif_pkgconfig ./...
//
// or keep the default and override the flags from the environment:
//
//	CGO_CFLAGS="$(pkg-config --cflags notif)" CGO_LDFLAGS="$(pkg-config --libs notif)" go build ./...
//
// (the default -L/-rpath flags stay on the command line but are harmless when
// the directory does not exist).
package notif
