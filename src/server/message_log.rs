//! The messages that subscribers still have to be sent, held once for all of
//! them.
//!
//! Every batch the server thread takes from the backlog is appended here and
//! numbered: each message gets the next sequence number, each byte the next
//! offset in one stream. A subscriber that receives every notification holds
//! no copy and no list of pieces, only the range of sequence numbers it has
//! still to write, so a thousand lagging subscribers cost what one does, and
//! what one of them holds is exactly the log bytes in its range. A batch leaves
//! the log (and goes back to the backlog's pool) once no subscriber's range
//! reaches into it.

use std::collections::VecDeque;

use crate::backlog::Batch;

#[derive(Debug)]
struct Entry {
    /// Sequence number of the batch's first message.
    first_seq: u64,
    /// Stream offset of the batch's first byte.
    first_byte: u64,
    /// Memory held by all batches before this one since the log began (see
    /// `mark_of_entry`).
    first_mark: u64,
    batch: Batch,
}

impl Entry {
    fn end_seq(&self) -> u64 {
        self.first_seq + self.batch.message_count() as u64
    }

    /// What keeping this batch alive costs, as the limits count it.
    fn held(&self) -> u64 {
        (self.batch.bytes.len() + self.batch.message_count() * MESSAGE_OVERHEAD + ENTRY_OVERHEAD)
            as u64
    }
}

/// Bookkeeping the allocator adds to each batch beyond its two buffers.
pub(crate) const ENTRY_OVERHEAD: usize = std::mem::size_of::<Entry>() + 2 * 16;
/// What each message costs beside its bytes: its end in the batch's list.
pub(crate) const MESSAGE_OVERHEAD: usize = std::mem::size_of::<usize>();

#[derive(Debug, Default)]
pub(crate) struct MessageLog {
    entries: VecDeque<Entry>,
    /// Sequence number the next appended message gets.
    next_seq: u64,
    /// Stream offset just past the last appended byte.
    end_byte: u64,
    /// Heap memory the entries hold: buffer capacities plus overhead.
    footprint: usize,
    /// Memory held by every batch ever appended, as the limits count it: a
    /// subscriber whose oldest message is in a batch with mark M keeps
    /// `end_mark - M` alive, computed in O(1).
    end_mark: u64,
    /// The oldest batch the replay ring keeps (its mark; end_mark when the
    /// ring is off or empty): what is kept for the ring is nobody's cost.
    ring_mark: u64,
    ring_seq: u64,
    /// The ring's size in bytes; 0: off.
    ring_bytes: usize,
}

impl MessageLog {
    /// Appends a batch; returns the sequence number of its first message.
    pub(crate) fn append(&mut self, batch: Batch) -> u64 {
        let first_seq = self.next_seq;
        self.next_seq += batch.message_count() as u64;
        let first_byte = self.end_byte;
        self.end_byte += batch.bytes.len() as u64;
        self.footprint += footprint_of(&batch);
        let entry = Entry {
            first_seq,
            first_byte,
            first_mark: self.end_mark,
            batch,
        };
        self.end_mark += entry.held();
        self.entries.push_back(entry);
        first_seq
    }

