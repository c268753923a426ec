//! A daemon's side of notif: open a socket, emit oslo-shaped notifications,
//! print the publisher's counters, close.
//!
//! ```text
//! cargo run --example publisher -- SOCKET [COUNT] [RATE]
//! ```
//!
//! SOCKET is a file path, or `@name` for an abstract socket. It emits COUNT
//! notifications (default 100), RATE a second (default 10), then closes.
//! Watch them with `cargo run --example subscriber -- SOCKET` or `notif tail SOCKET`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use notif::{Options, Publisher};

const EVENT_TYPES: [(&str, &str); 5] = [
    ("compute.instance.create.start", "building"),
    ("compute.instance.create.end", "active"),
    ("compute.instance.update", "active"),
    ("compute.instance.power_off.end", "stopped"),
    ("compute.instance.delete.end", "deleted"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        return Err("usage: publisher SOCKET [COUNT (100)] [RATE per second (10)]".into());
    };
    let count: u64 = args.get(2).map_or(Ok(100), |n| n.parse())?;
    let rate: f64 = args.get(3).map_or(Ok(10.0), |r| r.parse())?;
    if !(rate > 0.0 && rate <= 1e6) {
        return Err("RATE must be above 0 and at most 1000000".into());
    }

    let options = Options {
        // Owner and group may subscribe (set `group` to choose the group).
        mode: 0o660,
        // Keep the last 1 MiB of notifications, so that a subscriber that
        // reconnects, or comes back later with a cursor, gets what it missed.
        replay: 1 << 20,
        ..Options::default()
    };
    // Binds and listens; subscribers are served by the publisher's own thread.
    let publisher = Publisher::open_with(path, &options)?;
    eprintln!("publisher: publishing on {path}, {count} notifications at {rate}/s");

    let start = Instant::now();
    let mut failed = 0u64;
    for seq in 0..count {
        // emit never blocks: it queues the line for every subscriber and
        // returns. With nobody connected (and no replay ring) it is dropped.
        if let Err(err) = publisher.emit(notification(seq).as_bytes()) {
            // EAGAIN: the backlog is full, this one is dropped (and counted).
            eprintln!("publisher: emit #{seq} failed: {err}");
            failed += 1;
        }
        // A steady rate: sleep until the next one is due.
        let due = start + Duration::from_secs_f64((seq + 1) as f64 / rate);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }

    // close flushes what subscribers have not read yet (for up to
    // `options.linger`), removes the socket file and returns the counters.
    let stats = publisher.close();
    eprintln!("publisher: done after {count} notifications ({failed} failed)");
    let fields: Vec<String> = stats
        .fields()
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    eprintln!("publisher: stats: {}", fields.join(" "));
    if failed > 0 {
        return Err(format!("{failed} notifications failed").into());
    }
    Ok(())
}

/// One notification in oslo.messaging's shape: one JSON object, one line.
fn notification(seq: u64) -> String {
    let (event_type, state) = EVENT_TYPES[(seq % 5) as usize];
    let priority = match seq % 20 {
        19 => "ERROR",
        9 => "WARN",
        _ => "INFO",
    };
    format!(
        concat!(
            r#"{{"message_id":"{:08x}-0000-4000-8000-{:012x}","publisher_id":"compute.host1","#,
            r#""event_type":"{}","priority":"{}","payload":{{"instance_id":"#,
            r#""0b1f6b2e-52f1-4c8b-9f3e-{:012x}","state":"{}","host":"host1","#,
            r#""memory_mb":2048,"vcpus":2,"sequence":{}}},"timestamp":"{}"}}"#
        ),
        seq >> 48,
        seq & 0xffff_ffff_ffff,
        event_type,
        priority,
        seq / 5,
        state,
        seq,
        timestamp(),
    )
}

/// Now in UTC, as oslo writes it: "2026-11-27 08:00:00.123456".
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (days, secs) = ((now.as_secs() / 86_400) as i64, now.as_secs() % 86_400);
    // Days since 1970-01-01 to a date (H. Hinnant's civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        now.subsec_micros()
    )
}
