//! Who may hold a connection, and how many: the budget of descriptors.
//!
//! Every connection costs the host's process one descriptor, whether the
//! peer ever speaks or reads. So two limits are checked as soon as a
//! connection is accepted, before anything else is done for it:
//! - a reserve of descriptors left to the host: a connection is refused
//!   when the descriptor accept gave it is numbered within [`reserve`] of the
//!   process's RLIMIT_NOFILE (the kernel hands out the lowest free number,
//!   so every lower one is in use: fewer than the reserve are left). The
//!   limit is read at open and again before refusing, so a host that raises
//!   it is followed;
//! - a cap per user on connections held at once (`max_connections_per_uid`),
//!   so that one local user cannot take the descriptors every other user's
//!   subscribers need. Root and the publisher's own user are not capped
//!   (they could harm the host anyway); they are the trusted peers.
//!
//! A refused connection is told why (reason `full`) and closed at once.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use super::*;

/// Descriptors kept free for the host: an eighth of its limit, at least 32
/// and at most 4096.
pub(crate) fn reserve(limit: u64) -> u64 {
    (limit / 8).clamp(32, 4096)
}

/// The process's soft RLIMIT_NOFILE (None when unlimited or unknown).
fn descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: writes one rlimit into a live one.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur == libc::RLIM_INFINITY
    {
        return None;
    }
    Some(limit.rlim_cur)
}

#[derive(Debug)]
pub(crate) struct Admission {
    /// Connections held now per untrusted user.
    per_uid: HashMap<u32, usize>,
    max_per_uid: usize,
    own_uid: u32,
    /// RLIMIT_NOFILE as last read.
    limit: Option<u64>,
}

impl Admission {
    pub(crate) fn new(max_per_uid: usize, own_uid: u32) -> Admission {
        Admission {
            per_uid: HashMap::new(),
            max_per_uid,
            own_uid,
            limit: descriptor_limit(),
        }
    }

    /// Root and the publisher's own user.
    pub(crate) fn is_trusted(&self, uid: Option<u32>) -> bool {
        uid.is_some_and(|uid| uid == 0 || uid == self.own_uid)
    }

    /// Decides on a connection just accepted as descriptor `fd` from `uid`:
    /// Ok counts it (release it with `release`), Err says why it is refused.
    pub(crate) fn admit(&mut self, fd: RawFd, uid: Option<u32>) -> Result<(), String> {
        if let Some(limit) = self.short_of_descriptors(fd) {
            return Err(format!(
                "the publishing process is short of file descriptors (this connection got number {fd} of its limit of {limit}, and {} are kept free for the host): try again later",
                reserve(limit)
            ));
        }
        if self.is_trusted(uid) {
            return Ok(());
        }
        // Unknown credentials (never on Linux) share one count.
        let key = uid.unwrap_or(u32::MAX);
        let held = self.per_uid.entry(key).or_insert(0);
        if *held >= self.max_per_uid {
            let who = uid.map_or("this peer's user".to_string(), |uid| format!("uid {uid}"));
            return Err(format!(
                "{who} already holds {} connections to this publisher, the most one user may (max_connections_per_uid); close one and try again",
                self.max_per_uid
            ));
        }
        *held += 1;
        Ok(())
    }

    /// A connection `admit` counted is gone.
    pub(crate) fn release(&mut self, uid: Option<u32>) {
        if self.is_trusted(uid) {
            return;
        }
        let key = uid.unwrap_or(u32::MAX);
        if let Some(held) = self.per_uid.get_mut(&key) {
            *held -= 1;
            if *held == 0 {
                self.per_uid.remove(&key);
            }
        }
    }

    /// Some(limit) when descriptor `fd` is within the reserve of the limit
    /// (read again first: the host may have raised it).
    fn short_of_descriptors(&mut self, fd: RawFd) -> Option<u64> {
        let fd = fd as u64;
        let within = |limit: u64| fd + reserve(limit) >= limit;
        if !self.limit.is_some_and(within) {
            return None;
        }
        self.limit = descriptor_limit();
        self.limit.filter(|&limit| within(limit))
    }
}

