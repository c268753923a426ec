//go:build !cgo

package notif

// Without cgo (CGO_ENABLED=0, or no C compiler) only the pure-Go subscriber
// is built. The publisher API is declared here as constants so that a program
// using it fails to compile with a message that says what to do, instead of a
// bare "undefined: notif.Open":
//
//	invalid operation: cannot call notif.Open (constant "build with CGO_ENABLED=1
//	and libnotif installed (pkg-config notif)" of string type
//	notif.publisherNeedsCgo): notif.publisherNeedsCgo is not a function
//
// (A stub that compiles and fails at run time would let a binary without its
// publisher reach production; the compiler is the earlier place to say it.)
// TestNoCgoDeclaresThePublisherAPI keeps this list complete.

type publisherNeedsCgo string

// The compiler shows at most about 70 characters of a constant: keep it short.
const needsCgo publisherNeedsCgo = "build with CGO_ENABLED=1 and libnotif installed (pkg-config notif)"

// The publisher's functions: each needs cgo and libnotif.
const (
	Open                 = needsCgo
	OpenFD               = needsCgo
	Version              = needsCgo
	WithMode             = needsCgo
	WithGroup            = needsCgo
	WithSubscriberBuffer = needsCgo
	WithMemoryLimit      = needsCgo
	WithReplayBytes      = needsCgo
	WithMaxMessage       = needsCgo
	WithMaxSubscribers   = needsCgo
	WithMaxPerUID        = needsCgo
	WithBacklog          = needsCgo
	WithLinger           = needsCgo
	WithSlowPolicy       = needsCgo
	WithAllowUID         = needsCgo
	WithAllowGID         = needsCgo
)

// Publisher needs cgo and libnotif (build with CGO_ENABLED=1).
type Publisher struct{ _ publisherNeedsCgo }

// Option needs cgo and libnotif (build with CGO_ENABLED=1).
type Option publisherNeedsCgo

// SlowPolicy needs cgo and libnotif to be of use (build with CGO_ENABLED=1).
type SlowPolicy int

// The slow policies (their values in notif.h).
const (
	SlowDrop       SlowPolicy = 0
	SlowDisconnect SlowPolicy = 1
)
