//! A quick measurement of the publisher on this machine (the side-by-side
//! benchmark against ZeroMQ is bench/notif_bench/):
//! - the caller-side cost of emit with nobody connected and with one subscriber;
//! - messages per second fully received by one subscriber process.
//!
//! `cargo run --release --example measure_publisher [MESSAGE_FILE]`; the default
//! message is the 1.7 KB nova instance.update sample.
//! The subscriber is this same program started with `--subscriber PATH COUNT`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use notif::{Options, Publisher};

const BATCH: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--subscriber") {
        return subscriber(&args[2], args[3].parse().unwrap());
    }
    let file = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "tests/fixtures/nova-instance-update.json".into());
    let message = std::fs::read(&file).expect("message file");
    let message = message.trim_ascii_end().to_vec();
    let dir = std::env::temp_dir().join(format!("notif-measure-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("measure.sock");

    let options = Options {
        subscriber_buffer: 64 << 20,
        backlog: 64 << 20,
        ..Options::default()
    };
    let publisher = Publisher::open_with(&path, &options).expect("open");
    println!("message: {file} ({} bytes)", message.len());

    let idle = per_call_ns(&publisher, &message, 2_000_000);
    println!(
        "emit, 0 subscribers:  median {:>7.1} ns  p99 {:>7.1} ns",
        idle.0, idle.1
    );

    // One subscriber process that reads and discards as fast as it can.
    let count = 1_000_000usize;
    let mut child = Command::new(&args[0])
        .args(["--subscriber", path.to_str().unwrap(), &count.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("subscriber process");
    while publisher.stats().subscribers < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let busy = per_call_ns(&publisher, &message, 200_000);
    println!(
        "emit, 1 subscriber:   median {:>7.1} ns  p99 {:>7.1} ns",
        busy.0, busy.1
    );
    // Let the subscriber drain what the cost run sent, then count from zero.
    wait_until_drained(&publisher);

    let already = publisher.stats().delivered as usize;
    let start = Instant::now();
    let mut sent = 0usize;
    let mut backlog_retries = 0u64;
    while sent + already < count {
        match publisher.emit(&message) {
            Ok(_) => sent += 1,
            Err(e) if e.errno() == libc::EAGAIN => {
                backlog_retries += 1;
                std::thread::yield_now();
            }
            Err(e) => panic!("{e}"),
        }
        // Keep up with the subscriber rather than outrun its buffer: this
        // measures the sustained rate, with nothing dropped.
        if sent % 1024 == 0 {
            while queued(&publisher) > 8_192 {
                std::thread::yield_now();
            }
        }
    }
    let mut output = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    child.wait().unwrap();
    let elapsed = start.elapsed();
    let stats = publisher.close();
    let rate = sent as f64 / elapsed.as_secs_f64();
    println!(
        "throughput, 1 subscriber: {:.0} msg/s ({:.0} MB/s), {} messages in {:.2?}; dropped_slow {} dropped_backlog {} (EAGAIN retries {})",
        rate,
        rate * (message.len() + 1) as f64 / 1e6,
        sent,
        elapsed,
        stats.dropped_slow,
        stats.dropped_backlog,
        backlog_retries
    );
    print!("subscriber: {output}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Median and p99 of the per-call cost, measured over batches of calls so the
/// clock's own cost does not dominate.
fn per_call_ns(publisher: &Publisher, message: &[u8], calls: usize) -> (f64, f64) {
    let mut samples = Vec::with_capacity(calls / BATCH);
    for _ in 0..calls / BATCH {
        let start = Instant::now();
        for _ in 0..BATCH {
            std::hint::black_box(publisher.emit(std::hint::black_box(message))).ok();
        }
        samples.push(start.elapsed().as_nanos() as f64 / BATCH as f64);
    }
    samples.sort_by(f64::total_cmp);
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// Messages emitted and not yet written to the subscriber or dropped.
fn queued(publisher: &Publisher) -> u64 {
    let stats = publisher.stats();
    stats.emitted - (stats.delivered + stats.dropped_slow + stats.dropped_closed)
}

fn wait_until_drained(publisher: &Publisher) {
    loop {
        let stats = publisher.stats();
        if stats.fanout == stats.delivered + stats.dropped_slow + stats.dropped_closed
            && stats.emitted == stats.fanout
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn subscriber(path: &str, count: usize) {
    let stream = UnixStream::connect(path).expect("connect");
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let mut received = 0usize;
    let mut line = Vec::new();
    while received < count {
        line.clear();
        if reader.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        received += 1;
    }
    println!("received {received} lines");
}
