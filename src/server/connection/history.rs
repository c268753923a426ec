//! A resumed history (`after`, `replay`): log messages a subscriber asked
//! for again, filtered and copied a bounded step at a time as it reads.

use std::mem;
use std::sync::Arc;

use super::*;

/// About how much of a resumed history is filtered and copied at a time.
const HISTORY_STEP_BYTES: usize = 64 * 1024;

/// Most log entries one step of a resumed history reads, whatever passes the
/// filter: a filter that matches nothing must not make one step read the
/// whole ring (a step costs the server thread at most about 0.3 ms).
pub(crate) const HISTORY_STEP_ENTRIES: u64 = 512;

impl SubscriberConn {
    /// Queues what a resuming subscriber missed: log messages [from, to), all
    /// of them or, with a filter, those that pass it (filtered as it reads).
    /// `missed` comes first: Some(n) for n gone, None for an unknown number.
    /// `replay`: they count as replayed (not when they are what was held
    /// back for it until its request, see `withdraw_held`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn resume(
        &mut self,
        log: &MessageLog,
        from: u64,
        to: u64,
        filter: Option<Arc<Filter>>,
        missed: Option<Option<u64>>,
        replay: bool,
        counters: &Counters,
    ) {
        self.history_is_replay = replay;
        match missed {
            Some(Some(0)) | None => {}
            Some(Some(n)) => self.queue_control(lines::dropped(n)),
            Some(None) => self.queue_control(lines::dropped_unknown()),
        }
        if from >= to {
            return;
        }
        match filter {
            None => {
                bump(&counters.fanout, to - from);
                if replay {
                    bump(&counters.replayed, to - from);
                }
                self.enqueue_log(log, from, to);
            }
            Some(filter) => {
                // Its verdict caches are this subscriber's (the filter is shared).
                self.own_footprint += HISTORY_CACHE_BUDGET;
                self.history_filter = Some(CachedFilter::new(filter));
                self.queue.push_back(Span::History {
                    next: from,
                    end: to,
                    mark: log.mark_of(from),
                });
            }
        }
    }

    /// Filters and copies the next part of a resumed history (about 64 KiB
    /// of what passes the filter) ahead of the rest, if the queue starts with one.
    /// At most `max_entries` log entries are read, whatever passes.
    pub(super) fn materialize_history(
        &mut self,
        log: &MessageLog,
        counters: &Counters,
        max_entries: u64,
    ) {
        let Some(Span::History { next, end, .. }) = self.queue.front() else {
            return;
        };
        let (mut seq, end) = (*next, *end);
        // Taken out for the step (not cloned: a filter may hold 192 patterns).
        let Some(mut filter) = self.history_filter.take() else {
            return;
        };
        let mut copies: Vec<Span> = Vec::new();
        let mut chunk = OwnChunk::default();
        let (mut wanted, mut left_out) = (0u64, 0u64);
        // What this step copies, all chunks and seq lines counted: a filter
        // that matches every other message starts a chunk per message, so
        // the size of the current chunk alone would never stop the loop.
        let mut copied = 0usize;
        let walk_end = end.min(seq.saturating_add(max_entries.min(HISTORY_STEP_ENTRIES)));
        while seq < walk_end && copied < HISTORY_STEP_BYTES {
            let (batch, index) = log.locate(seq);
            let line = &batch.bytes[batch.start_of(index)..batch.ends[index]];
            if filter.matches(&message_fields(&line[..line.len() - 1])) {
                if self.cursors && self.next_line_seq != Some(seq) {
                    if !chunk.ends.is_empty() {
                        copies.push(Span::Own(mem::take(&mut chunk)));
                    }
                    let line = lines::seq(seq);
                    copied +=
                        line.capacity() + 2 * mem::size_of::<Span>() + 4 * ALLOCATION_OVERHEAD;
                    copies.push(Span::Control { line, offset: 0 });
                }
                copied += line.len() + mem::size_of::<usize>();
                chunk.bytes.extend_from_slice(line);
                chunk.ends.push(chunk.bytes.len());
                self.next_line_seq = Some(seq + 1);
                wanted += 1;
            } else {
                left_out += 1;
            }
            seq += 1;
        }
        if !chunk.ends.is_empty() {
            copies.push(Span::Own(chunk));
        }
        bump(&counters.fanout, wanted);
        if self.history_is_replay {
            bump(&counters.replayed, wanted);
        }
        bump(&counters.filtered, left_out);
        self.queued_messages += wanted as usize;
        if seq >= end {
            self.queue.pop_front();
            self.own_footprint -= HISTORY_CACHE_BUDGET;
        } else if let Some(Span::History { next, mark, .. }) = self.queue.front_mut() {
            *next = seq;
            *mark = log.mark_of(seq);
            self.history_filter = Some(filter);
        }
        for span in copies.into_iter().rev() {
            match &span {
                Span::Own(chunk) => self.own_footprint += chunk.footprint(),
                Span::Control { line, .. } => {
                    self.own_footprint += line.capacity() + ALLOCATION_OVERHEAD
                }
                _ => {}
            }
            self.queue.push_front(span);
        }
    }
}
