//! notif_subscribe / notif_recv / notif_unsubscribe: the subscriber client for C.

use std::ffi::{c_char, c_int, CString};
use std::ptr;
use std::time::Duration;

use super::arguments::{c_str, give, object, object_mut, optional_c_str, out, release};
use super::panic_guard::entry;
use crate::client::subscriber::{Event, SubscribeOptions, Subscriber};
use crate::subscription::{Request, Start};
use crate::Error;

/// notif_recv: nothing arrived within the timeout.
pub const NOTIF_RECV_TIMEOUT: c_int = 0;
/// notif_recv: a notification is in *msg / *len.
pub const NOTIF_RECV_MESSAGE: c_int = 1;
/// notif_recv: the connection was lost and re-established. The subscriber
/// resumed after the last notification it returned: when the publisher (its
/// replay ring, notif_options_set_replay) still had what followed, nothing was
/// missed; what it no longer had comes next as NOTIF_RECV_DROPPED.
pub const NOTIF_RECV_RECONNECTED: c_int = 2;
/// notif_recv: the publisher reported notifications dropped for this
/// subscriber (it fell behind, or no longer had them when it resumed); the
/// running total is notif_subscriber_dropped(). When the publisher cannot say
/// how many (it restarted since, or keeps no replay ring), the total does not
/// change and notif_last_error() is not set.
pub const NOTIF_RECV_DROPPED: c_int = 3;

/// A connection to a publisher that reads notifications. Opaque: create with
/// notif_subscribe, release with notif_unsubscribe.
#[allow(non_camel_case_types)]
pub struct notif_subscriber {
    subscriber: Subscriber,
    /// What notif_subscriber_cursor returned last.
    cursor: CString,
}

fn options_from_request(json: &[u8]) -> Result<SubscribeOptions, Error> {
    let json = json.strip_suffix(b"\n").unwrap_or(json);
    match Request::parse(json) {
        Ok(Request::Subscribe {
            filter,
            markers,
            heartbeat,
            cursors: _,
            start,
        }) => Ok(SubscribeOptions {
            filter,
            markers,
            heartbeat,
            reconnect: true,
            after: match start {
                Start::After(cursor) => Some(cursor.to_string()),
                _ => None,
            },
            replay: start == Start::Replay,
        }),
        Ok(Request::Stats) => Err(Error::new(
            libc::EINVAL,
            "a stats request is not a subscription: notif_subscribe takes a subscription request",
        )),
        Err(why) => Err(Error::new(libc::EINVAL, why)),
    }
}

/// Connects to the publisher at `path` (a NUL-terminated file path, or `@name`
/// for an abstract socket) and returns a subscriber that reads its
/// notifications.
///
/// `request_json` is NULL for every notification, or a subscription request as
/// in docs/subscription-protocol.md, e.g.
/// `{"subscribe":{"event_types":["compute.*"]},"markers":true,"heartbeat_s":5}`,
/// `{"after":"5f3a9c0d12e4b7a8-1041"}` (resume after a cursor from
/// notif_subscriber_cursor) or `{"replay":true}` (everything the publisher's
/// replay ring holds first); it is only read during the call. A stats request
/// is refused. The subscriber always asks the publisher for cursors, and
/// resumes after its cursor when it reconnects.
///
/// The subscriber reconnects by itself: this succeeds even if the publisher is
/// not there yet, and notif_recv keeps trying (back-off from 100 ms to 5 s)
/// whenever the connection is lost.
///
/// Returns NULL on failure with errno set and notif_last_error() saying why:
/// EINVAL (NULL or empty path, invalid request_json), ENAMETOOLONG, or the
/// connect(2) error other than ENOENT/ECONNREFUSED (EACCES...). The caller owns
/// the subscriber and releases it with notif_unsubscribe(). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn notif_subscribe(
    path: *const c_char,
    request_json: *const c_char,
) -> *mut notif_subscriber {
    entry(|| {
        let path = unsafe { c_str(path, "path") }?;
        let options = match unsafe { optional_c_str(request_json) } {
            Some(request) => options_from_request(request)?,
            None => SubscribeOptions::default(),
        };
        Ok(give(notif_subscriber {
            subscriber: Subscriber::connect_bytes(path, options)?,
            cursor: CString::default(),
        }))
    })
}

