//go:build cgo && notif_pkgconfig

package notif

// An installed libnotif, found through its notif.pc (make install).

// #cgo pkg-config: notif
import "C"
