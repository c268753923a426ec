//! A connection's one request: a subscription (with where its stream starts:
//! live, the replay ring, or after a cursor) or a stats request, and refusals.

use std::os::fd::RawFd;

use super::*;

impl Server {
    pub(super) fn handle_request(&mut self, fd: RawFd, line: &[u8], followed_by_more: bool) {
        let request = match Request::parse(line) {
            Ok(_) if followed_by_more => {
                return self.refuse_request(fd, ONE_REQUEST, Reason::BadRequest)
            }
            Ok(request) => request,
            Err(why) => return self.refuse_request(fd, &why, Reason::BadRequest),
        };
        let probing = self.connections.get(&fd).is_some_and(|s| s.is_probing());
        match request {
            Request::Stats => {
                let stats_line = self.stats_line(fd);
                let Some(subscriber) = self.connections.get_mut(&fd) else {
                    return;
                };
                bump(&self.shared.counters.stats_requests, 1);
                subscriber.queue_control(stats_line);
                self.begin_closing(fd, Closing::Answered);
                // An answer nobody reads is held until linger runs out: it
                // counts in the budget like any queue (a quiet publisher
                // would otherwise never check it).
                self.enforce_memory_limit(0, None);
            }
            Request::Subscribe { .. } if probing => self.refuse_full(fd),
            Request::Subscribe {
                filter,
                markers,
                heartbeat,
                cursors,
                start,
            } => {
                self.note_unnumbered();
                let first_seq = self.connections.get(&fd).map_or(0, |s| s.first_seq);
                let history = match self.history(start, first_seq) {
                    Ok(history) => history,
                    Err(why) => return self.refuse_request(fd, &why, Reason::BadRequest),
                };
                let everything = filter.is_everything();
                if !everything && self.filters.cost_to_add(&filter) > self.fixed_room() {
                    let why = "the publisher's memory limit leaves no room for another filter; subscribe with a filter another subscriber uses, a smaller one, or none";
                    return self.refuse_request(fd, why, Reason::Memory);
                }
                let filter_id = (!everything).then(|| self.filters.add(filter));
                let epoch = cursors.then_some(self.shared.epoch);
                let Some(subscriber) = self.connections.get_mut(&fd) else {
                    return;
                };
                // What was held back since it connected is not lost to a
                // live start: it comes after the acknowledgement, filtered
                // and numbered. A resumed history covers it already.
                let withheld = subscriber.withdraw_held(&self.shared.counters);
                let replay = history.is_some();
                let history = history.or(withheld.map(|from| (from, Some(Some(0)))));
                self.connections
                    .subscribe(fd, filter_id, markers, heartbeat, epoch);
                if let Some((from, missed)) = history {
                    let to = self.log.next_seq();
                    let filter = filter_id.map(|id| self.filters.shared(id));
                    let Some(subscriber) = self.connections.get_mut(&fd) else {
                        return;
                    };
                    subscriber.resume(
                        &self.log,
                        from,
                        to,
                        filter,
                        missed,
                        replay,
                        &self.shared.counters,
                    );
                }
                self.write_to(fd);
            }
        }
    }

    /// Where a resuming subscriber's stream starts in the log, and what to
    /// say first about what it missed (Some(n): n are gone; None: unknown).
    /// None for a live start. An error for a cursor that cannot be.
    #[allow(clippy::type_complexity)]
    pub(super) fn history(
        &self,
        start: Start,
        first_seq: u64,
    ) -> Result<Option<(u64, Option<Option<u64>>)>, String> {
        // What the log holds beyond the ring (kept for subscribers that lag)
        // is theirs: a connection gets the ring and what came after it
        // connected, nothing older.
        let floor = if self.options.replay > 0 {
            self.log.ring_seq().min(first_seq)
        } else {
            first_seq
        };
        let oldest = self.log.oldest_seq().max(floor);
        let next = self.log.next_seq();
        match start {
            Start::Live => Ok(None),
            Start::Replay => Ok(Some((oldest, Some(Some(oldest))))),
            Start::After(cursor) if cursor.epoch != self.shared.epoch => {
                Ok(Some((oldest, Some(None))))
            }
            Start::After(cursor) => {
                let from = cursor
                    .seq
                    .checked_add(1)
                    .ok_or("the cursor's number is out of range")?;
                if from > next {
                    return Err(format!(
                        "the cursor {cursor} is beyond this publisher's last notification (the next will be number {next})"
                    ));
                }
                // Notifications dropped unnumbered after the cursor: uncountable.
                if self.unnumbered_before.is_some_and(|before| before >= from) {
                    return Ok(Some((oldest.max(from), Some(None))));
                }
                if from < oldest {
                    return Ok(Some((oldest, Some(Some(oldest - from)))));
                }
                Ok(Some((from, Some(Some(0)))))
            }
        }
    }

    /// Answers a bad request with an error line, then closes the connection.
    pub(super) fn refuse_request(&mut self, fd: RawFd, why: &str, reason: Reason) {
        let Some(subscriber) = self.connections.get_mut(&fd) else {
            return;
        };
        if subscriber.is_closing() {
            return;
        }
        bump(&self.shared.counters.bad_requests, 1);
        subscriber.queue_control(lines::error(&reason, why));
        self.begin_closing(fd, Closing::BadRequest);
    }
}
