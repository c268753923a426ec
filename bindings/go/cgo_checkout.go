//go:build cgo && notif_checkout

package notif

// Opt-in (go build -tags notif_checkout): the library as this repository
// builds it (cargo build --release), linked statically, for working inside a
// checkout without installing anything. The program then needs no
// libnotif.so at run time. (libnotif.so carries the soname libnotif.so.0,
// which only `make` links into build/lib, so linking the shared library from
// target/release would not run.) The system libraries are what rustc reports
// for the static library (--print native-static-libs). It cannot work from a
// module cache or a vendor directory: there is no target/ there.
//
// Without the tag, cgo_pkgconfig.go links an installed libnotif.

// #cgo CPPFLAGS: -I${SRCDIR}
// #cgo LDFLAGS: ${SRCDIR}/../../target/release/libnotif.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
import "C"
