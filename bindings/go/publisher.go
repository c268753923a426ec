package notif

// #include <stdlib.h>
// #include "notif.h"
import "C"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// SlowPolicy says what the publisher does with a subscriber whose buffer is full.
type SlowPolicy int

const (
	// SlowDrop drops new notifications for that subscriber until it catches up (the default).
	SlowDrop SlowPolicy = C.NOTIF_SLOW_DROP
	// SlowDisconnect closes that subscriber.
	SlowDisconnect SlowPolicy = C.NOTIF_SLOW_DISCONNECT
)

// Option configures Open. Each mirrors a notif_options_set_* setter; a value
// the library refuses makes Open fail with EINVAL (or ENOENT for an unknown
// group) and the library's message.
type Option func(*openConfig)

type openConfig struct {
	setters []func(*C.notif_options) (C.int, string)
	err     *Error
}

func (c *openConfig) add(name string, set func(*C.notif_options) C.int) {
	c.setters = append(c.setters, func(o *C.notif_options) (C.int, string) { return set(o), name })
}

func (c *openConfig) fail(format string, args ...any) {
	if c.err == nil {
		c.err = newError("open", syscall.EINVAL, fmt.Sprintf(format, args...))
	}
}

// WithMode sets the socket file's permission bits (default 0600), applied
// before any peer can connect, whatever the umask. Only the 0777 bits are
// accepted.
func WithMode(mode os.FileMode) Option {
	return func(c *openConfig) {
		if mode&^0o777 != 0 {
			c.fail("mode %v has bits outside 0777", mode)
			return
		}
		c.add("mode", func(o *C.notif_options) C.int { return C.notif_options_set_mode(o, C.uint(mode)) })
	}
}

// WithGroup sets the socket file's group, by name or decimal id.
func WithGroup(group string) Option {
	return func(c *openConfig) {
		if strings.IndexByte(group, 0) >= 0 {
			c.fail("the group name contains a NUL byte")
			return
		}
		c.add("group", func(o *C.notif_options) C.int {
			cs := C.CString(group)
			defer C.free(unsafe.Pointer(cs))
			return C.notif_options_set_group(o, cs)
		})
	}
}

func sizeOption(name string, n int, set func(*C.notif_options, C.size_t) C.int) Option {
	return func(c *openConfig) {
		if n < 0 {
			c.fail("%s must not be negative (got %d)", name, n)
			return
		}
		c.add(name, func(o *C.notif_options) C.int { return set(o, C.size_t(n)) })
	}
}

// WithSubscriberBuffer sets the bytes one subscriber may have waiting, the
// kernel's socket buffer counted in (default 4 MiB, at least 16 KiB).
func WithSubscriberBuffer(bytes int) Option {
	return sizeOption("subscriber buffer", bytes, func(o *C.notif_options, n C.size_t) C.int {
		return C.notif_options_set_subscriber_buffer(o, n)
	})
}

// WithMaxMessage sets the largest notification, in bytes of its compact line
// (default 1 MiB; at most half the subscriber buffer and half the backlog).
func WithMaxMessage(bytes int) Option {
	return sizeOption("max message", bytes, func(o *C.notif_options, n C.size_t) C.int {
		return C.notif_options_set_max_message(o, n)
	})
}

// WithMemoryLimit sets the total memory budget for all subscribers' queues
// and the replay ring (allocation overhead included; default 64 MiB, at least
// 16 KiB). When it is reached, the subscribers holding the most lose their
// queued notifications (counted in DroppedSlow) or are disconnected, per the
// slow policy. notif_options_set_memory_limit.
func WithMemoryLimit(bytes int) Option {
	return sizeOption("memory limit", bytes, func(o *C.notif_options, n C.size_t) C.int {
		return C.notif_options_set_memory_limit(o, n)
	})
}

