//! Delivery: every notification in order and once, slow subscribers (dropped
//! or disconnected, and the memory they may cost), write-through (emitting
//! threads writing to quiet subscribers themselves), subscribers that hang up
//! without raising SIGPIPE.
//!
//! Process-wide state: the tests that set SIGPIPE to its default disposition
//! (sigpipe_and_hangups, and write_through's hang-up test) and the ones that
//! measure the process's resident memory (slow_subscriber_memory,
//! slow_subscriber_trickle_memory) each run alone in a copy of this binary
//! (`isolated!();`, common::run_isolated). Every other test runs in
//! parallel threads.

#[path = "../common/mod.rs"]
mod common;

mod in_order_exactly_once;
mod sigpipe_and_hangups;
mod slow_subscriber_memory;
mod slow_subscriber_trickle_memory;
mod slow_subscribers;
mod write_through;
