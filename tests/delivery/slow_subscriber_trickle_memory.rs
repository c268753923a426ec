//! A subscriber that never reads, while notifications trickle in one at a
//! time (each its own batch), still bounds the publisher's memory at its buffer
//! limit. Queued messages must not pin the much larger chunks they were
//! batched in. One test in its own binary: it measures the whole process's
//! resident memory.

use crate::common;

use common::*;
use notif::{Options, Publisher};

#[test]
fn trickled_notifications_queued_for_a_stalled_subscriber_cost_their_size_not_their_batch() {
    const SUBSCRIBER_BUFFER: usize = 1024 * 1024;
    isolated!();
    let dir = TempDir::new("trickle_memory");
    let options = Options {
        subscriber_buffer: SUBSCRIBER_BUFFER,
        max_message: 64 * 1024,
        ..Options::default()
    };
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let _stalled = RawReader::connect_to(&publisher, dir.socket(), 1);
    let line = fixture("nova-instance-update.json");
    let baseline = resident_bytes();
    // Enough one-message batches to fill the subscriber's buffer twice over.
    let messages = 2 * SUBSCRIBER_BUFFER / line.len();
    for sent in 1..=messages as u64 {
        publisher.emit(&line).unwrap();
        // Each message is taken by the server thread on its own.
        wait_until("the server thread takes the message", || {
            let stats = publisher.stats();
            stats.fanout + stats.dropped_slow >= sent && stats.emitted == sent
        });
    }
    let stats = publisher.stats();
    assert!(stats.dropped_slow > 0, "the buffer filled: {stats:?}");
    let growth = resident_bytes().saturating_sub(baseline);
    eprintln!(
        "resident memory grew by {} KiB; {} messages queued",
        growth / 1024,
        stats.fanout - stats.delivered - stats.dropped_slow
    );
    // The limit, plus 1 MiB for allocator slack and the backlog's pool of empty
    // chunks. Pinning a 64 KiB chunk per queued message took 2.4 MiB here.
    let allowed = SUBSCRIBER_BUFFER as u64 + 1024 * 1024;
    assert!(
        growth <= allowed,
        "memory grew by {} KiB for a {} KiB subscriber buffer",
        growth / 1024,
        SUBSCRIBER_BUFFER / 1024
    );
}
