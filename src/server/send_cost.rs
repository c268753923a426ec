//! What writing to one peer costs the server thread, and the budget it must
//! stay within.
//!
//! A send to a Unix socket wakes whatever waits on the peer's end, on the
//! sending thread: a peer that registers its socket in many epoll instances
//! (or dup()s it and registers every copy) makes each send run one kernel
//! callback per registration, tens of thousands for a peer with a high
//! descriptor limit. That cost is the peer's choice, so it is measured and
//! bounded: a send may cost [`BASE_ALLOWANCE`] plus [`ALLOWANCE_PER_BYTE_NS`]
//! for each byte it carries (a 256 KiB write gets about 1.2 ms, far more
//! than the copy and its page allocations cost on a busy machine; a small
//! one 200 us, some 40 times a normal send). A send over it by the wall clock
//! puts the peer on probation: its next [`PROBATION_SENDS`] sends are timed
//! in this thread's CPU time, which a busy machine's preemption does not
//! inflate, and [`STRIKES`] of them over the allowance exceed the budget
//! (a normal peer's occasional slow send, an interrupt charged to the
//! thread, a page reclaim, never adds up to that):
//! the server cuts the peer off with the reason `too_costly`. An attacker's
//! cost is so bounded to a few sends per connection, and below the
//! allowance per send.

use std::time::{Duration, Instant};

/// What any send may cost, whatever it carries.
pub(crate) const BASE_ALLOWANCE: Duration = Duration::from_micros(200);
/// What a send may cost more per byte it carries (250 MB/s, a slow copy).
pub(crate) const ALLOWANCE_PER_BYTE_NS: u64 = 4;
/// Sends timed in CPU time once one looked costly.
const PROBATION_SENDS: u8 = 8;
/// Sends of a probation over the allowance that exceed the budget.
const STRIKES: u8 = 6;

/// The allowance for a send of `bytes`.
pub(crate) fn allowance(bytes: usize) -> Duration {
    BASE_ALLOWANCE + Duration::from_nanos(bytes as u64 * ALLOWANCE_PER_BYTE_NS)
}

/// One peer's send costs, as far as they matter.
#[derive(Debug, Default)]
pub(crate) struct SendCost {
    /// Sends left to time in CPU time (0: not on probation).
    probation: u8,
    /// Sends of this probation that were over the allowance.
    strikes: u8,
    /// The budget is exceeded: the peer is to be cut off.
    exceeded: bool,
    /// The costliest send of the probation in CPU time, and its bytes.
    worst: (Duration, usize),
}

/// A send being timed.
#[derive(Debug)]
pub(crate) struct Timing {
    wall: Instant,
    cpu: Option<Duration>,
}

impl SendCost {
    /// Call before a send.
    pub(crate) fn start(&self) -> Timing {
        Timing {
            wall: Instant::now(),
            cpu: (self.probation > 0).then(thread_cpu_time),
        }
    }

    /// Call after the send, with the bytes it carried.
    pub(crate) fn finish(&mut self, timing: Timing, bytes: usize) {
        let allowed = allowance(bytes);
        match timing.cpu {
            None => {
                if timing.wall.elapsed() > allowed {
                    self.probation = PROBATION_SENDS;
                    self.strikes = 0;
                    self.worst = (Duration::ZERO, 0);
                }
            }
            Some(before) => {
                let cost = thread_cpu_time().saturating_sub(before);
                if cost > allowed {
                    self.strikes += 1;
                }
                if cost > self.worst.0 {
                    self.worst = (cost, bytes);
                }
                self.probation -= 1;
                if self.strikes >= STRIKES {
                    self.exceeded = true;
                    self.probation = 0;
                }
            }
        }
    }

    /// Whether the peer's sends cost more than the budget allows.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// What the peer is told when it is cut off.
    pub(crate) fn verdict(&self) -> String {
        let (cost, bytes) = self.worst;
        format!(
            "disconnected: writing to this subscriber cost the publisher's thread far more than the bytes it carried ({STRIKES} of {PROBATION_SENDS} sends over their allowance; one of {bytes} bytes took {} us of CPU, allowed {} us): is its socket registered in very many epoll instances?",
            cost.as_micros(),
            allowance(bytes).as_micros()
        )
    }
}

/// CPU time this thread has used (CLOCK_THREAD_CPUTIME_ID: kernel time
/// included, time spent waiting for a CPU not).
pub(crate) fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes one timespec into a live one; this clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(cpu: Duration) {
        let start = thread_cpu_time();
        while thread_cpu_time() - start < cpu {}
    }

    #[test]
    fn a_peer_is_cut_off_only_after_strikes_in_cpu_time() {
        let mut cost = SendCost::default();
        // Cheap sends: nothing happens.
        for _ in 0..100 {
            let t = cost.start();
            cost.finish(t, 100);
        }
        assert!(!cost.exceeded() && cost.probation == 0);
        // One slow by the wall clock (a preemption, say): probation only.
        let t = cost.start();
        std::thread::sleep(Duration::from_millis(2));
        cost.finish(t, 100);
        assert_eq!(cost.probation, PROBATION_SENDS);
        // Sleeping costs no CPU: the probation ends clean.
        for _ in 0..PROBATION_SENDS {
            let t = cost.start();
            std::thread::sleep(Duration::from_millis(1));
            cost.finish(t, 100);
        }
        assert!(!cost.exceeded() && cost.probation == 0);
        // Sends that really cost CPU exceed the budget after STRIKES.
        let t = cost.start();
        spin(Duration::from_micros(1500));
        cost.finish(t, 100);
        for i in 0..STRIKES {
            assert!(!cost.exceeded(), "cut off after {i} strikes");
            let t = cost.start();
            spin(Duration::from_micros(1500));
            cost.finish(t, 100);
        }
        assert!(cost.exceeded());
    }

    #[test]
    fn big_sends_get_a_bigger_allowance() {
        assert_eq!(allowance(0), BASE_ALLOWANCE);
        assert!(allowance(256 * 1024) > Duration::from_millis(1));
    }
}
