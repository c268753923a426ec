package notif

import (
	"strings"
	"syscall"
)

// Error is what every function of this package returns on failure: the errno
// the library (or the socket layer) reported, and the library's message.
//
// It unwraps to its syscall.Errno, so errors.Is(err, syscall.EINVAL) and
// errors.Is(err, fs.ErrNotExist) work, and errors.As(err, &notifErr) gives the
// details.
type Error struct {
	Op      string        // "open", "emit", "stats", "subscribe", ...
	Errno   syscall.Errno // ENOENT, EINVAL, EMSGSIZE, EBADF, ...
	Message string        // the library's explanation (notif_last_error), or ours

	// plain: Message says it all; Error() adds no errno text (a publisher
	// closing the connection normally is EPIPE, but nothing is "broken").
	plain bool
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("notif: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Message != "" {
		b.WriteString(e.Message)
		// The library's messages usually say what went wrong in words, not
		// which errno it is: add the errno's text for grep-ability, unless
		// the message already says it.
		if text := e.Errno.Error(); !e.plain && e.Errno != 0 && !strings.Contains(e.Message, text) {
			b.WriteString(" (")
			b.WriteString(text)
			b.WriteString(")")
		}
	} else {
		b.WriteString(e.Errno.Error())
	}
	return b.String()
}

// Unwrap returns the errno.
func (e *Error) Unwrap() error { return e.Errno }

func newError(op string, errno syscall.Errno, message string) *Error {
	return &Error{Op: op, Errno: errno, Message: message}
}

// newPlainError is an error whose message needs no errno text after it.
func newPlainError(op string, errno syscall.Errno, message string) *Error {
	return &Error{Op: op, Errno: errno, Message: message, plain: true}
}