impl Server {
    pub(super) fn accept_all(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        let listener_fd = listener.raw();
        // Bounded: a peer that connects as fast as we accept would otherwise
        // keep us here for good, and nothing would be distributed meanwhile.
        // The listener is level-triggered: the rest come at the next wake-up.
        for _ in 0..MAX_ACCEPTS_PER_WAKE {
            // SAFETY: accept4 with no peer address requested.
            let fd = unsafe {
                libc::accept4(
                    listener_fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::EAGAIN) => return,
                    Some(libc::EINTR) | Some(libc::ECONNABORTED) | Some(libc::EPROTO) => continue,
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM and anything unexpected:
                    // back off instead of spinning on a listener that stays ready.
                    _ => {
                        self.pause_listener();
                        return;
                    }
                }
            }
            let fd = OwnedFd::register(fd);
            let counters = &self.shared.counters;
            bump(&counters.accepted, 1);
            let credentials = peer_credentials(fd.raw());
            let peer = Peer {
                pid: credentials.map(|c| c.pid),
                uid: credentials.map(|c| c.uid),
                gid: credentials.map(|c| c.gid),
            };
            if !peer_allowed(
                fd.raw(),
                credentials,
                &self.options.allow_uids,
                &self.options.allow_gids,
            ) {
                bump(&counters.denied, 1);
                bump(&counters.disconnected, 1);
                let who = match (peer.uid, peer.gid) {
                    (Some(uid), Some(gid)) => format!("uid {uid} (gid {gid})"),
                    _ => "this peer (its credentials are unknown)".into(),
                };
                refuse_at_accept(
                    &fd,
                    &format!("permission denied: the publisher's allow-lists do not include {who}"),
                    Reason::Denied,
                );
                continue; // dropping fd closes it
            }
            if let Err(why) = self.admission.admit(fd.raw(), peer.uid) {
                bump(&counters.refused, 1);
                bump(&counters.disconnected, 1);
                refuse_at_accept(&fd, &format!("refused: {why}"), Reason::Full);
                continue;
            }
            let active = self.connections.receivers();
            let full = active >= self.options.max_subscribers;
            if full && self.connections.probing() >= MAX_PROBES {
                bump(&counters.refused, 1);
                bump(&counters.disconnected, 1);
                refuse_at_accept(&fd, &self.full_message(), Reason::Full);
                self.admission.release(peer.uid);
                continue;
            }
            let mut subscriber = SubscriberConn::new(
                fd,
                self.options.subscriber_buffer,
                self.kernel_share(active),
                peer,
            );
            subscriber.ring_is_free = self.options.slow_policy == SlowPolicy::Drop;
            subscriber.trusted = self.admission.is_trusted(peer.uid);
            subscriber.first_seq = self.log.next_seq();
            if full {
                subscriber.enter_phase(Phase::Probing {
                    until: Instant::now() + PROBE_GRACE,
                });
            }
            let raw = subscriber.fd.raw();
            // The descriptor's number and a serial: an event for a connection
            // closed earlier in the same round cannot reach the one that got
            // its number since.
            self.accepted_serial += 1;
            subscriber.token = (self.accepted_serial << 32) | u64::from(raw as u32);
            subscriber.registered = interest(&subscriber);
            if watch(&self.epoll, raw, subscriber.registered, subscriber.token).is_err() {
                bump(&counters.disconnected, 1);
                self.admission.release(peer.uid);
                continue;
            }
            let token = subscriber.token;
            self.connections.insert(raw, subscriber);
            // A request already sent (a stats probe writes it at once) is read
            // before the connection counts, so such probes are never counted.
            self.serve_subscriber(token, libc::EPOLLIN as u32);
            self.publish_subscriber_count();
        }
    }

    /// The kernel buffer a new subscriber gets when `active` are connected:
    /// together the kernel's buffers stay near a quarter of the memory limit
    /// (the first subscribers get the most, up to MAX_KERNEL_SHARE).
    pub(super) fn kernel_share(&self, active: usize) -> usize {
        (self.options.memory_limit / 4 / (active + 1))
            .clamp(connection::MIN_KERNEL_SHARE, connection::MAX_KERNEL_SHARE)
    }

    pub(super) fn pause_listener(&mut self) {
        if let Some(listener) = &self.listener {
            let _ = epoll_control(
                &self.epoll,
                libc::EPOLL_CTL_DEL,
                listener.raw(),
                0,
                LISTENER_TOKEN,
            );
            self.listener_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
        }
    }

    pub(super) fn resume_listener_if_due(&mut self) {
        let Some(until) = self.listener_paused_until else {
            return;
        };
        if Instant::now() < until {
            return;
        }
        self.listener_paused_until = None;
        if let Some(listener) = &self.listener {
            if watch(
                &self.epoll,
                listener.raw(),
                libc::EPOLLIN as u32,
                LISTENER_TOKEN,
            )
            .is_err()
            {
                self.pause_listener();
            }
        }
    }

    /// Tells a connection accepted while full that it cannot subscribe.
    pub(super) fn refuse_full(&mut self, fd: RawFd) {
        let message = self.full_message();
        let Some(subscriber) = self.connections.get_mut(&fd) else {
            return;
        };
        bump(&self.shared.counters.refused, 1);
        subscriber.queue_control(lines::error(&Reason::Full, &message));
        self.begin_closing(fd, Closing::Full);
    }

    pub(super) fn full_message(&self) -> String {
        format!(
            "the publisher already serves its maximum of {} subscribers (max_subscribers); try again later",
            self.options.max_subscribers
        )
    }
}

