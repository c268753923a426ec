//! `notif tail`: one thread per socket, each running a notif::Subscriber and
//! feeding a channel bounded in bytes; the main thread writes stdout and
//! re-scans the globs as soon as their directories change (inotify, see
//! watch.rs), and every second in any case.

use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use notif::subscription::{Filter, Request};
use notif::{Event, SubscribeOptions, Subscriber};

use crate::bounded;
use crate::exit::{self, connect_failure, file_kind, Failure};
use crate::{json, note, paths, untrusted, TailArgs};

/// Bytes of lines and notes in flight between the socket threads and stdout
/// (queued, or being written). When stdout is slower than the publishers,
/// the threads wait, the publishers' buffers for us fill up and they drop
/// for us, which the drop markers then report. A line longer than this goes
/// alone, so tail holds at most max(IN_FLIGHT, one line) for stdout plus, per
/// socket, the subscriber's read buffer (one line of at most 64 MiB plus a
/// 256 KiB read): about twice the longest line plus a few MiB (~140 MiB at
/// most with one socket), whatever stdout does.
const IN_FLIGHT: usize = 8 << 20;
/// What a message costs beyond its text (its allocation, the queue's slot).
const OVERHEAD: usize = 64;
/// Messages written before stdout is flushed and the globs looked at.
const BATCH: usize = 1024;
const RESCAN: Duration = Duration::from_secs(1);

type Tx = bounded::Sender<Msg>;

/// How the socket threads shape what they hand over; set once by run()
/// (kept out of the thread plumbing, start() and follow(), on purpose).
struct Printing {
    /// stdout is a terminal: escape what a terminal would act on.
    terminal: bool,
    /// Wrap each line as {"path":...,"notification":...}.
    with_path: bool,
}

static PRINTING: OnceLock<Printing> = OnceLock::new();

fn printing() -> &'static Printing {
    PRINTING.get_or_init(|| Printing {
        terminal: false,
        with_path: false,
    })
}

/// A line from a socket as it goes to stdout: checked (only JSON objects),
/// made harmless for a terminal, and with --with-path wrapped with its path.
fn shaped(path: &str, text: &[u8]) -> Vec<u8> {
    if !printing().with_path {
        return text.to_vec();
    }
    let quoted = serde_json::to_string(path).unwrap_or_else(|_| "null".into());
    let quoted = untrusted::printable(quoted.as_bytes(), printing().terminal)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| quoted.into_bytes());
    let mut out = Vec::with_capacity(text.len() + quoted.len() + 32);
    out.extend_from_slice(b"{\"path\":");
    out.extend_from_slice(&quoted);
    out.extend_from_slice(b",\"notification\":");
    out.extend_from_slice(text);
    out.push(b'}');
    out
}

/// Why a permanent failure of the subscriber ends following `path`: None
/// when the publisher closed the stream (only without reconnection).
fn permanent_failure(path: &str, err: &notif::Error) -> Option<Failure> {
    let message = format!("{path}: {}", err.message());
    Some(match err.errno() {
        libc::EPIPE | libc::ECONNRESET => return None,
        // The publisher refused our request: retrying would not help.
        libc::EPROTO => Failure::new(exit::NOT_NOTIF, message),
        // Its allow-lists refuse us (reason "denied").
        libc::EACCES => Failure::new(
            exit::PERMISSION,
            format!("{message}: ask for this user or group to be allowed"),
        ),
        // It has max_subscribers already (reason "full").
        libc::EUSERS => Failure::new(
            exit::FULL,
            format!("{message}: try again later, or have its max_subscribers raised"),
        ),
        libc::ETIMEDOUT => Failure::new(exit::OTHER, message),
        errno => connect_failure(path, errno, err.message()),
    })
}

enum Msg {
    Line(Vec<u8>),
    /// Something to say on stderr, in order with the lines around it.
    Note(String),
    /// A socket's thread ended: None when its publisher closed the stream
    /// (only without reconnection), else why it failed.
    Ended(Option<Failure>),
    /// A directory of a glob changed (watch.rs): rescan now.
    Rescan,
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n % 10 == 0 {
        n /= 10;
    }
    n == 1
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn subscribe_options(args: &TailArgs) -> Result<SubscribeOptions, Failure> {
    let heartbeat = match args.heartbeat {
        None => None,
        Some(s) if s.is_finite() && (0.1..=3600.0).contains(&s) => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(Failure::usage(format!(
                "--heartbeat {s}: give a number of seconds from 0.1 to 3600"
            )))
        }
    };
    let options = SubscribeOptions {
        filter: Filter {
            event_types: args.event_types.clone(),
            priorities: args.priorities.clone(),
            publishers: args.publishers.clone(),
        },
        markers: !args.no_markers,
        heartbeat,
        reconnect: !args.no_reconnect,
        ..SubscribeOptions::default()
    };
    // Check the request as the publisher will, so a mistake is a usage error
    // here rather than a refusal from every publisher.
    let line = Request::Subscribe {
        filter: options.filter.clone(),
        markers: options.markers,
        heartbeat: options.heartbeat,
        cursors: true,
        start: notif::subscription::Start::Live,
    }
    .to_line();
    Request::parse(&line[..line.len() - 1])
        .map_err(|why| Failure::usage(format!("invalid subscription: {why}")))?;
    Ok(options)
}

