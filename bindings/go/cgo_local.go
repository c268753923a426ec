//go:build cgo && !notif_pkgconfig

package notif

// The library as this repository builds it (cargo build --release), linked
// statically: the Go program needs no libnotif.so at run time, and nothing
// but `cargo build --release` has to run first. (libnotif.so carries the
// soname libnotif.so.0, which only `make` links into build/lib, so linking the
// shared library from target/release would not run.) The system libraries
// are what rustc reports for the static library (--print native-static-libs).
//
// Build with -tags notif_pkgconfig to use an installed libnotif instead
// (cgo_pkgconfig.go).

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: ${SRCDIR}/../../target/release/libnotif.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
import "C"