    /// Sequence number the next appended message will get.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub(crate) fn footprint(&self) -> usize {
        self.footprint
    }

    fn entry_index(&self, seq: u64) -> usize {
        // Most look-ups are for the newest batch, just appended.
        if let Some(last) = self.entries.back() {
            if seq >= last.first_seq && seq < last.end_seq() {
                return self.entries.len() - 1;
            }
        }
        self.entries.partition_point(|entry| entry.end_seq() <= seq)
    }

    /// The mark of the batch holding message `seq` (`next_seq()`: the end mark).
    pub(crate) fn mark_of_entry(&self, seq: u64) -> u64 {
        if seq >= self.next_seq {
            return self.end_mark;
        }
        self.entries[self.entry_index(seq)].first_mark
    }

    /// Where the replay ring starts: its mark and the number of its oldest message.
    pub(crate) fn ring_mark(&self) -> u64 {
        if self.ring_bytes == 0 {
            self.end_mark
        } else {
            self.ring_mark
        }
    }

    pub(crate) fn ring_seq(&self) -> u64 {
        if self.ring_bytes == 0 {
            self.next_seq
        } else {
            self.ring_seq
        }
    }

    /// The oldest message the log still holds (next_seq when it holds none).
    pub(crate) fn oldest_seq(&self) -> u64 {
        self.entries.front().map_or(self.next_seq, |e| e.first_seq)
    }

    /// Marks the newest batches that fit in `bytes` as the replay ring.
    pub(crate) fn keep_ring(&mut self, bytes: usize) {
        self.ring_bytes = bytes;
        if bytes == 0 {
            self.ring_mark = self.end_mark;
            self.ring_seq = self.next_seq;
            return;
        }
        let limit = bytes as u64;
        // The ring only ever moves forward: start from where it was.
        let mut index = self
            .entries
            .partition_point(|entry| entry.first_mark < self.ring_mark);
        while index < self.entries.len() && self.end_mark - self.entries[index].first_mark > limit {
            index += 1;
        }
        match self.entries.get(index) {
            Some(entry) => {
                self.ring_mark = entry.first_mark;
                self.ring_seq = entry.first_seq;
            }
            None => {
                self.ring_mark = self.end_mark;
                self.ring_seq = self.next_seq;
            }
        }
    }

    /// Memory the ring holds, as the limits count it.
    pub(crate) fn ring_held(&self) -> u64 {
        self.end_mark - self.ring_mark()
    }

    /// The mark past every batch: what a subscriber pinning from mark M
    /// holds is `end_mark() - M`.
    pub(crate) fn end_mark(&self) -> u64 {
        self.end_mark
    }

    /// The batch holding message `seq` and the message's index in it.
    pub(crate) fn locate(&self, seq: u64) -> (&Batch, usize) {
        let entry = &self.entries[self.entry_index(seq)];
        (&entry.batch, (seq - entry.first_seq) as usize)
    }

    /// Stream offset where message `seq` starts (`next_seq()`: the end).
    pub(crate) fn offset_of(&self, seq: u64) -> u64 {
        if seq >= self.next_seq {
            return self.end_byte;
        }
        let entry = &self.entries[self.entry_index(seq)];
        entry.first_byte + entry.batch.start_of((seq - entry.first_seq) as usize) as u64
    }

    /// Bytes of messages [from, to).
    pub(crate) fn bytes_between(&self, from: u64, to: u64) -> u64 {
        self.offset_of(to) - self.offset_of(from)
    }

    /// Memory that keeping messages [from, to) alive costs: their bytes, their
    /// entries in the batches' end lists, and each batch's own bookkeeping.
    pub(crate) fn held_between(&self, from: u64, to: u64) -> usize {
        if from >= to {
            return 0;
        }
        let batches = self.entry_index(to - 1) - self.entry_index(from) + 1;
        self.bytes_between(from, to) as usize
            + (to - from) as usize * MESSAGE_OVERHEAD
            + batches * ENTRY_OVERHEAD
    }

    /// Where writing `step` more bytes from message `seq`, of which `offset`
    /// bytes were written, leaves: the message then being written and the
    /// bytes of it already written.
    pub(crate) fn advance(&self, seq: u64, offset: usize, step: usize) -> (u64, usize) {
        let target = self.offset_of(seq) + (offset + step) as u64;
        if target >= self.end_byte {
            return (self.next_seq, 0);
        }
        let index = self
            .entries
            .partition_point(|entry| entry.first_byte + entry.batch.bytes.len() as u64 <= target);
        let entry = &self.entries[index];
        let within = (target - entry.first_byte) as usize;
        let message = entry.batch.ends.partition_point(|&end| end <= within);
        (
            entry.first_seq + message as u64,
            within - entry.batch.start_of(message),
        )
    }

    /// Appends to `out` the bytes of messages [from, to), of which the first
    /// `skip` bytes are left out, as at most `room` slices, in order.
    pub(crate) fn slices<'a>(
        &'a self,
        from: u64,
        skip: usize,
        to: u64,
        room: usize,
        out: &mut Vec<&'a [u8]>,
    ) {
        if from >= to || room == 0 {
            return;
        }
        let mut index = self.entry_index(from);
        let mut seq = from;
        let mut skip = skip;
        let limit = out.len() + room;
        while seq < to && out.len() < limit {
            let entry = &self.entries[index];
            let first = (seq - entry.first_seq) as usize;
            let last = (to.min(entry.end_seq()) - entry.first_seq) as usize;
            let start = entry.batch.start_of(first) + skip;
            let end = entry.batch.ends[last - 1];
            if start < end {
                out.push(&entry.batch.bytes[start..end]);
            }
            skip = 0;
            seq = entry.end_seq().min(to);
            index += 1;
        }
    }

    /// Removes the batches every message of which is before `keep_from`,
    /// handing them to `recycle`.
    pub(crate) fn trim(&mut self, keep_from: u64, mut recycle: impl FnMut(Batch)) {
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.end_seq() <= keep_from)
        {
            let entry = self.entries.pop_front().expect("checked above");
            self.footprint -= footprint_of(&entry.batch);
            recycle(entry.batch);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The memory a batch really takes: what its buffers reserved, not what they hold.
pub(crate) fn footprint_of(batch: &Batch) -> usize {
    batch.bytes.capacity() + batch.ends.capacity() * std::mem::size_of::<usize>() + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(messages: &[&str]) -> Batch {
        let mut batch = Batch::default();
        for message in messages {
            batch.bytes.extend_from_slice(message.as_bytes());
            batch.bytes.push(b'\n');
            batch.ends.push(batch.bytes.len());
        }
        batch
    }

    #[test]
    fn numbering_offsets_slices_and_trim() {
        let mut log = MessageLog::default();
        assert_eq!(log.append(batch(&["a", "bb"])), 0);
        assert_eq!(log.append(batch(&["ccc"])), 2);
        assert_eq!(log.append(batch(&["d", "e", "f"])), 3);
        assert_eq!(log.next_seq(), 6);
        assert_eq!(log.offset_of(0), 0);
        assert_eq!(log.offset_of(2), 5);
        assert_eq!(log.offset_of(3), 9);
        assert_eq!(log.offset_of(6), 15);
        assert_eq!(log.bytes_between(1, 4), 9);
        assert_eq!(
            log.held_between(1, 4),
            9 + 3 * MESSAGE_OVERHEAD + 3 * ENTRY_OVERHEAD
        );
        let mut out = Vec::new();
        log.slices(1, 1, 5, 8, &mut out);
        assert_eq!(out, vec![&b"b\n"[..], b"ccc\n", b"d\ne\n"]);
        out.clear();
        log.slices(0, 0, 6, 2, &mut out);
        assert_eq!(out.len(), 2);
        let mut recycled = 0;
        assert_eq!(log.advance(1, 1, 2), (2, 0));
        assert_eq!(log.advance(1, 1, 3), (2, 1));
        assert_eq!(log.advance(0, 0, 15), (6, 0));
        log.trim(3, |_| recycled += 1);
        assert_eq!(recycled, 2);
        assert_eq!(log.offset_of(3), 9);
        assert_eq!(log.locate(4).1, 1);
        log.trim(6, |_| recycled += 1);
        assert!(log.is_empty());
        assert_eq!(log.footprint(), 0);
    }
}
