package notif

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// Connecting and reconnecting: the reading goroutine's loop, one connection
// at a time, with a back-off from firstBackoff doubling to maxBackoff.

const (
	firstBackoff = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
)

// run is the reading goroutine: one connection at a time, reconnecting.
func (s *Subscription) run(conn net.Conn, outcome dialOutcome, dialErr error) {
	backoff := firstBackoff
	everConnected := conn != nil
	var reported string // the ConnectFailed last reported: one event per failure, not per attempt
	retrying := false   // connecting again without cursors: not a reconnection
	announce := false   // the new connection is a reconnection: say so once its request is out
	// After a failed attempt: report it (connectFailed), then wait the
	// back-off. False: the subscription has ended.
	retryAfter := func(outcome dialOutcome, err error) bool {
		if stop, why := s.connectFailed(outcome, err, &reported); stop {
			s.finish(why)
			return false
		}
		return s.backOff(&backoff)
	}
	if conn == nil && !retryAfter(outcome, dialErr) {
		return
	}
	for {
		if conn == nil {
			c, outcome, err := s.dial()
			if err != nil {
				// Absent (quietly), or a failure reported as ConnectFailed:
				// either way, try again after the back-off.
				if !retryAfter(outcome, err) {
					return
				}
				continue
			}
			if !s.setConn(c) {
				s.finish(nil)
				return
			}
			conn = c
			reported = ""
			announce = everConnected && !retrying
			everConnected = true
			retrying = false
		}
		established := time.Now()
		worked, err := s.serve(conn, announce)
		announce = false
		conn.Close()
		conn = nil
		if s.isStopped() {
			s.finish(nil)
			return
		}
		if err == errRetryWithoutCursors {
			// Not a lost connection: the same one again, plainer.
			retrying = true
			continue
		}
		var perm *permanentError
		if errors.As(err, &perm) {
			s.finish(perm.err)
			return
		}
		if !s.reconnect {
			s.finish(err)
			return
		}
		// A connection that delivered or lasted worked: the publisher is
		// probably restarting, try again at once. One that hangs up at once
		// (over the subscriber limit, say) gets the back-off.
		if worked || time.Since(established) >= time.Second {
			backoff = firstBackoff
			continue
		}
		if !s.backOff(&backoff) {
			return
		}
	}
}

// backOff waits *backoff, then doubles it (up to maxBackoff). False: the
// subscription was stopped meanwhile, and has ended (finish).
func (s *Subscription) backOff(backoff *time.Duration) bool {
	if !s.sleep(*backoff) {
		s.finish(nil)
		return false
	}
	*backoff = min(*backoff*2, maxBackoff)
	return true
}

// sleep waits d, or less if the subscription is stopped; it reports whether to go on.
func (s *Subscription) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

func (s *Subscription) isStopped() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// permanentError ends the subscription even with reconnection (EPROTO).
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }

func (s *Subscription) dial() (net.Conn, dialOutcome, error) {
	// A Unix connect(2) never waits here (a full listen backlog is EAGAIN at
	// once, reported); the timeout only makes the bound explicit.
	conn, err := net.DialTimeout("unix", s.path, 5*time.Second)
	if err != nil {
		var errno syscall.Errno
		if !errors.As(err, &errno) {
			errno = syscall.EIO
		}
		outcome, err := connectFailure(s.path, errno, errnoText(err))
		return nil, outcome, err
	}
	return conn, dialConnected, nil
}

func errnoText(err error) string {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err.Error()
	}
	return err.Error()
}

// setConn records the current connection, or closes it at once if the
// subscription was stopped meanwhile. It reports whether to go on.
func (s *Subscription) setConn(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		if conn != nil {
			conn.Close()
		}
		return false
	}
	s.conn = conn
	return true
}
