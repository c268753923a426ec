package notif

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// What a connection attempt found.
type dialOutcome int

const (
	dialConnected dialOutcome = iota
	// dialAbsent: the publisher is not running (no socket yet in an existing
	// directory, a socket file nobody listens on, an abstract name nobody
	// holds): wait for it quietly.
	dialAbsent
	// dialBusy: a full listen backlog (a stuck publisher, or a socket that
	// never accepts): reported as ConnectFailed, and tried again whatever
	// WithGiveUpOnConnectFailure says.
	dialBusy
	// dialWrongPath: the path cannot become a publisher's by waiting for one
	// to start: not a socket, its directory missing, a component not a
	// directory. Reported as ConnectFailed.
	dialWrongPath
	// dialFailed: anything else (EACCES...): Subscribe returns it at once;
	// later, while reconnecting, it is reported as ConnectFailed.
	dialFailed
)

// connectFailure explains a failed connect(2) to path: what it means for the
// subscription, and an *Error that names the path and what to check.
func connectFailure(path string, errno syscall.Errno, detail string) (dialOutcome, *Error) {
	fail := func(outcome dialOutcome, errno syscall.Errno, format string, args ...any) (dialOutcome, *Error) {
		return outcome, newPlainError("subscribe", errno, "cannot connect to "+path+": "+fmt.Sprintf(format, args...))
	}
	abstract := strings.HasPrefix(path, "@")
	switch errno {
	case syscall.ENOENT:
		if !abstract {
			dir := filepath.Dir(path)
			info, err := os.Stat(dir)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return fail(dialWrongPath, syscall.ENOENT, "its directory %s does not exist (check the path)", dir)
			case err == nil && !info.IsDir():
				return fail(dialWrongPath, syscall.ENOTDIR, "%s is not a directory (check the path)", dir)
			}
		}
		return fail(dialAbsent, syscall.ENOENT, "no socket there (is the publisher running?)")
	case syscall.ENOTDIR:
		return fail(dialWrongPath, syscall.ENOTDIR, "a component of the path is not a directory (check the path)")
	case syscall.ECONNREFUSED:
		if !abstract {
			if info, err := os.Stat(path); err == nil && info.Mode().Type() != fs.ModeSocket {
				return fail(dialWrongPath, syscall.ENOTSOCK, "it is %s, not a socket (check the path)", fileKind(info.Mode()))
			}
			return fail(dialAbsent, syscall.ECONNREFUSED,
				"nothing listens on the socket (left by a publisher that stopped?)")
		}
		return fail(dialAbsent, syscall.ECONNREFUSED, "nothing listens on that abstract name")
	case syscall.EAGAIN:
		return fail(dialBusy, syscall.EAGAIN,
			"it accepts no connection (its listen backlog is full: a stuck publisher, or not a notif publisher)")
	case syscall.EACCES, syscall.EPERM:
		return fail(dialFailed, errno,
			"permission denied (run as the publisher's user, or be in the socket's group)")
	}
	return dialFailed, newError("subscribe", errno, "cannot connect to "+path+": "+detail)
}

func fileKind(mode fs.FileMode) string {
	switch {
	case mode.IsRegular():
		return "a regular file"
	case mode.IsDir():
		return "a directory"
	case mode&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case mode&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// connectFailed handles a failed connection attempt of the reading goroutine:
// a publisher that is absent is waited for quietly; any other failure is
// delivered as a ConnectFailed event (once while it stays the same: reported
// holds the last one) and, with WithGiveUpOnConnectFailure, ends the
// subscription. It reports whether to stop, and why.
func (s *Subscription) connectFailed(outcome dialOutcome, err error, reported *string) (bool, error) {
	if outcome == dialAbsent {
		*reported = ""
		return false, nil
	}
	text := err.Error()
	if text != *reported {
		*reported = text
		if !s.send(Event{Kind: ConnectFailed, Err: err}) {
			return true, nil
		}
	}
	if s.giveUp && outcome != dialBusy {
		return true, err
	}
	return false, nil
}
