//go:build cgo && !notif_checkout

package notif

// The default, as for any cgo wrapper of a system library: an installed
// libnotif (make install, or a distribution package), found through its
// notif.pc. Set PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig for a prefix pkg-config
// does not search. The program links the shared libnotif.so.0: give it an
// rpath (go build -ldflags=-r=$(pkg-config --variable=libdir notif)) or
// LD_LIBRARY_PATH when that directory is not one the loader searches.
//
// The header is this module's own copy (notif.h beside this file, kept
// identical to include/notif.h by make test): the Go code is compiled against
// the API it was written for, and `go mod vendor` carries it along. -I comes
// before pkg-config's flags, so it is the one found.
//
// (The notif_pkgconfig tag of earlier versions selected this file; it is the
// default now and the tag is no longer needed.)

// #cgo CPPFLAGS: -I${SRCDIR}
// #cgo pkg-config: notif
import "C"
