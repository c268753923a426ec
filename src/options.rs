//! How a publisher behaves: socket file permissions, per-subscriber limits,
//! what to do with a subscriber that does not keep up, and how long close waits.

use std::ffi::CString;
use std::time::Duration;

use crate::error::Error;

/// What happens to a subscriber whose buffer is full when a new message comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowPolicy {
    /// Drop new messages for that subscriber (and count them) until it has room again.
    #[default]
    Drop,
    /// Close the subscriber's connection (and count it); it can reconnect.
    Disconnect,
}

/// The smallest per-subscriber buffer accepted: below this, the kernel's own
/// minimum socket buffer would take all of it.
pub const MIN_SUBSCRIBER_BUFFER: usize = 16 * 1024;
/// The largest message accepted: one notification of more than 64 MiB is a bug.
pub const MAX_MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Hard ceiling on subscribers per publisher, to bound descriptors and memory.
pub const MAX_MAX_SUBSCRIBERS: usize = 1 << 20;
/// The default largest message.
pub const DEFAULT_MAX_MESSAGE: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Permission bits of the socket file, applied before listen() whatever the umask.
    pub mode: u32,
    /// Group owning the socket file; None leaves the process's group.
    pub group: Option<u32>,
    /// Bytes one subscriber may have waiting, the kernel's socket buffer counted in.
    pub subscriber_buffer: usize,
    /// Largest accepted message, in bytes of its compact line (newline excluded).
    pub max_message: usize,
    /// Connections beyond this many are accepted and closed at once.
    pub max_subscribers: usize,
    /// How long close may spend flushing queued messages to subscribers.
    pub linger: Duration,
    pub slow_policy: SlowPolicy,
    /// Bytes of messages emitted but not yet taken by the server thread; beyond
    /// it notif_emit drops the message with EAGAIN instead of waiting.
    pub backlog: usize,
    /// Users allowed to subscribe (with `allow_gids`; both empty: anyone who
    /// can open the socket). Checked at accept with SO_PEERCRED.
    pub allow_uids: Vec<u32>,
    /// Groups allowed to subscribe, primary or supplementary.
    pub allow_gids: Vec<u32>,
    /// Bytes of memory all subscribers' queues may hold together (allocation
    /// overhead included); when it is reached, the subscribers holding the most
    /// are dropped for, or disconnected, per the slow policy.
    pub memory_limit: usize,
    /// Bytes of the most recent notifications kept whether or not anyone is
    /// connected, so that a subscriber that reconnects or restarts can resume
    /// without loss (`after`) or read them (`replay`). 0 (the default): off,
    /// nothing is kept for absent subscribers. Counted in memory_limit.
    pub replay: usize,
    /// Connections one user (uid) may hold at once, idle or not; past it a
    /// connection is told so (reason `full`) and closed. Root and the
    /// publisher's own user are not counted: they could harm the host anyway.
    pub max_connections_per_uid: usize,
    /// Which of the three sizes that constrain each other (max_message at
    /// most half the subscriber buffer and half the backlog) were given to
    /// their setters. A max_message left at its default follows the buffers
    /// down; sizes chosen are checked against each other. Kept by the
    /// setters: leave it at its default (`..Options::default()`).
    pub chosen: ChosenSizes,
}

/// Which sizes the caller chose through the setters (see [`Options::chosen`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChosenSizes {
    max_message: bool,
    subscriber_buffer: bool,
    backlog: bool,
}

/// The default cap on one user's connections: plenty for one consumer's
/// tools, and 1/16 of a 1024-descriptor service limit.
pub const DEFAULT_MAX_CONNECTIONS_PER_UID: usize = 64;

/// The default total budget for subscriber queues: 16 subscribers at the
/// default 4 MiB each. Enough for a few slow consumers of a busy daemon, small
/// beside any host that runs one, and a hard ceiling on what 1,000 hostile
/// connections can cost.
pub const DEFAULT_MEMORY_LIMIT: usize = 64 * 1024 * 1024;