// WithReplayBytes keeps the most recent notifications, up to bytes (allocation
// included), in a replay ring whether or not anyone is connected, so that a
// subscriber that reconnects or restarts resumes after its cursor without
// loss (see Subscription.Cursor, WithAfter) or reads them (WithReplay, the
// subscriber's option). 0 (the default): off, nothing is kept for absent subscribers.
// The ring is counted in the memory limit and must be at most half of it
// (else Open fails with EINVAL). notif_options_set_replay.
func WithReplayBytes(bytes int) Option {
	return sizeOption("replay", bytes, func(o *C.notif_options, n C.size_t) C.int {
		return C.notif_options_set_replay(o, n)
	})
}

// WithMaxSubscribers sets how many subscribers may be connected at once (default 1024).
func WithMaxSubscribers(n int) Option {
	return sizeOption("max subscribers", n, func(o *C.notif_options, n C.size_t) C.int {
		return C.notif_options_set_max_subscribers(o, n)
	})
}

// WithMaxPerUID sets how many connections one user may hold at once (default
// 64); root and the publisher's own user are not capped.
// notif_options_set_max_per_uid.
func WithMaxPerUID(n int) Option {
	return sizeOption("max per uid", n, func(o *C.notif_options, n C.size_t) C.int {
		return C.notif_options_set_max_per_uid(o, n)
	})
}

// WithBacklog sets the bytes of emitted notifications the server thread has
// not taken yet (default 16 MiB); beyond it Emit fails with EAGAIN.
func WithBacklog(bytes int) Option {
	return sizeOption("backlog", bytes, func(o *C.notif_options, n C.size_t) C.int {
		return C.notif_options_set_backlog(o, n)
	})
}

// WithLinger sets how long Close may spend flushing queued notifications
// (default 1 s; 0 closes at once). Rounded up to whole milliseconds.
func WithLinger(d time.Duration) Option {
	return func(c *openConfig) {
		ms := (d + time.Millisecond - 1) / time.Millisecond
		if d < 0 || ms > 0xFFFFFFFF {
			c.fail("linger %v is out of range", d)
			return
		}
		c.add("linger", func(o *C.notif_options) C.int { return C.notif_options_set_linger_ms(o, C.uint(ms)) })
	}
}

// WithSlowPolicy chooses what happens to a subscriber whose buffer is full.
func WithSlowPolicy(policy SlowPolicy) Option {
	return func(c *openConfig) {
		c.add("slow policy", func(o *C.notif_options) C.int { return C.notif_options_set_slow_policy(o, C.int(policy)) })
	}
}

// WithAllowUID lets processes running as uid subscribe. Repeatable. With no
// uid and no gid allowed (the default), anyone who can open the socket file
// may subscribe; otherwise a connection whose peer credentials match neither
// list is closed at accept and counted in Stats.Denied.
func WithAllowUID(uid uint32) Option {
	return func(c *openConfig) {
		c.add("allowed uid", func(o *C.notif_options) C.int { return C.notif_options_allow_uid(o, C.uint(uid)) })
	}
}

// WithAllowGID lets processes whose primary or supplementary group is gid
// subscribe. Repeatable; see WithAllowUID.
func WithAllowGID(gid uint32) Option {
	return func(c *openConfig) {
		c.add("allowed gid", func(o *C.notif_options) C.int { return C.notif_options_allow_gid(o, C.uint(gid)) })
	}
}

// Publisher is an open libnotif handle: a socket that subscribers connect to.
//
// All methods are safe for concurrent use. Unlike the C API, Close is safe
// against concurrent Emit and Stats: it waits for calls in progress, and
// calls that come after it fail with EBADF. A Publisher that becomes
// unreachable without Close is closed by a finalizer (do not rely on it: the
// socket file stays until the garbage collector gets to it).
type Publisher struct {
	// mu guards h: Emit and Stats hold it for reading during their C call,
	// Close takes it for writing to take the handle away.
	mu      sync.RWMutex
	h       *C.notif_handle
	closeMu sync.Mutex // serialises Close, so a second Close returns once the first is done
	path    string
}

