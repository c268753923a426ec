//! A consumer's side of notif: a `Subscriber` with a filter. It waits for the
//! publisher when it is not there yet, reconnects by itself when it goes away
//! and comes back, and keeps a cursor: its place in the stream, to resume from.
//!
//! ```text
//! cargo run --example subscriber -- SOCKET [COUNT] [CURSOR]
//! ```
//!
//! Prints each notification whose event_type matches `compute.instance.*` on
//! stdout, one JSON object a line, and stops after COUNT (default 0: never).
//! At the end it prints its cursor on stderr: given as CURSOR to a later run,
//! that run starts right after it, with what the publisher still holds (its
//! replay ring) of what came since.

use std::io::Write;
use std::time::Duration;

use notif::subscription::Filter;
use notif::{Event, SubscribeOptions, Subscriber};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        return Err("usage: subscriber SOCKET [COUNT (0: no limit)] [CURSOR]".into());
    };
    let count: u64 = args.get(2).map_or(Ok(0), |n| n.parse())?;

    let options = SubscribeOptions {
        // The publisher filters for us: only these reach this process.
        // (Globs on event_type and publisher_id; priorities too.)
        filter: Filter {
            event_types: vec!["compute.instance.*".into()],
            ..Filter::default()
        },
        // Be told when notifications were dropped because we read too slowly.
        markers: true,
        // Ask for a heartbeat after 5 s of silence: three missed mean a dead
        // connection, and the subscriber reconnects.
        heartbeat: Some(Duration::from_secs(5)),
        // Resume after an earlier run's cursor, if given.
        after: args.get(3).cloned(),
        // reconnect: true, the default.
        ..SubscribeOptions::default()
    };
    let mut subscriber = Subscriber::connect(path, options)?;

    let mut out = std::io::stdout().lock();
    let mut received = 0u64;
    while count == 0 || received < count {
        // Wait at most a second, so that this loop could do other work too
        // (and the heartbeat watchdog runs).
        match subscriber.recv(Some(Duration::from_secs(1)))? {
            Event::Notification(line) => {
                out.write_all(line)?;
                out.write_all(b"\n")?;
                received += 1;
            }
            Event::Reconnected => eprintln!("subscriber: reconnected"),
            Event::Dropped(n) => eprintln!("subscriber: the publisher dropped {n} for us"),
            Event::DroppedUnknown => eprintln!("subscriber: some notifications were missed"),
            Event::Timeout => {}
        }
    }
    out.flush()?;
    let cursor = subscriber.cursor().unwrap_or_else(|| "none".into());
    eprintln!("subscriber: received {received} notifications; cursor {cursor}");
    Ok(())
}