/// Says why to a connection refused at accept, then closes it. The line is
/// tiny and the socket new, so one non-blocking send takes it; input the peer
/// already wrote is read first, so that the close is a clean end of stream.
pub(super) fn refuse_at_accept(fd: &OwnedFd, message: &str, reason: Reason) {
    let line = lines::error(&reason, message);
    let mut scratch = [0u8; 4096];
    // SAFETY: reads into a live buffer of the given size; non-blocking.
    while unsafe {
        libc::recv(
            fd.raw(),
            scratch.as_mut_ptr().cast(),
            scratch.len(),
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
    // SAFETY: writes from a live buffer; MSG_NOSIGNAL: never SIGPIPE in the host.
    unsafe {
        libc::send(
            fd.raw(),
            line.as_ptr().cast(),
            line.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_untrusted_user_is_capped_and_trusted_ones_are_not() {
        let mut admission = Admission::new(2, 1000);
        admission.limit = Some(1 << 20);
        assert!(admission.admit(10, Some(65534)).is_ok());
        assert!(admission.admit(11, Some(65534)).is_ok());
        let refused = admission.admit(12, Some(65534)).unwrap_err();
        assert!(refused.contains("uid 65534") && refused.contains("max_connections_per_uid"));
        assert!(admission.admit(12, Some(65533)).is_ok());
        for fd in 0..10 {
            assert!(admission.admit(100 + fd, Some(0)).is_ok());
            assert!(admission.admit(200 + fd, Some(1000)).is_ok());
        }
        admission.release(Some(65534));
        assert!(admission.admit(13, Some(65534)).is_ok());
    }

    #[test]
    fn descriptors_near_the_limit_are_refused_to_everyone() {
        let mut admission = Admission::new(64, 1000);
        admission.limit = Some(1024);
        assert_eq!(reserve(1024), 128);
        assert!(admission.admit(895, Some(0)).is_ok());
        // The limit is read again first: this process's own is far higher
        // in tests (or the same), so set it back after the re-read check.
        if descriptor_limit() == Some(1024) {
            assert!(admission.admit(896, Some(0)).is_err());
        }
        assert_eq!(reserve(100), 32);
        assert_eq!(reserve(1 << 20), 4096);
    }
}
