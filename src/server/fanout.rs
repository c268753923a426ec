//! Fan-out: what emitters queued is taken into the log, numbered, and offered
//! to every subscriber (the write-through grant is prepared and settled here);
//! the log then lets go of what nobody needs.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::*;

impl Server {
    /// Which subscribers emitters may write to themselves while this thread
    /// sleeps (see backlog::write_through): all of them or none, at most
    /// MAX_TARGETS, each taking every notification with nothing queued, so
    /// that what an emitter writes is exactly what this thread would send next.
    pub(super) fn prepare_grant(&mut self) {
        self.grant.clear();
        let next_seq = self.log.next_seq();
        let now = Instant::now();
        for (&fd, subscriber) in self.connections.iter() {
            if !subscriber.is_subscriber() {
                continue;
            }
            if self.grant.targets.len() == MAX_TARGETS
                || !subscriber.can_be_written_through(next_seq, now)
            {
                self.grant.clear();
                return;
            }
            self.grant.add_target(fd);
        }
    }

    /// Takes what emitters queued into the log and offers it to every subscriber.
    /// Takes what emitters queued into the log and hands it to subscribers.
    /// Returns how many of those messages emitters had not written through
    /// themselves (what this thread had to send).
    pub(super) fn take_and_distribute(&mut self) -> u64 {
        self.note_unnumbered();
        let mut taken = std::mem::take(&mut self.taken);
        self.shared.backlog.take(&mut taken, &mut self.written);
        if taken.is_empty() {
            debug_assert_eq!(self.written.messages, 0);
            self.taken = taken;
            return 0;
        }
        let messages: usize = taken.iter().map(Batch::message_count).sum();
        self.taken_total += messages as u64;
        let written_through = self.written.messages;
        // The messages written through are the first taken: they get the
        // next numbers. Each target's stream goes on after what it got.
        let base = self.log.next_seq();
        for target in &self.written.targets {
            if let Some(subscriber) = self.connections.get_mut(&target.fd) {
                subscriber.was_written_through(base, target.delivered, target.partial);
            }
        }
        let counters = &self.shared.counters;
        bump(&counters.emitted, messages as u64);
        let receivers = self
            .connections
            .values()
            .filter(|s| s.is_subscriber())
            .count();
        if receivers == 0 && self.options.replay > 0 {
            // Not dropped: the ring keeps them for whoever resumes or replays.
            bump(&counters.kept_no_subscriber, messages as u64);
        } else if receivers == 0 {
            bump(&counters.dropped_no_subscriber, messages as u64);
            // Numbered all the same, so that cursors count what was
            // missed; then let go at once.
            for batch in taken.drain(..) {
                self.log.append(batch);
            }
            self.taken = taken;
            self.trim_log();
            self.shared
                .settled
                .store(self.taken_total, Ordering::Release);
            return 0;
        }
        let mut spare = Vec::new();
        let mut overflowed: HashMap<RawFd, ()> = HashMap::new();
        let mut gone = Vec::new();
        for batch in taken.drain(..) {
            let count = batch.message_count() as u64;
            let first = self.log.append_taken(batch, &mut spare);
            // The new messages may have joined a batch of the log's own:
            // they are [base, base + count) of the batch that holds them.
            let (batch, base) = self.log.locate(first);
            // Each message's fields are read once, for every filter at once.
            if !self.filters.is_empty() {
                let fields: Vec<MessageFields<'_>> = (base..base + count as usize)
                    .map(|i| message_fields(&batch.bytes[batch.start_of(i)..batch.ends[i] - 1]))
                    .collect();
                self.filters.evaluate(&fields);
            }
            for (&fd, subscriber) in self.connections.iter_mut() {
                if !subscriber.is_subscriber() {
                    continue;
                }
                let behind = overflowed.contains_key(&fd);
                let offered = match subscriber.filter {
                    None => subscriber.offer_all(&self.log, first, first + count, behind, counters),
                    Some(id) => subscriber.offer_filtered(
                        &self.log,
                        first,
                        self.filters.matches(id),
                        behind,
                        counters,
                    ),
                };
                match offered {
                    Offered::All => {}
                    Offered::Overflowed => {
                        overflowed.insert(fd, ());
                    }
                    Offered::PeerGone => gone.push(fd),
                }
            }
        }
        self.taken = taken;
        self.shared.backlog.recycle(spare);
        for target in &self.written.targets {
            if let Some(subscriber) = self.connections.get_mut(&target.fd) {
                subscriber.forget_written_through();
            }
        }
        for fd in gone {
            self.remove_subscriber(fd);
        }
        let to_write: Vec<RawFd> = self
            .connections
            .iter()
            .filter(|(_, s)| s.has_queue() && !s.waiting_for_room)
            .map(|(&fd, _)| fd)
            .collect();
        for fd in to_write {
            self.write_to(fd);
        }
        // Offers that had to make room may have found a peer too costly.
        let costly: Vec<RawFd> = self
            .connections
            .iter()
            .filter(|(_, s)| s.send_cost.exceeded() && !s.is_closing())
            .map(|(&fd, _)| fd)
            .collect();
        for fd in costly {
            self.begin_closing(fd, Closing::TooCostly);
        }
        // Offers that found the kernel full made those subscribers wait for room.
        let changed: Vec<RawFd> = self
            .connections
            .iter()
            .filter(|(_, s)| interest(s) != s.registered)
            .map(|(&fd, _)| fd)
            .collect();
        for fd in changed {
            self.update_interest(fd);
        }
        if self.options.slow_policy == SlowPolicy::Disconnect {
            for &fd in overflowed.keys() {
                self.begin_closing(fd, Closing::TooSlow);
            }
        }
        self.trim_log();
        self.enforce_memory_limit(0, None);
        self.shared
            .settled
            .store(self.taken_total, Ordering::Release);
        messages as u64 - written_through
    }