// lastError reads the calling thread's notif_last_error. The caller must have
// locked the goroutine to its OS thread since the failing call.
func lastError() string {
	return C.GoString(C.notif_last_error())
}

// Open binds a Unix stream socket at path (a file path, at most 107 bytes, or
// "@name" for a Linux abstract socket) and starts the publisher's server
// thread. A stale socket file is replaced; anything else at the path is left
// alone.
//
// Errors (an *Error wrapping the errno): EINVAL (empty path, bad option),
// ENAMETOOLONG, ENOENT (missing directory, unknown group), EEXIST (something
// that is not a socket is at the path), EADDRINUSE (a live publisher is
// there), EACCES, EMFILE.
func Open(path string, opts ...Option) (*Publisher, error) {
	if strings.IndexByte(path, 0) >= 0 {
		return nil, newError("open", syscall.EINVAL, fmt.Sprintf("the path %q contains a NUL byte", path))
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return open(path, opts, func(o *C.notif_options) (*C.notif_handle, error) {
		h, err := C.notif_open_with(cpath, o)
		return h, err
	})
}

// OpenFD serves a Unix stream socket that is already bound and listening (one
// systemd passed with LISTEN_FDS, say). WithMode and WithGroup do not apply.
// On success the publisher owns fd (Close closes it, and never removes the
// socket file); on failure fd stays the caller's. Errors: EBADF (not a
// descriptor), EINVAL (not a listening Unix stream socket, bad option).
func OpenFD(fd int, opts ...Option) (*Publisher, error) {
	if fd < 0 || fd > math.MaxInt32 {
		return nil, newError("open", syscall.EBADF, fmt.Sprintf("%d is not a descriptor", fd))
	}
	return open(fmt.Sprintf("fd %d", fd), opts, func(o *C.notif_options) (*C.notif_handle, error) {
		h, err := C.notif_open_fd(C.int(fd), o)
		return h, err
	})
}

func open(name string, opts []Option, call func(*C.notif_options) (*C.notif_handle, error)) (*Publisher, error) {
	var cfg openConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	if cfg.err != nil {
		return nil, cfg.err
	}

	// notif_last_error is per thread: stay on this one from the failing call
	// to reading the message.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	var copts *C.notif_options
	if len(cfg.setters) > 0 {
		copts = C.notif_options_new()
		if copts == nil {
			return nil, newError("open", syscall.ENOMEM, "notif_options_new failed")
		}
		defer C.notif_options_free(copts)
		for _, set := range cfg.setters {
			if rc, what := set(copts); rc < 0 {
				msg := lastError()
				if msg == "" {
					msg = "invalid " + what
				}
				return nil, newError("open", syscall.Errno(-rc), msg)
			}
		}
	}
	h, err := call(copts)
	if h == nil {
		errno, ok := err.(syscall.Errno)
		if !ok || errno == 0 {
			errno = syscall.EIO
		}
		return nil, newError("open", errno, lastError())
	}
	p := &Publisher{h: h, path: name}
	runtime.SetFinalizer(p, (*Publisher).finalize)
	return p, nil
}

func (p *Publisher) finalize() { _ = p.Close() }

// Path is the path Open was given ("fd N" for OpenFD).
func (p *Publisher) Path() string { return p.path }

const errClosed = "the publisher is closed"

var emptyMessage byte

// Emit queues one notification for every connected subscriber: b must hold
// exactly one JSON object in UTF-8; it goes out as one compact line. The
// library copies what it needs, so b may be reused as soon as Emit returns.
// Never blocks (beyond waiting for a Close in progress).
//
// It returns the number of subscribers connected (0: nobody is listening; the
// notification is dropped without being looked at), or an *Error wrapping
// EINVAL (not exactly one JSON object, invalid UTF-8), EMSGSIZE (over the
// max message), EAGAIN (backlog full: dropped and counted) or EBADF (closed,
// or used in a child after fork).
func (p *Publisher) Emit(b []byte) (int, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.h == nil {
		return 0, newError("emit", syscall.EBADF, errClosed)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// No copy: the C side reads b during the call only. A Go pointer to memory
	// without Go pointers may be passed for the duration of a cgo call.
	data := unsafe.SliceData(b)
	if data == nil {
		// nil and empty are the same in Go: both are "an empty message", not
		// the C API's NULL-pointer argument error.
		data = &emptyMessage
	}
	rc := C.notif_emit_len(p.h, (*C.char)(unsafe.Pointer(data)), C.size_t(len(b)))
	runtime.KeepAlive(b)
	runtime.KeepAlive(p)
	if rc < 0 {
		return 0, newError("emit", syscall.Errno(-rc), lastError())
	}
	return int(rc), nil
}

// EmitValue marshals v to JSON (encoding/json, without HTML escaping) and
// emits it. v must marshal to a JSON object (a struct or a map): anything
// else is refused with EINVAL.
func (p *Publisher) EmitValue(v any) (int, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return 0, fmt.Errorf("notif: emit: marshalling %T: %w", v, err)
	}
	return p.Emit(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}))
}

