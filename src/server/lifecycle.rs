//! A connection's life in the server thread: its socket's events, writes,
//! histories served in turn, closing and removal; and close's final flush.

use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::*;
use connection::HISTORY_STEP_ENTRIES;

/// Log entries all resumed histories together may read in one round of the
/// server thread (about 0.5 ms in a debug build, far less in release).
const ROUND_HISTORY_ENTRIES: u64 = 2 * HISTORY_STEP_ENTRIES;

impl Server {
    pub(super) fn dispatch(&mut self, event: libc::epoll_event) {
        let token = event.u64;
        match token {
            LISTENER_TOKEN => self.accept_all(),
            WAKE_TOKEN => self.shared.backlog.drain_wake_fd(),
            _ => self.serve_subscriber(token, event.events),
        }
    }

    pub(super) fn serve_subscriber(&mut self, token: u64, ready: u32) {
        let fd = token as u32 as RawFd;
        let room = self.fixed_room();
        let Some(subscriber) = self.connections.get_mut(&fd) else {
            return;
        };
        if subscriber.token != token {
            // For a connection closed since; this one only has its number.
            return;
        }
        if ready & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
            // Both directions are closed (or broken): nobody will read what we queue.
            self.remove_subscriber(fd);
            return;
        }
        if ready & libc::EPOLLIN as u32 != 0 {
            let charged = subscriber.request_charge();
            let input = subscriber.read_input(room);
            self.request_bytes = self.request_bytes + subscriber.request_charge() - charged;
            match input {
                Input::Idle => {}
                Input::OverBudget => {
                    let why = "the publisher's memory limit leaves no room for another unfinished request line; finish it in one write, or try again later";
                    self.refuse_request(fd, why, Reason::Memory)
                }
                Input::Request {
                    line,
                    followed_by_more,
                } => self.handle_request(fd, &line, followed_by_more),
                Input::Invalid(why) => self.refuse_request(fd, &why, Reason::BadRequest),
                Input::PeerStoppedSending => {
                    subscriber.reading = false;
                    // It will not ask for anything: what is held is its stream.
                    subscriber.release_hold();
                    if subscriber.is_probing() {
                        // A probe that asked for nothing gets the refusal now.
                        self.refuse_full(fd);
                    } else {
                        self.update_interest(fd);
                        self.write_to(fd);
                    }
                }
                Input::PeerGone => {
                    self.remove_subscriber(fd);
                    return;
                }
            }
        }
        if ready & libc::EPOLLOUT as u32 != 0 {
            if let Some(subscriber) = self.connections.get_mut(&fd) {
                // The kernel has room again.
                subscriber.waiting_for_room = false;
                // Room again: a subscriber with markers hears about its drops first.
                if !subscriber.is_closing() {
                    subscriber.report_drops();
                }
                self.write_to(fd);
            }
        }
    }

    /// Flushes one subscriber and acts on the outcome: wait for room, close a
    /// subscriber that is done, or remove one that is gone.
    pub(super) fn write_to(&mut self, fd: RawFd) {
        let Some(subscriber) = self.connections.get_mut(&fd) else {
            return;
        };
        let counters = &self.shared.counters;
        let mut outcome = subscriber.flush(&self.log, counters);
        // Drained means it has room again: a subscriber with markers hears
        // about its drops now, not only when the next notification comes.
        if outcome == Flush::Drained
            && !subscriber.is_closing()
            && subscriber.has_unreported_drops()
        {
            subscriber.report_drops();
            outcome = subscriber.flush(&self.log, counters);
        }
        match outcome {
            Flush::Drained => {
                subscriber.waiting_for_room = false;
                if subscriber.is_closing() {
                    subscriber.discard_pending_input();
                    self.remove_subscriber(fd);
                    return;
                }
            }
            Flush::Blocked => subscriber.waiting_for_room = true,
            Flush::PeerGone => return self.remove_subscriber(fd),
            Flush::Held => {}
            Flush::MoreHistory => {
                subscriber.waiting_for_room = false;
                if !self.history_turns.contains(&fd) {
                    self.history_turns.push(fd);
                }
            }
        }
        if subscriber.send_cost.exceeded() && !subscriber.is_closing() {
            return self.begin_closing(fd, Closing::TooCostly);
        }
        self.update_interest_if_changed(fd);
    }

    /// Gives connections reading a resumed history their next step, in
    /// turn, from a budget of ROUND_HISTORY_ENTRIES log entries per round:
    /// however many histories there are, however long, and however little
    /// of them a filter wants, a round costs the server thread a bounded
    /// amount, and everyone else's notifications go out between rounds.
    /// Those the budget did not reach go first next round.
    pub(super) fn continue_histories(&mut self) {
        let turns = std::mem::take(&mut self.history_turns);
        let mut budget = ROUND_HISTORY_ENTRIES;
        let mut next_round = Vec::new();
        for fd in turns {
            if budget == 0 {
                next_round.push(fd);
                continue;
            }
            let Some(connection) = self.connections.get_mut(&fd) else {
                continue;
            };
            // One waiting for room is taken up again by its EPOLLOUT.
            if connection.waiting_for_room || connection.is_closing() {
                continue;
            }
            let grant = budget.min(HISTORY_STEP_ENTRIES);
            connection.history_grant = grant;
            budget -= grant;
            self.write_to(fd);
            if let Some(connection) = self.connections.get_mut(&fd) {
                connection.history_grant = 0;
            }
        }
        for fd in std::mem::take(&mut self.history_turns) {
            if !next_round.contains(&fd) {
                next_round.push(fd);
            }
        }
        self.history_turns = next_round;
    }

    /// Stops giving a subscriber notifications and closes it once what is
    /// queued for it is written (an error line, a stats answer, or for a slow
    /// subscriber what fitted before it fell behind), or when linger runs out.
    pub(super) fn begin_closing(&mut self, fd: RawFd, why: Closing) {
        let Some(subscriber) = self.connections.get_mut(&fd) else {
            return;
        };
        if subscriber.is_closing() {
            // Already on its way out (input read in the same wake-up, say):
            // counting it twice would hide a live subscriber from emit.
            return;
        }
        let counters = &self.shared.counters;
        if why != Closing::Answered {
            bump(&counters.disconnected, 1);
        }
        // A subscriber that speaks the protocol hears why it is being let go.
        let reason = match why {
            Closing::TooSlow => Some((
                Reason::TooSlow,
                "disconnected: this subscriber fell behind and the publisher's slow policy is disconnect".to_string(),
            )),
            Closing::Memory => Some((
                Reason::Memory,
                "disconnected: the publisher's memory limit for all subscribers was reached and this subscriber held the most".to_string(),
            )),
            Closing::TooCostly => {
                bump(&counters.disconnected_costly, 1);
                Some((Reason::TooCostly, subscriber.send_cost.verdict()))
            }
            _ => None,
        };
        if let Some((reason, message)) = reason {
            if subscriber.spoke || why == Closing::TooCostly {
                subscriber.queue_control(lines::error(&reason, &message));
            }
        }
        subscriber.reading = false;
        let until = Instant::now() + self.options.linger;
        self.connections
            .set_phase(fd, Phase::Closing { why, until });
        self.publish_subscriber_count();
        self.update_interest(fd);
        self.write_to(fd);
    }

    /// Tells emitters how many subscribers would receive a message now: the
    /// ones being closed and the ones only probing get nothing, so they do not count.
    pub(super) fn publish_subscriber_count(&self) {
        self.shared
            .subscribers
            .store(self.connections.receivers(), Ordering::Release);
    }

    /// Closes a subscriber; whatever was still queued for it is counted as dropped.
    pub(super) fn remove_subscriber(&mut self, fd: RawFd) {
        if let Some(subscriber) = self.connections.remove(fd) {
            self.admission.release(subscriber.peer.uid);
            self.request_bytes -= subscriber.request_charge();
            if let Some(filter) = subscriber.filter {
                self.filters.remove(filter);
            }
            let counters = &self.shared.counters;
            bump(
                &counters.dropped_closed,
                subscriber.queued_messages() as u64,
            );
            let _ = epoll_control(&self.epoll, libc::EPOLL_CTL_DEL, fd, 0, 0);
            self.publish_subscriber_count();
            drop(subscriber); // closes the socket
        }
    }

    pub(super) fn update_interest(&mut self, fd: RawFd) {
        if let Some(subscriber) = self.connections.get_mut(&fd) {
            let events = interest(subscriber);
            let token = subscriber.token;
            if epoll_control(&self.epoll, libc::EPOLL_CTL_MOD, fd, events, token).is_err() {
                self.remove_subscriber(fd);
            } else {
                subscriber.registered = events;
            }
        }
    }

    /// Tells epoll what the subscriber waits for now, if that changed.
    pub(super) fn update_interest_if_changed(&mut self, fd: RawFd) {
        if let Some(subscriber) = self.connections.get(&fd) {
            if interest(subscriber) != subscriber.registered {
                self.update_interest(fd);
            }
        }
    }

    /// Close: no new subscribers; flush what is queued for up to the linger
    /// time, counted from now: whatever is still unwritten then is dropped and
    /// counted, however much was queued or however costly the filters.
    pub(super) fn shut_down(mut self, events: &mut [libc::epoll_event]) {
        let deadline = Instant::now() + self.options.linger;
        if let Some(listener) = self.listener.take() {
            let _ = epoll_control(
                &self.epoll,
                libc::EPOLL_CTL_DEL,
                listener.raw(),
                0,
                LISTENER_TOKEN,
            );
        }
        // Nobody's request will be read now: what is held goes out as it is.
        for subscriber in self.connections.values_mut() {
            subscriber.release_hold();
        }
        let held: Vec<RawFd> = self
            .connections
            .iter()
            .filter(|(_, s)| s.has_queue())
            .map(|(&fd, _)| fd)
            .collect();
        for fd in held {
            self.write_to(fd);
        }
        self.take_and_distribute();
        while self.connections.values().any(SubscriberConn::has_queue) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.continue_histories();
            let timeout = if self.history_turns.is_empty() {
                left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int
            } else {
                0
            };
            let ready = self.wait(events, timeout);
            for event in &events[..ready] {
                if event.u64 == WAKE_TOKEN {
                    self.shared.backlog.drain_wake_fd();
                } else if event.u64 != LISTENER_TOKEN {
                    self.serve_subscriber(event.u64, event.events);
                }
            }
            self.trim_log();
        }
        let remaining: Vec<RawFd> = self.connections.keys().copied().collect();
        for fd in remaining {
            self.remove_subscriber(fd);
        }
    }
}
