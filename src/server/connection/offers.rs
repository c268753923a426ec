//! Offering new notifications to a subscriber: what fits its buffer is
//! queued, the rest is dropped and counted, and markers report the gap.

use std::mem;
use std::time::Instant;

use super::*;

/// Bytes a private copy grows by at least, so copying a few small messages
/// does not mean an allocation each.
const OWN_CHUNK_BYTES: usize = 16 * 1024;

impl SubscriberConn {
    pub(super) fn room(&self, log: &MessageLog) -> usize {
        self.queue_capacity.saturating_sub(self.held(log))
    }

    /// Room left before the batch holding `first` (the newest) is counted.
    pub(super) fn room_before(&self, log: &MessageLog, first: u64) -> usize {
        let held =
            self.pinned_until(log.mark_of(first), self.free_from(log)) + self.own_footprint();
        self.queue_capacity.saturating_sub(held)
    }

    /// Queues log messages [first, end) (one batch, just appended), as many as
    /// fit, for a subscriber that takes everything. After an overflow earlier
    /// in the same round, `overflowed` makes every message a drop, so a
    /// subscriber that falls behind sees one gap, not a scattering.
    pub(crate) fn offer_all(
        &mut self,
        log: &MessageLog,
        first: u64,
        end: u64,
        overflowed: bool,
        counters: &Counters,
    ) -> Offered {
        let mut first = first;
        if let Some((until, partial)) = self.written_through {
            if until >= end {
                // Emitters wrote all of these themselves (and counted them).
                return Offered::All;
            }
            self.written_through = None;
            first = first.max(until);
            if partial > 0 {
                // The rest of a line the kernel took only part of goes first,
                // whatever the room: the reader has its beginning.
                bump(&counters.fanout, 1);
                self.enqueue_log(log, first, first + 1);
                if let Some(Span::Log { offset, .. }) = self.queue.back_mut() {
                    *offset = partial;
                }
                first += 1;
                if first == end {
                    return Offered::All;
                }
            }
        }
        let wanted = (end - first) as usize;
        bump(&counters.fanout, wanted as u64);
        if overflowed || self.behind {
            self.count_drops(wanted, counters);
            return Offered::Overflowed;
        }
        loop {
            let fit = self.fitting_log_end(log, first, end);
            if fit > first {
                self.report_drops();
                self.enqueue_log(log, first, fit);
                first = fit;
            }
            if first == end {
                return Offered::All;
            }
            match self.make_room(log, counters) {
                Some(Offered::PeerGone) => {
                    bump(&counters.dropped_closed, end - first);
                    return Offered::PeerGone;
                }
                Some(_) => continue,
                None => {
                    self.count_drops((end - first) as usize, counters);
                    return Offered::Overflowed;
                }
            }
        }
    }

    /// Copies the messages of log batch [first, end) that `wanted` marks
    /// (one verdict per message), as many as fit, for a subscriber with a filter.
    pub(crate) fn offer_filtered(
        &mut self,
        log: &MessageLog,
        first: u64,
        wanted: &[bool],
        overflowed: bool,
        counters: &Counters,
    ) -> Offered {
        let count = wanted.iter().filter(|&&w| w).count();
        bump(&counters.filtered, (wanted.len() - count) as u64);
        bump(&counters.fanout, count as u64);
        if overflowed || self.behind {
            self.count_drops(count, counters);
            return Offered::Overflowed;
        }
        let (batch, base) = log.locate(first);
        let mut left = count;
        for (index, _) in wanted.iter().enumerate().filter(|(_, &w)| w) {
            let message = &batch.bytes[batch.start_of(base + index)..batch.ends[base + index]];
            loop {
                if self.unreported_drops > 0 {
                    // The marker goes first: it must fit too.
                    let marker = lines::dropped(self.unreported_drops);
                    if marker.capacity() + ALLOCATION_OVERHEAD + message.len() <= self.room(log) {
                        self.report_drops();
                    }
                }
                if self.unreported_drops == 0
                    && self.enqueue_copy(first + index as u64, message, self.room(log))
                {
                    left -= 1;
                    break;
                }
                match self.make_room(log, counters) {
                    Some(Offered::PeerGone) => {
                        bump(&counters.dropped_closed, left as u64);
                        return Offered::PeerGone;
                    }
                    Some(_) => continue,
                    None => {
                        self.count_drops(left, counters);
                        return Offered::Overflowed;
                    }
                }
            }
        }
        Offered::All
    }

    /// The queue is full: lets the kernel take what it can (its share of the
    /// buffer). Some(All) when that made room, None when it did not.
    pub(super) fn make_room(&mut self, log: &MessageLog, counters: &Counters) -> Option<Offered> {
        // Tried even when the kernel said it was full at the last write: the
        // reader may have emptied it since, and its EPOLLOUT be among this
        // round's events, which are dispatched only after the new messages
        // are offered. Giving up here dropped notifications for a reader that
        // kept up. If the kernel is still full, the subscriber overflows: it
        // is behind, and nothing more is offered to it (or tried) until it
        // reads, so this costs one system call per overflow, not per message.
        // Holding back never costs a drop: short of room, it is sent now.
        self.release_hold();
        let held_before = self.held(log);
        match self.flush(log, counters) {
            Flush::PeerGone => Some(Offered::PeerGone),
            Flush::Blocked => {
                self.waiting_for_room = true;
                (self.held(log) < held_before).then_some(Offered::All)
            }
            Flush::Drained | Flush::Held | Flush::MoreHistory => {
                // The kernel took everything: no EPOLLOUT to wait for.
                self.waiting_for_room = false;
                (self.held(log) < held_before).then_some(Offered::All)
            }
        }
    }

