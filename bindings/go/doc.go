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
// repository's own build, include/ and target/release/libnotif.a (linked
// statically, so the program needs no libnotif.so at run time). In a checkout,
// `cargo build --release` (or `make`) and then `go build` is all it takes.
// Against an installed libnotif (`make install`, which installs notif.pc),
// build with the notif_pkgconfig tag, which links the shared library:
//
//	go build -tags notif_pkgconfig ./...
//
// (PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig for a prefix pkg-config does not
// search, and LD_LIBRARY_PATH or an rpath if the loader does not either.)
//
// Go's build cache does not notice when the C library changes (golang/go#29293):
// after rebuilding libnotif, rebuild with `go build -a`, or `go clean -cache`.
package notif
