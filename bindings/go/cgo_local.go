//go:build cgo && !notif_pkgconfig

package notif

// The library as this repository builds it (cargo build --release). Build with
// -tags notif_pkgconfig to use an installed libnotif instead (cgo_pkgconfig.go).

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -L${SRCDIR}/../../target/release -lnotif -Wl,-rpath,${SRCDIR}/../../target/release
import "C"
