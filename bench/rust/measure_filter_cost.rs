//! What a filtering subscriber costs the publisher, per message: the server
//! thread's CPU time per message with one plain subscriber, then with the
//! same plus filtering subscribers (whose filter matches nothing, so the cost
//! measured is the filtering itself, not extra writes).
//!
//! `cargo run --release --example measure_filter_cost`

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use notif::{Options, Publisher};

const MESSAGES: u64 = 300_000;

fn main() {
    let message = std::fs::read("tests/fixtures/nova-instance-update.json").unwrap();
    let message = message.trim_ascii_end().to_vec();
    let dir = std::env::temp_dir().join(format!("notif-filter-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("filter.sock");
    let options = Options {
        subscriber_buffer: 64 << 20,
        backlog: 64 << 20,
        ..Options::default()
    };
    let publisher = Publisher::open_with(&path, &options).unwrap();
    let server_thread = find_server_thread();

    let plain = reader_thread(UnixStream::connect(&path).unwrap());
    wait(|| publisher.stats().subscribers == 1);
    let base = server_ns_per_message(&publisher, &message, server_thread);
    println!("server thread, 1 plain subscriber:                      {base:>7.0} ns/message");

    let mut filtering = Vec::new();
    for count in [1usize, 10] {
        while filtering.len() < count {
            let mut stream = UnixStream::connect(&path).unwrap();
            stream
                .write_all(br#"{"subscribe":{"event_types":["compute.*"],"priorities":["ERROR"]}}"#)
                .unwrap();
            stream.write_all(b"\n").unwrap();
            let mut ack = String::new();
            BufReader::new(stream.try_clone().unwrap())
                .read_line(&mut ack)
                .unwrap();
            assert!(ack.contains("subscribed"), "{ack}");
            filtering.push(stream);
        }
        let with = server_ns_per_message(&publisher, &message, server_thread);
        println!(
            "server thread, 1 plain + {count:>2} filtering subscriber(s):     {with:>7.0} ns/message (+{:.0} ns)",
            with - base
        );
    }
    let stats = publisher.close();
    println!(
        "filtered pairs: {}, dropped_slow: {}",
        stats.filtered, stats.dropped_slow
    );
    drop(plain);
    let _ = std::fs::remove_dir_all(&dir);
}

fn reader_thread(stream: UnixStream) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::with_capacity(1 << 20, stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
    })
}

/// CPU time the server thread spends per message, measured from the kernel's
/// accounting (clock ticks, so enough messages to make them count).
fn server_ns_per_message(publisher: &Publisher, message: &[u8], thread: u32) -> f64 {
    let before = thread_cpu_ns(thread);
    let delivered_before = publisher.stats().delivered;
    for sent in 0..MESSAGES {
        while publisher.emit(message).is_err() {
            std::thread::yield_now();
        }
        // Keep up with the reader rather than outrun its buffer.
        if sent % 1024 == 0 {
            while publisher.stats().delivered - delivered_before + 8192 < sent {
                std::thread::yield_now();
            }
        }
    }
    wait(|| publisher.stats().delivered - delivered_before >= MESSAGES);
    (thread_cpu_ns(thread) - before) as f64 / MESSAGES as f64
}

fn find_server_thread() -> u32 {
    // The thread names itself as it starts: it may not have yet.
    for _ in 0..1000 {
        for entry in std::fs::read_dir("/proc/self/task").unwrap() {
            let entry = entry.unwrap();
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() == "notif-server" {
                return entry.file_name().to_str().unwrap().parse().unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("no notif-server thread");
}

fn thread_cpu_ns(thread: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{thread}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    ticks * 1_000_000_000 / hz
}

fn wait(mut condition: impl FnMut() -> bool) {
    while !condition() {
        std::thread::sleep(Duration::from_millis(1));
    }
}