    pub(super) fn count_drops(&mut self, dropped: usize, counters: &Counters) {
        if dropped > 0 {
            self.behind = true;
        }
        bump(&counters.dropped_slow, dropped as u64);
        self.dropped_slow += dropped as u64;
        if self.markers {
            self.unreported_drops += dropped as u64;
        }
    }

    pub(crate) fn has_unreported_drops(&self) -> bool {
        self.unreported_drops > 0
    }

    /// With markers, tells the subscriber how many it missed, before anything newer.
    pub(crate) fn report_drops(&mut self) {
        if self.unreported_drops > 0 {
            let line = lines::dropped(mem::take(&mut self.unreported_drops));
            self.queue_control(line);
        }
    }

    /// The end of the longest run of log messages from `first` that fits.
    pub(super) fn fitting_log_end(&self, log: &MessageLog, first: u64, end: u64) -> u64 {
        let available = self.room_before(log, first);
        // Extending the last range adds only the messages; a new range also
        // its bookkeeping. The batch of [first, end) is new: its own
        // bookkeeping is held as soon as one message of it is.
        let extends =
            matches!(self.queue.back(), Some(Span::Log { end: last, .. }) if *last == first);
        let fixed = ENTRY_OVERHEAD + if extends { 0 } else { mem::size_of::<Span>() };
        let Some(available) = available.checked_sub(fixed) else {
            return first;
        };
        let (batch, index) = log.locate(first);
        let start = batch.start_of(index);
        let count = (end - first) as usize;
        // The longest prefix of k messages whose bytes and bookkeeping fit.
        let cost = |k: usize| batch.ends[index + k - 1] - start + k * MESSAGE_OVERHEAD;
        let (mut low, mut high) = (0, count);
        while low < high {
            let middle = (low + high).div_ceil(2);
            if cost(middle) <= available {
                low = middle;
            } else {
                high = middle - 1;
            }
        }
        first + low as u64
    }

    /// With cursors, tells the client the number of the message it is about
    /// to get when it would not count it itself.
    pub(super) fn announce_seq(&mut self, seq: u64, end: u64) {
        if self.cursors && self.next_line_seq != Some(seq) {
            self.queue_control(lines::seq(seq));
        }
        self.next_line_seq = Some(end);
    }

    pub(super) fn enqueue_log(&mut self, log: &MessageLog, first: u64, end: u64) {
        self.announce_seq(first, end);
        self.queued_messages += (end - first) as usize;
        self.last_sent = Instant::now();
        if let Some(Span::Log { end: last, .. }) = self.queue.back_mut() {
            if *last == first {
                *last = end;
                return;
            }
        }
        self.queue.push_back(Span::Log {
            next: first,
            end,
            offset: 0,
            mark: log.mark_of(first),
        });
    }

    /// Copies message `seq` to the end of our own spans if its cost (the
    /// bytes, or a new chunk's whole allocation) fits in `room`; false if it
    /// does not.
    pub(super) fn enqueue_copy(&mut self, seq: u64, message: &[u8], room: usize) -> bool {
        // A seq line in between means a chunk of its own after it.
        let announce = self.cursors && self.next_line_seq != Some(seq);
        let reusable = !announce
            && matches!(self.queue.back(), Some(Span::Own(chunk))
            if chunk.bytes.capacity() - chunk.bytes.len() >= message.len()
                && chunk.ends.len() < chunk.ends.capacity());
        if reusable {
            if message.len() > room {
                return false;
            }
        } else {
            // A chunk as large as the room allows, up to OWN_CHUNK_BYTES, so
            // that a small buffer still takes copies.
            let ends = 8;
            let overhead = ends * mem::size_of::<usize>()
                + 2 * ALLOCATION_OVERHEAD
                + mem::size_of::<Span>()
                + if announce { 64 } else { 0 };
            // After a seq line (a filter that skips messages announces
            // nearly every one), the next message is rarely the following
            // one: a chunk just its size, or a sparse filter's queue would
            // hold OWN_CHUNK_BYTES per message and overflow after a few
            // hundred.
            let capacity = if announce {
                message.len()
            } else {
                message
                    .len()
                    .max(OWN_CHUNK_BYTES.min(room.saturating_sub(overhead)))
            };
            if capacity + overhead > room {
                return false;
            }
            if announce {
                self.queue_control(lines::seq(seq));
            }
            let mut chunk = OwnChunk::default();
            chunk.bytes.reserve_exact(capacity);
            chunk.ends.reserve_exact(ends);
            self.own_footprint += chunk.footprint();
            self.queue.push_back(Span::Own(chunk));
        }
        self.next_line_seq = Some(seq + 1);
        self.queued_messages += 1;
        self.last_sent = Instant::now();
        let Some(Span::Own(chunk)) = self.queue.back_mut() else {
            unreachable!("an own chunk was just made the last span");
        };
        let before = chunk.footprint();
        chunk.bytes.extend_from_slice(message);
        chunk.ends.push(chunk.bytes.len());
        self.own_footprint = self.own_footprint + chunk.footprint() - before;
        true
    }
}