// Stats returns the publisher's counters, or an *Error wrapping EBADF after Close.
func (p *Publisher) Stats() (Stats, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.h == nil {
		return Stats{}, newError("stats", syscall.EBADF, errClosed)
	}
	var cs C.notif_stats
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rc := C.notif_get_stats(p.h, &cs, C.sizeof_notif_stats)
	runtime.KeepAlive(p)
	if rc < 0 {
		return Stats{}, newError("stats", syscall.Errno(-rc), lastError())
	}
	return Stats{
		Subscribers:         uint64(cs.subscribers),
		Accepted:            uint64(cs.accepted),
		Emitted:             uint64(cs.emitted),
		Delivered:           uint64(cs.delivered),
		DroppedNoSubscriber: uint64(cs.dropped_no_subscriber),
		DroppedSlow:         uint64(cs.dropped_slow),
		DroppedBacklog:      uint64(cs.dropped_backlog),
		Rejected:            uint64(cs.rejected),
		BytesSent:           uint64(cs.bytes_sent),
		Disconnected:        uint64(cs.disconnected),
		DroppedClosed:       uint64(cs.dropped_closed),
		Refused:             uint64(cs.refused),
		Fanout:              uint64(cs.fanout),
		Filtered:            uint64(cs.filtered),
		BadRequests:         uint64(cs.bad_requests),
		StatsRequests:       uint64(cs.stats_requests),
		Denied:              uint64(cs.denied),
		Replayed:            uint64(cs.replayed),
		ReplayBytes:         uint64(cs.replay_bytes),
		ReplayMessages:      uint64(cs.replay_messages),
		ReplayOldest:        uint64(cs.replay_oldest),
		NextSeq:             uint64(cs.next_seq),
		Writes:              uint64(cs.writes),
		Wakeups:             uint64(cs.wakeups),
		WrittenThrough:      uint64(cs.written_through),
		DisconnectedCostly:  uint64(cs.disconnected_costly),
		KeptNoSubscriber:    uint64(cs.kept_no_subscriber),
	}, nil
}

// Close removes the socket file (if it is still this publisher's), flushes
// queued notifications to subscribers for up to the linger time, and frees
// the handle. It waits for Emit and Stats calls in progress; later calls fail
// with EBADF. Closing again is a no-op; a concurrent second Close returns
// once the first is done. It always returns nil.
func (p *Publisher) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	p.mu.Lock()
	h := p.h
	p.h = nil
	p.mu.Unlock()
	if h == nil {
		return nil
	}
	runtime.SetFinalizer(p, nil)
	// Outside mu: Emit and Stats fail fast with EBADF while the linger runs.
	C.notif_close(h)
	runtime.KeepAlive(p)
	return nil
}

// Version is the library's version, "MAJOR.MINOR.PATCH".
func Version() string {
	return C.GoString(C.notif_version())
}
