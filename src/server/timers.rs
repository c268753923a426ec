//! Deadlines: heartbeats, the hold before a request, request and probe
//! timeouts, and closing connections' linger; and how long the thread sleeps.

use std::os::fd::RawFd;
use std::time::Instant;

use super::*;

impl Server {
    pub(super) fn sleep_timeout_ms(&self) -> libc::c_int {
        let wake_at = [
            self.listener_paused_until,
            self.next_heartbeat(),
            self.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min();
        match wake_at {
            Some(at) => {
                at.saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128 - 1) as libc::c_int
                    + 1
            }
            None => -1,
        }
    }

    /// The earliest instant a connection must be acted on: a closing one's
    /// linger, a probe's grace, a started request's timeout, the end of a
    /// silent peer's hold.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.connections
            .values()
            .flat_map(|s| [s.phase().deadline(), s.request_deadline, s.hold_deadline()])
            .flatten()
            .min()
    }

    pub(super) fn next_heartbeat(&self) -> Option<Instant> {
        if self.connections.heartbeating() == 0 {
            return None;
        }
        self.connections
            .values()
            .filter_map(|s| s.heartbeat.map(|every| s.last_sent + every))
            .min()
    }

    /// Tells idle subscribers that asked for it that the publisher is alive.
    pub(super) fn send_due_heartbeats(&mut self) {
        if self.connections.heartbeating() == 0 {
            return;
        }
        let now = Instant::now();
        let due: Vec<RawFd> = self
            .connections
            .iter()
            .filter(|(_, s)| {
                !s.is_closing() && s.heartbeat.is_some_and(|every| now >= s.last_sent + every)
            })
            .map(|(&fd, _)| fd)
            .collect();
        for fd in due {
            let Some(subscriber) = self.connections.get_mut(&fd) else {
                continue;
            };
            if subscriber.has_queue() {
                // Still sending: not idle, just slow to read.
                subscriber.last_sent = now;
                continue;
            }
            let unix_seconds = unix_now();
            subscriber.queue_control(lines::heartbeat((unix_seconds * 1000.0).round() / 1000.0));
            self.write_to(fd);
        }
    }

    /// Acts on every deadline that has passed: closes subscribers whose
    /// closing outlasted linger, refuses probes whose grace is over and
    /// requests not finished in time, and sends what was held for peers
    /// that stayed silent.
    pub(super) fn close_overdue(&mut self) {
        let now = Instant::now();
        let due = |deadline: Option<Instant>| deadline.is_some_and(|at| now >= at);
        let mut overdue = Vec::new();
        let mut probes = Vec::new();
        let mut slow_requests = Vec::new();
        let mut silent = Vec::new();
        for (&fd, s) in self.connections.iter() {
            if due(s.hold_deadline()) {
                silent.push(fd);
            }
            let phase_over = due(s.phase().deadline());
            if phase_over && s.is_closing() {
                overdue.push(fd);
            } else if phase_over && s.is_probing() {
                probes.push(fd);
            } else if !s.is_closing() && due(s.request_deadline) {
                slow_requests.push(fd);
            }
        }
        for fd in silent {
            if let Some(subscriber) = self.connections.get_mut(&fd) {
                subscriber.release_hold();
                self.write_to(fd);
            }
        }
        for fd in overdue {
            self.remove_subscriber(fd);
        }
        for fd in probes {
            self.refuse_full(fd);
        }
        for fd in slow_requests {
            let why = format!(
                "the request line was not finished within {} s",
                connection::REQUEST_TIMEOUT.as_secs()
            );
            self.refuse_request(fd, &why, Reason::RequestTimeout);
        }
    }
}