/// Waits up to `timeout_ms` milliseconds (negative: forever; 0: only what is
/// already available) for the next event on `s`.
///
/// Returns NOTIF_RECV_MESSAGE (1) with a notification in `*msg`, `*len` bytes
/// without the newline; the text is also NUL-terminated (`*len` excludes the
/// NUL). It belongs to the subscriber and stays valid until the next call on
/// `s`. Otherwise `*msg` is set to NULL and `*len` to 0, and the return is
/// NOTIF_RECV_TIMEOUT (0), NOTIF_RECV_RECONNECTED (2: the connection was lost
/// and re-established, notifications were missed), NOTIF_RECV_DROPPED (3: the
/// publisher reported drops, see notif_subscriber_dropped), or a negative
/// errno: -EINVAL (NULL s, msg or len); permanent failures,
/// after which every later call returns the same error and
/// notif_subscriber_fd() returns -ENOTCONN: -EPROTO (the publisher refused
/// the request), -EACCES (the publisher's allow-lists refuse this process:
/// error reason "denied"), -EUSERS (the publisher has max_subscribers
/// already: reason "full"; try again later with a new subscriber);
/// -EMSGSIZE (a line over 64 MiB; the subscriber reconnects), or an error of
/// a reconnection attempt such as -EACCES from connect(2) on the socket file
/// (the next call tries again; notif_subscriber_fd() stays >= 0). A
/// publisher that disconnects a subscriber for being too slow or for its
/// memory budget (reasons "too_slow", "memory") is a lost connection: the
/// subscriber reconnects and returns NOTIF_RECV_RECONNECTED.
/// Control lines of the protocol (lines starting `{"notif":`) are never
/// returned as messages. Never raises SIGPIPE. Not thread-safe for one `s`:
/// one thread at a time.
#[no_mangle]
pub unsafe extern "C" fn notif_recv(
    s: *mut notif_subscriber,
    msg: *mut *const c_char,
    len: *mut usize,
    timeout_ms: c_int,
) -> c_int {
    entry(|| {
        let s = unsafe { object_mut(s, "s") }?;
        let msg = out(msg, "msg")?;
        let len = out(len, "len")?;
        // SAFETY: msg and len are writable (documented); written before
        // anything can fail, so that they never hold stale values.
        unsafe {
            msg.as_ptr().write(ptr::null());
            len.as_ptr().write(0);
        }
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        Ok(match s.subscriber.recv(timeout)? {
            Event::Notification(line) => {
                // SAFETY: as above. The byte after the line is a NUL (Event::Notification).
                unsafe {
                    msg.as_ptr().write(line.as_ptr().cast());
                    len.as_ptr().write(line.len());
                }
                NOTIF_RECV_MESSAGE
            }
            Event::Timeout => NOTIF_RECV_TIMEOUT,
            Event::Reconnected => NOTIF_RECV_RECONNECTED,
            Event::Dropped(_) | Event::DroppedUnknown => NOTIF_RECV_DROPPED,
        })
    })
}

/// The descriptor to poll for reading before calling notif_recv: the socket
/// while connected, and while waiting to reconnect a timer descriptor that
/// becomes readable when the next attempt is due. It may change after every
/// notif_recv call (re-register it with epoll). Do not read or close it.
/// notif_recv reads ahead: call it with timeout 0 until it returns 0 before
/// polling again. Returns -EINVAL for NULL, -ENOTCONN after a permanent failure
/// (notif_last_error() then still explains that failure).
#[no_mangle]
pub unsafe extern "C" fn notif_subscriber_fd(s: *mut notif_subscriber) -> c_int {
    entry(|| {
        let fd = unsafe { object(s, "s") }?.subscriber.as_raw_fd();
        // Not an error of this call: notif_last_error() keeps explaining
        // the permanent failure notif_recv reported.
        Ok(if fd < 0 { -libc::ENOTCONN } else { fd })
    })
}

/// The total number of notifications the publisher reported dropped for this
/// subscriber (requests with "markers":true). For NULL: 0, with errno EINVAL.
#[no_mangle]
pub unsafe extern "C" fn notif_subscriber_dropped(s: *const notif_subscriber) -> u64 {
    entry(|| Ok(unsafe { object(s, "s") }?.subscriber.dropped_total()))
}

/// The cursor of the last notification notif_recv returned, as a
/// NUL-terminated string (`EPOCH-SEQ`), or NULL before the first (and NULL
/// with errno EINVAL for a NULL subscriber). Valid until the next call on `s`. Pass it as
/// `{"after":"<cursor>"}` to notif_subscribe to resume after it, from this or
/// another process. Not thread-safe with other calls on `s`.
#[no_mangle]
pub unsafe extern "C" fn notif_subscriber_cursor(s: *mut notif_subscriber) -> *const c_char {
    entry(|| {
        let s = unsafe { object_mut(s, "s") }?;
        Ok(match s.subscriber.cursor() {
            Some(cursor) => {
                s.cursor = CString::new(cursor).expect("a cursor has no NUL");
                s.cursor.as_ptr()
            }
            None => ptr::null(),
        })
    })
}

/// Closes the connection and frees the subscriber. NULL is a no-op. No other
/// thread may use `s` during or after this call.
#[no_mangle]
pub unsafe extern "C" fn notif_unsubscribe(s: *mut notif_subscriber) {
    entry(|| {
        // SAFETY: from notif_subscribe, released once, unused by other threads (documented).
        unsafe { release(s) };
        Ok(())
    })
}
