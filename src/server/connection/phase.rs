//! Where a connection is in its life, as one type: the server's counts of
//! connections per phase (see server::table) follow from it alone.

use std::time::Instant;

/// A connection's phase. Every connection starts `Open` or, when accepted
/// while the publisher was full, `Probing`; both end in `Closing`, then the
/// connection is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Accepted while max_subscribers were connected: it may ask for stats
    /// until `until` (a monitor must see a full publisher), and is refused
    /// otherwise. It gets no notifications meanwhile.
    Probing { until: Instant },
    /// Served: it gets notifications, as a plain reader until its request
    /// (if it sends one) says what it wants.
    Open,
    /// Being let go: it gets no more notifications, and is closed once its
    /// queue (an error line, a stats answer, what a slow one had left) is
    /// written, or at `until` (linger) whatever is left.
    Closing { why: Closing, until: Instant },
}

/// Why a subscriber is being closed once its queue is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// Its request was invalid, or not finished in time.
    BadRequest,
    /// It asked for stats and got them.
    Answered,
    /// It fell behind under the disconnect policy.
    TooSlow,
    /// It held the most when the memory budget ran out, under the disconnect policy.
    Memory,
    /// The publisher was full and it did not ask for stats.
    Full,
    /// Writing to it cost the server thread more than its budget (see send_cost).
    TooCostly,
}

impl Phase {
    pub(crate) fn is_open(&self) -> bool {
        matches!(self, Phase::Open)
    }

    pub(crate) fn is_probing(&self) -> bool {
        matches!(self, Phase::Probing { .. })
    }

    pub(crate) fn is_closing(&self) -> bool {
        matches!(self, Phase::Closing { .. })
    }

    /// When the phase's time is up: a probe's grace, a closing one's linger.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match *self {
            Phase::Probing { until } | Phase::Closing { until, .. } => Some(until),
            Phase::Open => None,
        }
    }
}
