//! When the connection is lost: with `reconnect`, the next attempt comes at
//! once after a connection that worked, else after a back-off that doubles
//! up to a bound; a timer descriptor becomes readable when it is due (see
//! `Subscriber::as_raw_fd`). Without `reconnect`, the loss is final.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::connection::last_os_error;
use super::{State, Subscriber};
use crate::Error;

pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Errors that mean "the publisher is not there (yet)": worth retrying.
pub(super) fn publisher_absent(errno: i32) -> bool {
    matches!(errno, libc::ENOENT | libc::ECONNREFUSED | libc::EAGAIN)
}

impl Subscriber {
    /// The connection is gone: with `reconnect`, schedule the next attempt
    /// (at once if the connection had worked, else after the back-off);
    /// without, fail for good with `cause`.
    pub(super) fn lose(&mut self, cause: Error) -> Result<(), Error> {
        self.clear_buffer();
        // A connection that delivered, or lasted, worked: the publisher is
        // probably restarting, so try again at once. One that accepts and hangs
        // up at once (over its subscriber limit, say) only gets the back-off.
        let worked = matches!(&self.state,
            State::Connected(c) if c.worked || c.established.elapsed() >= Duration::from_secs(1));
        if !self.reconnect {
            self.state = State::Failed(cause.clone());
            return Err(cause);
        }
        let now = Instant::now();
        if worked {
            self.backoff = FIRST_BACKOFF;
            self.state = State::Waiting(now);
            self.arm_timer(Duration::ZERO)
        } else {
            self.schedule_attempt(now)
        }
    }

    /// Disconnected: the next attempt is after the back-off, which then doubles.
    pub(super) fn schedule_attempt(&mut self, now: Instant) -> Result<(), Error> {
        let after = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.state = State::Waiting(now + after);
        self.arm_timer(after)
    }

    fn arm_timer(&mut self, after: Duration) -> Result<(), Error> {
        if self.timer.is_none() {
            // SAFETY: plain system call; the result is checked.
            let fd = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
                )
            };
            if fd < 0 {
                return Err(Error::os("cannot create a timerfd", last_os_error()));
            }
            // SAFETY: a fresh descriptor we own.
            self.timer = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let after = after.max(Duration::from_nanos(1)); // zero would disarm it
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        let fd = self.timer.as_ref().map_or(-1, |t| t.as_raw_fd());
        // SAFETY: a valid timerfd and itimerspec; re-arming also resets its count.
        if unsafe { libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(Error::os(
                "cannot arm the reconnection timer",
                last_os_error(),
            ));
        }
        Ok(())
    }

    /// One reconnection attempt.
    pub(super) fn attempt(&mut self, now: Instant) -> Result<(), Error> {
        match self.open_connection() {
            Ok(connection) => {
                self.state = State::Connected(connection);
                if self.ever_connected {
                    self.reconnects += 1;
                    self.announce_reconnect = true;
                }
                self.ever_connected = true;
                Ok(())
            }
            Err(err) => {
                self.schedule_attempt(now)?;
                // A full listen backlog is retried, but said: a publisher
                // that never accepts (stuck, or a socket made to hang its
                // readers) must not look like one that is merely quiet.
                if publisher_absent(err.errno()) && err.errno() != libc::EAGAIN {
                    Ok(())
                } else {
                    Err(err)
                }
            }
        }
    }
}