impl Default for Options {
    fn default() -> Options {
        Options {
            mode: 0o600,
            group: None,
            subscriber_buffer: 4 * 1024 * 1024,
            max_message: DEFAULT_MAX_MESSAGE,
            max_subscribers: 1024,
            linger: Duration::from_millis(1000),
            slow_policy: SlowPolicy::Drop,
            backlog: 16 * 1024 * 1024,
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            replay: 0,
            max_connections_per_uid: DEFAULT_MAX_CONNECTIONS_PER_UID,
            chosen: ChosenSizes::default(),
        }
    }
}

fn invalid(message: String) -> Error {
    Error::new(libc::EINVAL, message)
}

impl Options {
    pub fn set_mode(&mut self, mode: u32) -> Result<(), Error> {
        if mode & !0o777 != 0 {
            return Err(invalid(format!(
                "socket mode {mode:#o} has bits outside 0777; give permission bits only, e.g. 0660"
            )));
        }
        self.mode = mode;
        Ok(())
    }

    /// Sets the group by name or by decimal number, resolved now so a typo fails here.
    pub fn set_group(&mut self, group: &[u8]) -> Result<(), Error> {
        self.group = Some(resolve_group(group)?);
        Ok(())
    }

    pub fn set_subscriber_buffer(&mut self, bytes: usize) -> Result<(), Error> {
        if bytes < MIN_SUBSCRIBER_BUFFER {
            return Err(invalid(format!("subscriber buffer of {bytes} bytes is below the minimum of {MIN_SUBSCRIBER_BUFFER}")));
        }
        if self.max_message_chosen() {
            too_large_for(self.max_message, "subscriber buffer", bytes)?;
        }
        self.subscriber_buffer = bytes;
        self.chosen.subscriber_buffer = true;
        Ok(())
    }

    pub fn set_max_message(&mut self, bytes: usize) -> Result<(), Error> {
        if bytes == 0 || bytes > MAX_MAX_MESSAGE {
            return Err(invalid(format!(
                "max message of {bytes} bytes is outside 1..={MAX_MAX_MESSAGE}"
            )));
        }
        if self.chosen.subscriber_buffer {
            too_large_for(bytes, "subscriber buffer", self.subscriber_buffer)?;
        }
        if self.chosen.backlog {
            too_large_for(bytes, "backlog", self.backlog)?;
        }
        self.max_message = bytes;
        self.chosen.max_message = true;
        Ok(())
    }

    pub fn set_max_subscribers(&mut self, count: usize) -> Result<(), Error> {
        if count == 0 || count > MAX_MAX_SUBSCRIBERS {
            return Err(invalid(format!(
                "max subscribers {count} is outside 1..={MAX_MAX_SUBSCRIBERS}"
            )));
        }
        self.max_subscribers = count;
        Ok(())
    }

    /// Connections one user other than root and the publisher's own may hold at once.
    pub fn set_max_connections_per_uid(&mut self, count: usize) -> Result<(), Error> {
        if count == 0 || count > MAX_MAX_SUBSCRIBERS {
            return Err(invalid(format!(
                "max connections per uid {count} is outside 1..={MAX_MAX_SUBSCRIBERS}"
            )));
        }
        self.max_connections_per_uid = count;
        Ok(())
    }

