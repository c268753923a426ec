//! A subscriber's queue: spans of the shared log, its own copies and control
//! lines, what they hold and pin, and how they are written off or thrown away.

use std::collections::VecDeque;
use std::mem;
use std::time::Instant;

use super::*;

#[derive(Debug)]
pub(super) enum Span {
    /// Messages [next, end) of the shared log, of which the first `offset`
    /// bytes of message `next` are already written; `mark` is the mark of the
    /// batch holding `next` (what it pins is counted from there).
    Log {
        next: u64,
        end: u64,
        offset: usize,
        mark: u64,
    },
    /// Messages copied for this subscriber alone.
    Own(OwnChunk),
    /// A control line for this subscriber only.
    Control { line: Vec<u8>, offset: usize },
    /// Log messages [next, end) a filtered subscriber resumed from, not yet
    /// filtered: they are filtered and copied a little at a time as it reads
    /// (the log holds them meanwhile), so a long history costs its copies
    /// only as fast as it is read.
    History { next: u64, end: u64, mark: u64 },
}

#[derive(Debug, Default)]
pub(super) struct OwnChunk {
    /// Each message's line and newline, back to back.
    pub(super) bytes: Vec<u8>,
    /// Offset just past each message's newline.
    pub(super) ends: Vec<usize>,
    /// First message not yet fully written.
    pub(super) next_message: usize,
    /// Bytes written.
    pub(super) offset: usize,
}

impl OwnChunk {
    pub(super) fn footprint(&self) -> usize {
        self.bytes.capacity()
            + self.ends.capacity() * mem::size_of::<usize>()
            + 2 * ALLOCATION_OVERHEAD
    }

    pub(super) fn unwritten_messages(&self) -> usize {
        self.ends.len() - self.next_message
    }
}

impl SubscriberConn {
    /// The oldest log message this subscriber still needs, if any.
    pub(crate) fn oldest_log_seq(&self) -> Option<u64> {
        self.queue.iter().find_map(|span| match span {
            Span::Log { next, .. } | Span::History { next, .. } => Some(*next),
            _ => None,
        })
    }

    /// Memory held for this subscriber: the log from its oldest message on
    /// (the log lets go of batches in order, so that is what it keeps alive),
    /// its own copies and control lines, and the queue's own bookkeeping.
    pub(crate) fn held(&self, log: &MessageLog) -> usize {
        self.pinned(log) + self.own_footprint()
    }

    /// The log memory this subscriber keeps alive: every batch from the one
    /// holding its oldest message on.
    pub(crate) fn pinned(&self, log: &MessageLog) -> usize {
        self.pinned_until(log.end_mark(), self.free_from(log))
    }

    /// From which mark the log is kept for the replay ring anyway, at no cost
    /// of this subscriber's: under the drop policy, a subscriber keeps its
    /// place while the ring holds what it still needs (nothing is dropped
    /// that the ring keeps); under the disconnect policy its lag counts
    /// against its buffer as without a ring, so that it is let go while the
    /// ring still holds what it missed, and resumes from there without loss.
    pub(super) fn free_from(&self, log: &MessageLog) -> u64 {
        if self.ring_is_free {
            log.ring_mark()
        } else {
            log.end_mark()
        }
    }

    /// What it keeps alive of the batches before the one with mark `until`.
    /// What the replay ring keeps anyway (from `ring_mark` on) is not counted.
    pub(super) fn pinned_until(&self, until: u64, ring_mark: u64) -> usize {
        let first = self.queue.iter().find_map(|span| match span {
            Span::Log { mark, .. } | Span::History { mark, .. } => Some(*mark),
            _ => None,
        });
        first.map_or(0, |mark| {
            let end = until.min(ring_mark).max(mark);
            (end - mark) as usize
        })
    }

    /// Whether it keeps more of the log alive than its own limit allows: it
    /// stopped taking messages (it overflowed) while others went on. Only a
    /// subscriber that is behind can: the others take everything up to the
    /// log's end, within their limit.
    pub(crate) fn pins_too_much(&self, log: &MessageLog) -> bool {
        self.behind && self.pinned(log) > self.queue_capacity
    }

    /// The memory its log ranges would take as its own copy.
    pub(crate) fn log_ranges_size(&self, log: &MessageLog) -> usize {
        self.queue
            .iter()
            .map(|span| match span {
                Span::Log {
                    next, end, offset, ..
                } => {
                    log.held_between(*next, *end).saturating_sub(*offset) + 2 * ALLOCATION_OVERHEAD
                }
                _ => 0,
            })
            .sum()
    }

    /// Copies what it still needs from the log into its own spans, so that the
    /// log can let go of everything newer that the other subscribers are done with.
    pub(crate) fn detach_from_log(&mut self, log: &MessageLog) {
        for span in self.queue.iter_mut() {
            let Span::Log {
                next, end, offset, ..
            } = *span
            else {
                continue;
            };
            let mut slices = Vec::new();
            log.slices(next, offset, end, usize::MAX, &mut slices);
            let mut bytes = Vec::with_capacity(slices.iter().map(|s| s.len()).sum());
            for slice in slices {
                bytes.extend_from_slice(slice);
            }
            let base = log.offset_of(next) + offset as u64;
            let ends: Vec<usize> = (next + 1..=end)
                .map(|seq| (log.offset_of(seq) - base) as usize)
                .collect();
            let chunk = OwnChunk {
                bytes,
                ends,
                next_message: 0,
                offset: 0,
            };
            self.own_footprint += chunk.footprint();
            *span = Span::Own(chunk);
        }
    }

