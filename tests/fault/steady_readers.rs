//! Readers that keep up within their buffer lose nothing, whatever the sizes
//! of the batches the server thread takes: two readers, a 192 KiB subscriber
//! buffer, an emitter never more than 500 notifications (about 67 KB, more
//! than one 64 KiB chunk of the backlog) ahead of the slower one. (The
//! kernel's half of a buffer holds much less than its size when it is
//! written in small pieces: it counts each piece's bookkeeping.) (A subscriber well into a large batch was once charged
//! for the whole batch, and such readers lost a few notifications now and
//! then; `make soak` found it.)

use crate::common;
use crate::common::faults;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use faults::*;
use notif::Publisher;

#[test]
fn readers_within_their_buffer_lose_nothing() {
    let seconds = scaled(4, 20);
    let dir = TempDir::new("steady");
    let options = fault_options(192 * 1024);
    let publisher = Publisher::open_with(dir.socket(), &options).unwrap();
    let steady = steady_readers(&publisher, &dir.socket(), 2, 1);
    let pacer = Pacer::following(&steady, 500);
    let stop = AtomicBool::new(false);
    let sent = std::thread::scope(|scope| {
        let emitter = scope.spawn(|| emit_stream_until(&publisher, &pacer, 0, 100, &stop));
        let until = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < until && !emitter.is_finished() {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        emitter.join().unwrap()
    });
    for reader in steady {
        let (_, counts) = reader.join();
        assert_eq!(
            counts,
            vec![sent],
            "a reader that kept up missed notifications"
        );
    }
    let stats = wait_for_quiet(&publisher);
    eprintln!("{sent} notifications to 2 readers within their buffers: {stats:?}");
    assert_eq!(stats.dropped_slow, 0, "{stats:?}");
}