    pub fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
    }

    pub fn set_slow_policy(&mut self, policy: SlowPolicy) {
        self.slow_policy = policy;
    }

    pub fn set_backlog(&mut self, bytes: usize) -> Result<(), Error> {
        if bytes < MIN_SUBSCRIBER_BUFFER {
            return Err(invalid(format!(
                "backlog of {bytes} bytes is below the minimum of {MIN_SUBSCRIBER_BUFFER}"
            )));
        }
        if self.max_message_chosen() {
            too_large_for(self.max_message, "backlog", bytes)?;
        }
        self.backlog = bytes;
        self.chosen.backlog = true;
        Ok(())
    }

    /// The total budget for every subscriber's queue together.
    pub fn set_memory_limit(&mut self, bytes: usize) -> Result<(), Error> {
        if bytes < MIN_SUBSCRIBER_BUFFER {
            return Err(invalid(format!(
                "memory limit of {bytes} bytes is below the minimum of {MIN_SUBSCRIBER_BUFFER}"
            )));
        }
        self.memory_limit = bytes;
        Ok(())
    }

    /// The replay ring's size in bytes (0: off). At open it must be at most
    /// half the memory limit, which it is counted in.
    pub fn set_replay(&mut self, bytes: usize) -> Result<(), Error> {
        if bytes > isize::MAX as usize {
            return Err(invalid(format!(
                "replay ring of {bytes} bytes is too large"
            )));
        }
        self.replay = bytes;
        Ok(())
    }

    /// Lets processes running as `uid` subscribe; repeatable.
    pub fn allow_uid(&mut self, uid: u32) {
        if !self.allow_uids.contains(&uid) {
            self.allow_uids.push(uid);
        }
    }

    /// Lets processes in group `gid` (primary or supplementary) subscribe; repeatable.
    pub fn allow_gid(&mut self, gid: u32) {
        if !self.allow_gids.contains(&gid) {
            self.allow_gids.push(gid);
        }
    }

    /// Whether max_message was chosen: given to its setter, or set directly
    /// to another value than the default.
    fn max_message_chosen(&self) -> bool {
        self.chosen.max_message || self.max_message != DEFAULT_MAX_MESSAGE
    }

    /// The options open uses: every option checked (fields can be set
    /// directly, bypassing the setters) and against each other, and a
    /// max_message left at its default lowered to what the buffers carry.
    pub(crate) fn resolved(&self) -> Result<Options, Error> {
        // Each alone (the sizes against each other below).
        let fresh = Options::default;
        fresh().set_mode(self.mode)?;
        fresh().set_subscriber_buffer(self.subscriber_buffer)?;
        fresh().set_max_message(self.max_message)?;
        fresh().set_max_subscribers(self.max_subscribers)?;
        fresh().set_max_connections_per_uid(self.max_connections_per_uid)?;
        fresh().set_backlog(self.backlog)?;
        fresh().set_memory_limit(self.memory_limit)?;
        fresh().set_replay(self.replay)?;
        if self.replay > self.memory_limit / 2 {
            return Err(invalid(format!(
                "the replay ring ({} bytes) is more than half the memory limit ({} bytes), which it is counted in: lower replay or raise memory_limit",
                self.replay, self.memory_limit
            )));
        }
        let mut resolved = self.clone();
        // A message must fit in the user-space half of a subscriber's buffer
        // (the kernel holds the other half) and in the backlog, or it could
        // never be delivered to anyone.
        let ceiling = (self.subscriber_buffer / 2).min(self.backlog / 2);
        if !self.max_message_chosen() {
            resolved.max_message = DEFAULT_MAX_MESSAGE.min(ceiling).max(1);
        } else if self.max_message > ceiling {
            return Err(invalid(format!(
                "max message ({} bytes) is more than half the subscriber buffer ({}) or the backlog ({}): such a message could never be delivered; lower max_message or raise the buffers",
                self.max_message, self.subscriber_buffer, self.backlog
            )));
        }
        Ok(resolved)
    }
}

/// A max_message of `max_message` bytes against a buffer of `bytes` chosen
/// by the caller: it must be at most half of it.
fn too_large_for(max_message: usize, name: &str, bytes: usize) -> Result<(), Error> {
    if max_message > bytes / 2 {
        return Err(invalid(format!(
            "max_message ({max_message} bytes) is more than half the {name} ({bytes} bytes): such a message could never be delivered; the {name} must be at least twice max_message"
        )));
    }
    Ok(())
}

