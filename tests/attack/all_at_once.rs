//! Red team: every hostile peer at once beside one well-behaved subscriber.
//! Peers that never read (with and without filters, resumed from the start
//! of the ring with a sparse filter or none), peers that churn connections
//! and stats requests, a request dripped a byte at a time and one left
//! unfinished, while the publisher emits. The well-behaved subscriber gets
//! every notification in order, the counters balance once things are quiet
//! (fanout == delivered + dropped_slow + dropped_closed), and close returns
//! within its linger plus a generous allowance.

use crate::common;
use crate::common::faults;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use faults::*;
use notif::{Options, Publisher};

const COUNT: u64 = 20_000;
// READ_TIMEOUT is 20 s; a stall shows as a missing line.

fn line(seq: u64) -> Vec<u8> {
    let kind = ["compute.instance.update", "image.upload", "volume.attach"][seq as usize % 3];
    format!("{{\"event_type\":\"{kind}\",\"priority\":\"INFO\",\"stream\":0,\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(100))
        .into_bytes()
}

#[test]
fn a_reader_beside_every_attacker_gets_everything_and_the_counters_balance() {
    isolated!();
    let _serial = serial();
    let dir = TempDir::new("redteam-all-at-once");
    let path = dir.socket();
    let mut options = Options::default();
    options.set_memory_limit(16 * 1024 * 1024).unwrap();
    options.set_replay(4 * 1024 * 1024).unwrap();
    options.set_subscriber_buffer(256 * 1024).unwrap();
    options.set_max_message(64 * 1024).unwrap();
    options.set_linger(Duration::from_secs(1));
    let publisher = Publisher::open_with(&path, &options).unwrap();
    // A first half before the attackers come, so that the ring has history.
    let mut reader = RawReader::connect_to(&publisher, &path, 1);
    reader.write_all(b"{}\n").unwrap();
    assert!(reader.line().starts_with(b"{\"notif\":"));
    let pacer_seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = Arc::clone(&pacer_seen);
    let reading = std::thread::spawn(move || {
        for expected in 0..COUNT {
            let got = reader.line();
            let (_, seq) = parse_numbered(&got);
            assert_eq!(seq, expected, "lost or out of order");
            seen.store(expected + 1, Ordering::Relaxed);
        }
    });
    let pacer = Pacer::new(vec![Arc::clone(&pacer_seen)], 1000);
    for seq in 0..COUNT / 2 {
        pacer.emit(&publisher, &line(seq));
    }
    let mut hostile = Vec::new();
    let requests: [&[u8]; 7] = [
        b"",
        b"{\"subscribe\":{\"event_types\":[\"image.*\"]}}\n",
        b"{\"subscribe\":{\"event_types\":[\"image.*\"]},\"replay\":true}\n",
        b"{\"replay\":true}\n",
        b"{\"subscribe\":{\"priorities\":[\"info\"]},\"markers\":true,\"replay\":true}\n",
        b"{\"subscribe\":{\"event_types\"",
        b"{\"subscribe\":{\"publishers\":[\"*\"]}}\n",
    ];
    let kinds: Vec<usize> = std::env::var("REDTEAM_KINDS")
        .map(|v| v.split(',').map(|k| k.parse().unwrap()).collect())
        .unwrap_or_else(|_| (0..requests.len()).collect());
    for i in 0..140 {
        let mut stream = UnixStream::connect(&path).unwrap();
        let _ = stream.write_all(requests[kinds[i % kinds.len()]]);
        hostile.push(stream);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (stop, path) = (Arc::clone(&stop), path.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while std::env::var("REDTEAM_NOCHURN").is_err() && !stop.load(Ordering::Relaxed) {
                if let Ok(mut stream) = UnixStream::connect(&path) {
                    let request: &[u8] = if n % 2 == 0 {
                        b"{\"stats\":true}\n"
                    } else {
                        b"{\"after\":\"zz\"}\n"
                    };
                    let _ = stream.write_all(request);
                }
                n += 1;
            }
            n
        })
    };
    for seq in COUNT / 2..COUNT {
        pacer.emit(&publisher, &line(seq));
    }
    reading
        .join()
        .expect("the well-behaved reader got every notification in order");
    stop.store(true, Ordering::Relaxed);
    let churned = churn.join().unwrap();
    drop(hostile);
    let stats = wait_for_quiet(&publisher);
    eprintln!("{churned} churned connections; {stats:?}");
    assert_invariant(&stats);
    let started = Instant::now();
    let final_stats = publisher.close();
    let took = started.elapsed();
    assert_invariant(&final_stats);
    assert!(
        took < Duration::from_secs(6),
        "close took {took:?} with a 1 s linger"
    );
}