    /// Lets go of the log batches no subscriber needs any more. A subscriber
    /// that stopped taking messages while the others went on would keep
    /// everything newer alive: it gets its own copy of what it still needs
    /// (within the memory limit; past it, it loses its queue instead).
    pub(super) fn trim_log(&mut self) {
        if self.log.is_empty() {
            return;
        }
        let stalled: Vec<RawFd> = self
            .connections
            .iter()
            .filter(|(_, s)| s.pins_too_much(&self.log))
            .map(|(&fd, _)| fd)
            .collect();
        for fd in stalled {
            let needed = match self.connections.get(&fd) {
                Some(s) => s.log_ranges_size(&self.log),
                None => continue,
            };
            // A copy must fit the subscriber's own limit (a resumed history
            // may be larger than its buffer) as well as the memory limit.
            let within_its_buffer = self
                .connections
                .get(&fd)
                .is_some_and(|s| needed <= s.capacity());
            if within_its_buffer {
                self.enforce_memory_limit(needed, Some(fd));
            }
            let fits = within_its_buffer && self.held_total() + needed <= self.options.memory_limit;
            let Some(subscriber) = self.connections.get_mut(&fd) else {
                continue;
            };
            if fits {
                subscriber.detach_from_log(&self.log);
            }
            // A resumed history not filtered yet cannot be copied as it is:
            // past its limit, a subscriber that still pins the log loses its queue.
            if !fits || subscriber.pins_too_much(&self.log) {
                subscriber.discard_queue(&self.log, &self.shared.counters);
                if self.options.slow_policy == SlowPolicy::Disconnect {
                    self.begin_closing(fd, Closing::Memory);
                }
            }
        }
        self.release_log();
    }

    pub(super) fn release_log(&mut self) {
        self.log.keep_ring(self.options.replay);
        let keep_from = self
            .connections
            .values()
            .filter_map(SubscriberConn::oldest_log_seq)
            .min()
            .unwrap_or(self.log.next_seq())
            .min(self.log.ring_seq());
        let mut recycled = Vec::new();
        self.log.trim(keep_from, |batch| recycled.push(batch));
        if !recycled.is_empty() {
            self.shared.backlog.recycle(recycled);
        }
        let counters = &self.shared.counters;
        let ring_messages = self.log.next_seq() - self.log.ring_seq();
        set(&counters.replay_bytes, self.log.ring_held());
        set(&counters.replay_messages, ring_messages);
        set(&counters.replay_oldest, self.log.ring_seq());
        set(&counters.next_seq, self.log.next_seq());
    }

    /// Notes where notifications went unnumbered (emit dropped them at once).
    pub(super) fn note_unnumbered(&mut self) {
        let now = self.shared.unnumbered.load(Ordering::Relaxed);
        if now != self.unnumbered_seen {
            self.unnumbered_seen = now;
            self.unnumbered_before = Some(self.log.next_seq());
        }
    }
}