/// Follows one socket until its stream ends for good or the receiver is gone.
fn follow(path: String, options: SubscribeOptions, tx: Tx) {
    let reconnect = options.reconnect;
    let end = |failure: Option<Failure>| {
        let _ = tx.send_with(OVERHEAD, || Msg::Ended(failure));
    };
    let say = |text: String| tx.send_with(text.len() + OVERHEAD, || Msg::Note(text));
    if let Some(kind) = file_kind(&path) {
        if kind != "socket" {
            return end(Some(Failure::new(
                exit::NOT_NOTIF,
                format!("{path}: is a {kind}, not a socket: not a notif publisher; check the path"),
            )));
        }
    }
    let mut subscriber = match Subscriber::connect(&path, options) {
        Ok(s) => s,
        Err(err) => return end(Some(connect_failure(&path, err.errno(), err.message()))),
    };
    if !subscriber.is_connected() {
        let why = if file_kind(&path).is_some() {
            "nothing is listening there yet"
        } else {
            "no such socket yet"
        };
        let _ = say(format!(
            "{path}: {why}; waiting for a publisher (--no-reconnect to fail instead)"
        ));
    }
    let mut last_error: Option<String> = None;
    // Lines that are not JSON objects: not from a notif publisher.
    let mut garbage = 0u64;
    loop {
        let event = match subscriber.recv(None) {
            Ok(event) => event,
            Err(err) => {
                if !reconnect || subscriber.is_failed() {
                    let failure = permanent_failure(&path, &err);
                    if failure.is_none() {
                        let _ = say(format!("{path}: the publisher closed the connection"));
                    }
                    return end(failure);
                }
                // The subscriber tries again after its back-off; say it once.
                let message = format!("{path}: {}; retrying", err.message());
                if last_error.as_deref() != Some(&message) {
                    last_error = Some(message.clone());
                    if say(message).is_err() {
                        return;
                    }
                }
                continue;
            }
        };
        let sent = match event {
            Event::Notification(line) => {
                last_error = None;
                match untrusted::printable(line, printing().terminal) {
                    Ok(text) => {
                        let cost = text.len() + path.len() + OVERHEAD;
                        tx.send_with(cost, || Msg::Line(shaped(&path, &text)))
                    }
                    Err(why) => {
                        garbage += 1;
                        // The 1st, 10th, 100th...: reported, never flooding stderr.
                        if is_power_of_ten(garbage) {
                            let excerpt = untrusted::excerpt(line, 40);
                            say(format!(
                                "{path}: skipped a line that is not a JSON object ({why}: \"{excerpt}\"), \
                                 {garbage} so far: is this a notif publisher?"
                            ))
                        } else {
                            Ok(())
                        }
                    }
                }
            }
            Event::Reconnected => say(format!("{path}: reconnected")),
            Event::DroppedUnknown => say(format!(
                "{path}: an unknown number of notifications missed (the publisher restarted, or keeps no replay ring)"
            )),
            Event::Dropped(n) => say(format!(
                "{path}: {} dropped (too slow, or no longer held by the publisher)",
                plural(n, "notification", "notifications")
            )),
            Event::Timeout => continue,
        };
        if sent.is_err() {
            return;
        }
    }
}

struct Output {
    out: BufWriter<io::Stdout>,
    pretty: Option<bool>,
    scratch: Vec<u8>,
}

impl Output {
    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        match self.pretty {
            None => {
                self.out.write_all(line)?;
                self.out.write_all(b"\n")
            }
            Some(colour) => {
                self.scratch.clear();
                json::pretty(line, colour, &mut self.scratch);
                self.scratch.push(b'\n');
                self.out.write_all(&self.scratch)
            }
        }
    }
}

/// Maps a failed write to stdout: a closed pipe (`| head`) is a normal end.
fn stdout_failure(err: io::Error) -> Result<u8, Failure> {
    if err.kind() == io::ErrorKind::BrokenPipe {
        Ok(exit::OK)
    } else {
        Err(Failure::new(
            exit::OTHER,
            format!("cannot write to stdout: {err}"),
        ))
    }
}

/// The live sockets of `pattern` to follow; the ones another user owns than
/// the first match's are marked known (never followed) and warned about once.
fn glob(pattern: &str, any_owner: bool, known: &mut HashSet<String>) -> Vec<String> {
    let matches = paths::expand_owned(pattern, any_owner);
    for (path, uid, owner) in matches.other_owner {
        if known.insert(path.clone()) {
            note(&paths::other_owner_warning(&path, uid, owner));
        }
    }
    matches.paths
}

