//! Before the request: what is queued for a peer that has not spoken yet is
//! held back, and when emitting threads may write to it themselves.

use std::time::Instant;

use super::*;

impl SubscriberConn {
    /// Whether what is queued for it is held back for now. A peer that has
    /// not spoken yet may be about to: the library's clients write their
    /// request right after connecting. A notification written to it before
    /// the request is read would come before the acknowledgement, unfiltered
    /// and unnumbered, where a resuming client cannot use it and counts it
    /// as missed. Held, it is taken back when the request comes (see
    /// `withdraw_held`) and sent after the acknowledgement as the request
    /// asks. A plain reader that never speaks gets it when the grace ends.
    pub(crate) fn is_holding(&mut self, now: Instant) -> bool {
        match self.hold_until {
            Some(until) if now < until && self.phase.is_open() => true,
            Some(_) => {
                self.hold_until = None;
                false
            }
            None => false,
        }
    }

    /// Ends the hold: what is queued may be written.
    pub(crate) fn release_hold(&mut self) {
        self.hold_until = None;
    }

    /// When the hold on what is queued ends, if anything is held.
    pub(crate) fn hold_deadline(&self) -> Option<Instant> {
        self.hold_until
            .filter(|_| self.has_queue() && self.phase.is_open())
    }

    /// The request was just read: ends the hold and, when what was held is
    /// the plain run of every notification since the connection (nothing
    /// written, nothing dropped, no control line), takes it back unsent and
    /// returns the number of its first, so that the request's own stream
    /// (acknowledged, filtered, numbered) starts there. Otherwise None, and
    /// what was queued goes out as it is, ahead of the acknowledgement.
    pub(crate) fn withdraw_held(&mut self, counters: &Counters) -> Option<u64> {
        self.hold_until.take()?;
        if self.delivered > 0
            || self.dropped_slow > 0
            || self.unreported_drops > 0
            || self.behind
            || self.written_through.is_some()
        {
            return None;
        }
        let (mut first, mut end) = (None, None);
        for span in &self.queue {
            match *span {
                Span::Log {
                    next,
                    end: span_end,
                    offset: 0,
                    ..
                } if end.is_none_or(|end| end == next) => {
                    first.get_or_insert(next);
                    end = Some(span_end);
                }
                _ => return None,
            }
        }
        let first = first?;
        // Offered once here and once more by the request's stream: counted once.
        counters.fanout.fetch_sub(
            self.queued_messages as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.queue.clear();
        self.queued_messages = 0;
        Some(first)
    }

    /// Whether an emitter may write the next notification (number
    /// `next_seq`) to this subscriber itself, exactly as this thread would
    /// send it: it takes everything, has nothing queued, no drop to report,
    /// no partial request line (a request being read may change what it
    /// wants), and, with cursors, no `seq` line due before it.
    pub(crate) fn can_be_written_through(&self, next_seq: u64, now: Instant) -> bool {
        // A peer that has not spoken yet may be about to: the library's
        // clients write their request right after connecting. A line written
        // to it before the request is read would come before the
        // acknowledgement, where a resuming client cannot use it.
        let request_pending = match &self.request {
            RequestState::Awaiting(line) => {
                !line.is_empty() || now.saturating_duration_since(self.accepted) < SILENT_PEER_GRACE
            }
            RequestState::Done => false,
        };
        self.is_subscriber()
            && self.trusted
            && self.filter.is_none()
            && self.queue.is_empty()
            && !self.behind
            && self.unreported_drops == 0
            && !self.waiting_for_room
            && !request_pending
            && self.hold_until.is_none_or(|until| now >= until)
            && (!self.cursors || self.next_line_seq == Some(next_seq))
    }

    /// Every message emitters wrote was offered: nothing more to skip.
    pub(crate) fn forget_written_through(&mut self) {
        debug_assert!(matches!(self.written_through, None | Some((_, 0))));
        self.written_through = None;
    }

    /// Emitters wrote `delivered` messages from number `base` on to it, and
    /// `partial` bytes of the next (counted by them in delivered, fanout and
    /// bytes_sent, but for that last one's fanout).
    pub(crate) fn was_written_through(&mut self, base: u64, delivered: u64, partial: usize) {
        self.hold_until = None;
        self.delivered += delivered;
        if delivered > 0 || partial > 0 {
            self.last_sent = Instant::now();
        }
        if self.cursors {
            // The client numbers them itself, one after the other.
            self.next_line_seq = Some(base + delivered);
        }
        self.written_through = Some((base + delivered, partial));
    }
}
