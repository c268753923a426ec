//! The opaque, ABI-stable options object and its setters.

use std::ffi::{c_char, c_int, c_uint};
use std::time::Duration;

use super::arguments::{c_str, give, object_mut, release};
use super::panic_guard::entry;
use crate::{Error, Options, SlowPolicy};

/// Drop new messages for a subscriber while its buffer is full (the default).
pub const NOTIF_SLOW_DROP: c_int = 0;
/// Close a subscriber whose buffer is full: it gets nothing new, and the
/// connection is closed once what was queued for it is written (at most the
/// linger time).
pub const NOTIF_SLOW_DISCONNECT: c_int = 1;

/// Options for notif_open_with. Opaque: create with notif_options_new, free
/// with notif_options_free. Not thread-safe: set it up from one thread.
#[allow(non_camel_case_types)]
pub struct notif_options {
    options: Options,
}

impl notif_options {
    pub(crate) fn get(&self) -> &Options {
        &self.options
    }
}

/// Runs a setter on the options behind `opts`; 0 or a negative errno. A
/// refused value leaves the object as it was (the core's setters check
/// before they change anything).
unsafe fn set(
    opts: *mut notif_options,
    apply: impl FnOnce(&mut Options) -> Result<(), Error>,
) -> c_int {
    entry(|| {
        apply(&mut unsafe { object_mut(opts, "opts") }?.options)?;
        Ok(0)
    })
}

/// A new options object with every default: mode 0600, the process's group,
/// subscriber buffer 4 MiB, max message 1 MiB, 1024 subscribers, linger 1000 ms,
/// NOTIF_SLOW_DROP, backlog 16 MiB. The caller owns it (notif_options_free).
/// Returns NULL only if memory is exhausted.
#[no_mangle]
pub extern "C" fn notif_options_new() -> *mut notif_options {
    entry(|| {
        Ok(give(notif_options {
            options: Options::default(),
        }))
    })
}

/// Frees an options object. NULL is a no-op.
#[no_mangle]
pub unsafe extern "C" fn notif_options_free(opts: *mut notif_options) {
    entry(|| {
        // SAFETY: from notif_options_new, freed once (documented).
        unsafe { release(opts) };
        Ok(())
    })
}

/// Permission bits of the socket file (default 0600), set before the socket
/// accepts connections, whatever the umask. Returns 0, or -EINVAL for bits
/// outside 0777 or NULL opts. Ignored for abstract sockets, which have no file.
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_mode(opts: *mut notif_options, mode: c_uint) -> c_int {
    set(opts, |o| o.set_mode(mode))
}

/// Group owning the socket file, by name or decimal id, resolved now.
/// Returns 0, -EINVAL (NULL or empty, or an id over 4294967294: (gid_t)-1
/// means "no change" to chown and is not a group), -ENOENT (no such group). The calling
/// process must be allowed to give the file to that group (EPERM at open otherwise).
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_group(
    opts: *mut notif_options,
    group: *const c_char,
) -> c_int {
    set(opts, |o| o.set_group(unsafe { c_str(group, "group") }?))
}

/// Bytes one subscriber may have waiting, the kernel's socket buffer counted
/// in (default 4 MiB, at least 16 KiB). It must be at least twice max_message:
/// when max_message was set (notif_options_set_max_message) and is more than
/// half of `bytes`, this returns -EINVAL and changes nothing; when max_message
/// was not set, its default (1 MiB) is lowered to half of `bytes` if that is
/// less. Returns 0 or -EINVAL (under 16 KiB, under twice a max_message set,
/// NULL opts).
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_subscriber_buffer(
    opts: *mut notif_options,
    bytes: usize,
) -> c_int {
    set(opts, |o| o.set_subscriber_buffer(bytes))
}

/// Total memory, in bytes, that every subscriber's queue together may hold
/// (allocation overhead included; default 64 MiB, at least 16 KiB). When it is
/// reached, the subscribers holding the most lose their queued notifications
/// (counted in dropped_slow) or are disconnected, per the slow policy.
/// Returns 0 or -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_memory_limit(
    opts: *mut notif_options,
    bytes: usize,
) -> c_int {
    set(opts, |o| o.set_memory_limit(bytes))
}