    /// Memory held for this subscriber alone (not shared through the log).
    pub(crate) fn own_footprint(&self) -> usize {
        // An empty queue keeps at most a few dozen slots (advance gives larger
        // ones back): not worth showing as bytes queued.
        let bookkeeping = if self.queue.is_empty() {
            0
        } else {
            self.queue.capacity() * mem::size_of::<Span>()
        };
        self.own_footprint + bookkeeping
    }

    /// Queues a control line; it counts against the buffer but is always
    /// accepted (control lines are few and small).
    pub(crate) fn queue_control(&mut self, line: Vec<u8>) {
        self.own_footprint += line.capacity() + ALLOCATION_OVERHEAD;
        self.queue.push_back(Span::Control { line, offset: 0 });
        self.last_sent = Instant::now();
    }

    /// Throws away every queued message but the one being written (its rest
    /// must still go, or the subscriber would read half a line), counting them
    /// as dropped; control lines stay. Returns how many were dropped.
    pub(crate) fn discard_queue(&mut self, log: &MessageLog, counters: &Counters) -> usize {
        let mut kept = VecDeque::new();
        let mut dropped = 0;
        let mut first = true;
        for span in self.queue.drain(..) {
            match span {
                Span::Control { .. } => kept.push_back(span),
                Span::Log {
                    next, end, offset, ..
                } => {
                    let mut next = next;
                    if first && offset > 0 {
                        // Keep the rest of the half-written message, as a copy.
                        let mut rest = Vec::new();
                        let mut slices = Vec::new();
                        log.slices(next, offset, next + 1, 2, &mut slices);
                        for slice in slices {
                            rest.extend_from_slice(slice);
                        }
                        let ends = vec![rest.len()];
                        kept.push_back(Span::Own(OwnChunk {
                            bytes: rest,
                            ends,
                            next_message: 0,
                            offset: 0,
                        }));
                        next += 1;
                    }
                    dropped += (end - next) as usize;
                }
                Span::Own(mut chunk) => {
                    if first && chunk.offset > 0 {
                        let end = chunk.ends[chunk.next_message];
                        dropped += chunk.unwritten_messages() - 1;
                        chunk.bytes.truncate(end);
                        chunk.bytes.shrink_to_fit();
                        chunk.ends.truncate(chunk.next_message + 1);
                        chunk.ends.shrink_to_fit();
                        kept.push_back(Span::Own(chunk));
                    } else {
                        dropped += chunk.unwritten_messages();
                    }
                }
                Span::History { next, end, .. } => {
                    // Not handed out yet, so not in fanout: counted as handed
                    // out and dropped (for a filter, an upper bound: they
                    // are not filtered any more).
                    bump(&counters.fanout, end - next);
                    self.queued_messages += (end - next) as usize;
                    dropped += (end - next) as usize;
                    self.history_filter = None;
                }
            }
            first = false;
        }
        self.queue = kept;
        self.own_footprint = self
            .queue
            .iter()
            .map(|span| match span {
                Span::Own(chunk) => chunk.footprint(),
                Span::Control { line, .. } => line.capacity() + ALLOCATION_OVERHEAD,
                Span::Log { .. } | Span::History { .. } => 0,
            })
            .sum();
        self.queued_messages -= dropped;
        self.count_drops(dropped, counters);
        dropped
    }

    /// Moves the queue past `written` bytes; returns how many messages that completed.
    pub(super) fn advance(&mut self, log: &MessageLog, mut written: usize) -> usize {
        let mut completed = 0;
        while written > 0 {
            let span = self
                .queue
                .front_mut()
                .expect("the kernel took no more than we gave it");
            let done = match span {
                Span::Log {
                    next,
                    end,
                    offset,
                    mark,
                } => {
                    let left = log.bytes_between(*next, *end) as usize - *offset;
                    if written >= left {
                        written -= left;
                        completed += (*end - *next) as usize;
                        true
                    } else {
                        let (to, within) = log.advance(*next, *offset, written);
                        completed += (to - *next) as usize;
                        *next = to;
                        *offset = within;
                        *mark = log.mark_of(to);
                        written = 0;
                        false
                    }
                }
                Span::Own(chunk) => {
                    let step = written.min(chunk.bytes.len() - chunk.offset);
                    written -= step;
                    chunk.offset += step;
                    while chunk.next_message < chunk.ends.len()
                        && chunk.ends[chunk.next_message] <= chunk.offset
                    {
                        chunk.next_message += 1;
                        completed += 1;
                    }
                    chunk.offset == chunk.bytes.len()
                }
                Span::Control { line, offset } => {
                    let step = written.min(line.len() - *offset);
                    written -= step;
                    *offset += step;
                    *offset == line.len()
                }
                Span::History { .. } => {
                    unreachable!("nothing of a history is written before it is copied")
                }
            };
            if done {
                match self.queue.pop_front() {
                    Some(Span::Own(chunk)) => self.own_footprint -= chunk.footprint(),
                    Some(Span::Control { line, .. }) => {
                        self.own_footprint -= line.capacity() + ALLOCATION_OVERHEAD
                    }
                    _ => {}
                }
            }
        }
        if self.queue.is_empty() && self.queue.capacity() > 64 {
            // A long queue's bookkeeping goes back once it is written.
            self.queue = VecDeque::new();
        }
        self.queued_messages -= completed;
        completed
    }
}