/// Resolves a group name (or a decimal group id) to a gid.
pub fn resolve_group(group: &[u8]) -> Result<u32, Error> {
    if group.is_empty() {
        return Err(invalid("empty group name".into()));
    }
    if group.iter().all(u8::is_ascii_digit) {
        // (gid_t)-1 is not a group: chown(2) reads it as "leave the group
        // unchanged", so accepting it would silently ignore the option.
        return std::str::from_utf8(group)
            .ok()
            .and_then(|digits| digits.parse::<u32>().ok())
            .filter(|&gid| gid != u32::MAX)
            .ok_or_else(|| {
                invalid(format!(
                    "group id {} is out of range (0 to {})",
                    String::from_utf8_lossy(group),
                    u32::MAX - 1
                ))
            });
    }
    let name = CString::new(group).map_err(|_| invalid("group name contains a NUL byte".into()))?;
    let mut buffer = vec![0u8; 4096];
    loop {
        // SAFETY: zeroed is a valid bit pattern for the plain C struct `group`.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer refers to live memory of the stated size.
        let rc = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buffer.len() < (1 << 20) {
            buffer.resize(buffer.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(Error::os(
                format!("looking up group {:?}", name),
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        if found.is_null() {
            return Err(Error::new(
                libc::ENOENT,
                format!(
                    "no group named {:?} on this system (see getent group)",
                    name
                ),
            ));
        }
        return Ok(entry.gr_gid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_max_message_follows_the_buffers_down() {
        let mut o = Options::default();
        o.set_subscriber_buffer(256 * 1024).unwrap();
        assert_eq!(o.resolved().unwrap().max_message, 128 * 1024);
        o.set_backlog(64 * 1024).unwrap();
        assert_eq!(o.resolved().unwrap().max_message, 32 * 1024);
        // Buffers large enough leave the default alone.
        let mut o = Options::default();
        o.set_subscriber_buffer(64 << 20).unwrap();
        assert_eq!(o.resolved().unwrap().max_message, DEFAULT_MAX_MESSAGE);
    }

    #[test]
    fn sizes_chosen_are_checked_by_the_second_setter_and_a_refusal_changes_nothing() {
        let mut o = Options::default();
        o.set_subscriber_buffer(64 * 1024).unwrap();
        let err = o.set_max_message(32 * 1024 + 1).unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        assert!(err.message().contains("subscriber buffer"), "{err}");
        assert_eq!(o.max_message, DEFAULT_MAX_MESSAGE);
        o.set_max_message(32 * 1024).unwrap();
        let before = o.clone();
        assert!(o
            .set_backlog(64 * 1024 - 1)
            .unwrap_err()
            .message()
            .contains("backlog"));
        assert!(o.set_subscriber_buffer(64 * 1024 - 1).is_err());
        assert_eq!(o, before);
        assert_eq!(o.resolved().unwrap().max_message, 32 * 1024);
    }

    #[test]
    fn a_max_message_against_a_default_buffer_is_checked_at_open_so_buffers_may_be_raised_after() {
        let mut o = Options::default();
        o.set_max_message(64 << 20).unwrap(); // over half the default 4 MiB buffer
        assert!(o.resolved().unwrap_err().message().contains("half"));
        o.set_subscriber_buffer(128 << 20).unwrap();
        o.set_backlog(128 << 20).unwrap();
        assert_eq!(o.resolved().unwrap().max_message, 64 << 20);
    }

    #[test]
    fn a_max_message_set_directly_counts_as_chosen() {
        let o = Options {
            max_message: 3 << 20,
            ..Options::default()
        };
        assert!(o.resolved().is_err(), "3 MiB is over half the 4 MiB buffer");
        let o = Options {
            max_message: 1000,
            subscriber_buffer: 64 * 1024,
            ..Options::default()
        };
        assert_eq!(o.resolved().unwrap().max_message, 1000);
    }
}