/// Starts following `path` unless it is followed already; returns how many
/// threads it started (0 or 1).
fn start(
    path: &str,
    known: &mut HashSet<String>,
    options: &SubscribeOptions,
    tx: &Tx,
) -> Result<usize, Failure> {
    if !known.insert(path.to_owned()) {
        return Ok(0);
    }
    let (path, options, tx) = (path.to_owned(), options.clone(), tx.clone());
    thread::Builder::new()
        .name("notif-tail".into())
        .spawn(move || follow(path, options, tx))
        .map_err(|e| Failure::new(exit::OTHER, format!("cannot start a thread: {e}")))?;
    Ok(1)
}

pub fn run(args: TailArgs) -> Result<u8, Failure> {
    let options = subscribe_options(&args)?;
    let reconnect = options.reconnect;
    // SAFETY: isatty only inspects the descriptor.
    let colour = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
    let _ = PRINTING.set(Printing {
        terminal: colour,
        with_path: args.with_path,
    });
    let mut output = Output {
        out: BufWriter::with_capacity(64 << 10, io::stdout()),
        pretty: args.pretty.then_some(colour),
        scratch: Vec::new(),
    };
    if args.count == Some(0) {
        return Ok(exit::OK);
    }

    let (tx, mut rx) = bounded::channel::<Msg>(IN_FLIGHT);
    let mut known: HashSet<String> = HashSet::new();
    let mut active = 0usize;
    let mut failure: Option<Failure> = None;
    let patterns: Vec<&String> = args.paths.iter().filter(|p| paths::is_pattern(p)).collect();
    for path in &args.paths {
        if !paths::is_pattern(path) {
            active += start(path, &mut known, &options, &tx)?;
            continue;
        }
        let matches = glob(path, args.any_owner, &mut known);
        if matches.is_empty() {
            if reconnect {
                note(&format!(
                    "{path}: no socket matches yet; watching for one to appear"
                ));
            } else {
                let missing = Failure::new(
                    exit::MISSING,
                    format!("{path}: no socket matches: is the publisher running, and is the pattern right?"),
                );
                note(&missing.message);
                failure.get_or_insert(missing);
            }
        }
        for found in matches {
            active += start(&found, &mut known, &options, &tx)?;
        }
    }

    if reconnect && !patterns.is_empty() {
        let dirs: Vec<String> = patterns
            .iter()
            .filter_map(|p| paths::watch_dir(p))
            .collect();
        let wake = tx.clone();
        crate::watch::spawn(&dirs, move || {
            wake.send_with(OVERHEAD, || Msg::Rescan).is_ok()
        });
    }
    let mut printed = 0u64;
    let mut next_scan = Instant::now() + RESCAN;
    loop {
        let ended = active == 0 && (patterns.is_empty() || !reconnect);
        if ended {
            if let Err(err) = output.out.flush() {
                return stdout_failure(err);
            }
            if let Some(failure) = failure {
                return Ok(failure.code);
            }
            if let Some(count) = args.count {
                note(&format!(
                    "the stream ended after {printed} of the {count} notifications asked for"
                ));
                return Ok(exit::OTHER);
            }
            return Ok(exit::OK);
        }
        let wait = if patterns.is_empty() {
            Duration::from_secs(3600)
        } else {
            next_scan.saturating_duration_since(Instant::now())
        };
        let mut next = rx.recv_timeout(wait);
        // Write everything already waiting, then flush once.
        let mut budget = BATCH;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => {
                    if let Err(err) = output.line(&line) {
                        return stdout_failure(err);
                    }
                    printed += 1;
                    if args.count == Some(printed) {
                        return match output.out.flush() {
                            Ok(()) => Ok(exit::OK),
                            Err(err) => stdout_failure(err),
                        };
                    }
                }
                Msg::Note(text) => {
                    if let Err(err) = output.out.flush() {
                        return stdout_failure(err);
                    }
                    note(&text);
                }
                Msg::Rescan => next_scan = Instant::now(),
                Msg::Ended(why) => {
                    active -= 1;
                    if let Some(why) = why {
                        if let Err(err) = output.out.flush() {
                            return stdout_failure(err);
                        }
                        note(&why.message);
                        failure.get_or_insert(why);
                    }
                }
            }
            budget -= 1;
            if budget > 0 {
                next = rx.try_recv();
            }
        }
        if let Err(err) = output.out.flush() {
            return stdout_failure(err);
        }
        if !patterns.is_empty() && Instant::now() >= next_scan {
            for pattern in &patterns {
                for found in glob(pattern, args.any_owner, &mut known) {
                    active += start(&found, &mut known, &options, &tx)?;
                }
            }
            next_scan = Instant::now() + RESCAN;
        }
    }
}