/// Keeps the most recent notifications, up to `bytes` (allocation included),
/// whether or not anyone is connected, so that a subscriber that reconnects or
/// restarts resumes without loss (the request's `after`) or reads them
/// (`replay`); see docs/subscription-protocol.md. 0 (the default): off, nothing
/// is kept for absent subscribers. The ring is counted in the memory limit and
/// must be at most half of it (checked at open). Returns 0 or -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_replay(opts: *mut notif_options, bytes: usize) -> c_int {
    set(opts, |o| o.set_replay(bytes))
}

/// Largest message, in bytes of its compact form (default 1 MiB; 1 to 64 MiB).
/// It must be at most half the subscriber buffer and half the backlog: when
/// either was set and is less than twice `bytes`, this returns -EINVAL and
/// changes nothing; against a buffer left at its default (4 MiB subscriber
/// buffer, 16 MiB backlog) it is checked at notif_open_with (-EINVAL there),
/// so the buffers may be raised after it. Returns 0 or -EINVAL (0, over
/// 64 MiB, over half a buffer set, NULL opts).
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_max_message(
    opts: *mut notif_options,
    bytes: usize,
) -> c_int {
    set(opts, |o| o.set_max_message(bytes))
}

/// Most subscribers at once (default 1024); further connections are accepted
/// and closed at once, and counted. Returns 0 or -EINVAL (0 or over 2^20).
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_max_subscribers(
    opts: *mut notif_options,
    count: usize,
) -> c_int {
    set(opts, |o| o.set_max_subscribers(count))
}

/// Most connections one user may hold at once, idle or not (default 64);
/// further ones from that user are told so (reason "full") and closed, and
/// counted in refused. Root and the publisher's own user are not capped.
/// Returns 0 or -EINVAL (0 or over 2^20).
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_max_per_uid(
    opts: *mut notif_options,
    count: usize,
) -> c_int {
    set(opts, |o| o.set_max_connections_per_uid(count))
}

/// How long notif_close may spend flushing queued messages (default 1000 ms;
/// 0 closes at once). Returns 0 or -EINVAL (NULL opts).
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_linger_ms(
    opts: *mut notif_options,
    ms: c_uint,
) -> c_int {
    set(opts, |o| {
        o.set_linger(Duration::from_millis(ms.into()));
        Ok(())
    })
}

/// NOTIF_SLOW_DROP (default) or NOTIF_SLOW_DISCONNECT. Returns 0 or -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_slow_policy(
    opts: *mut notif_options,
    policy: c_int,
) -> c_int {
    set(opts, |o| {
        let policy = match policy {
            NOTIF_SLOW_DROP => SlowPolicy::Drop,
            NOTIF_SLOW_DISCONNECT => SlowPolicy::Disconnect,
            other => {
                return Err(Error::new(
                    libc::EINVAL,
                    format!("slow policy {other} is neither NOTIF_SLOW_DROP (0) nor NOTIF_SLOW_DISCONNECT (1)"),
                ))
            }
        };
        o.set_slow_policy(policy);
        Ok(())
    })
}

/// Bytes of emitted messages the server thread has not yet taken (default
/// 16 MiB, at least 16 KiB); beyond it notif_emit returns -EAGAIN. Like the
/// subscriber buffer, it must be at least twice max_message (see
/// notif_options_set_subscriber_buffer: the same rules apply).
/// Returns 0 or -EINVAL.
#[no_mangle]
pub unsafe extern "C" fn notif_options_set_backlog(
    opts: *mut notif_options,
    bytes: usize,
) -> c_int {
    set(opts, |o| o.set_backlog(bytes))
}

/// Lets processes running as `uid` subscribe. Repeatable. With no uid and no
/// gid allowed (the default), anyone who can open the socket file may
/// subscribe; otherwise a connection whose peer credentials (SO_PEERCRED)
/// match neither list is closed at accept and counted in `denied`.
/// Returns 0 or -EINVAL (NULL opts).
#[no_mangle]
pub unsafe extern "C" fn notif_options_allow_uid(opts: *mut notif_options, uid: c_uint) -> c_int {
    set(opts, |o| {
        o.allow_uid(uid);
        Ok(())
    })
}

/// Lets processes whose primary or supplementary group is `gid` subscribe.
/// Repeatable; see notif_options_allow_uid. Returns 0 or -EINVAL (NULL opts).
#[no_mangle]
pub unsafe extern "C" fn notif_options_allow_gid(opts: *mut notif_options, gid: c_uint) -> c_int {
    set(opts, |o| {
        o.allow_gid(gid);
        Ok(())
    })
}
