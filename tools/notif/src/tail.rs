//! `notif tail`: one thread per socket, each running a notif::Subscriber and
//! feeding a channel bounded in bytes; the main thread writes stdout and
//! re-scans the globs as soon as their directories change (inotify, see
//! watch.rs), and every second in any case.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use notif::subscription::{Filter, Request, Start};
use notif::{Event, SubscribeOptions, Subscriber};

use crate::bounded;
use crate::cursor_file::CursorFile;
use crate::exit::{self, connect_failure, file_kind, Failure};
use crate::{json, note, paths, stop_signal, untrusted, TailArgs};

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
/// How many sockets the globs follow at once (one thread each); more
/// matches wait, with a warning, until some of those followed go away.
const MAX_FOLLOWED: usize = 256;
/// How often a socket's thread looks at its connection (to say that the
/// publisher went away, and to let go of a glob's socket that is gone).
const CHECK: Duration = Duration::from_secs(1);

type Tx = bounded::Sender<Msg>;

/// How the socket threads shape what they hand over; set once by run()
/// (kept out of the thread plumbing, start() and follow(), on purpose).
struct Printing {
    /// stdout is a terminal: escape what a terminal would act on.
    terminal: bool,
    /// Wrap each line as {"path":...,"notification":...}.
    with_path: bool,
    /// Wrap each line as {"path":...,"cursor":...,"notification":...}.
    show_cursor: bool,
    /// Hand each line's cursor to the main thread (for --cursor-file).
    track_cursors: bool,
}

static PRINTING: OnceLock<Printing> = OnceLock::new();

fn printing() -> &'static Printing {
    PRINTING.get_or_init(|| Printing {
        terminal: false,
        with_path: false,
        show_cursor: false,
        track_cursors: false,
    })
}

/// A JSON string of what a publisher or the user gave, harmless on a terminal.
fn quoted(text: &str) -> Vec<u8> {
    let quoted = serde_json::to_string(text).unwrap_or_else(|_| "null".into());
    untrusted::printable(quoted.as_bytes(), printing().terminal)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| quoted.into_bytes())
}

/// Room kept after a wrapped line for its cursor (`,"cursor":"EPOCH-SEQ"`
/// is 48 bytes): inserting it then moves the line within its allocation.
const CURSOR_ROOM: usize = 64;

/// A line from a socket as it goes to stdout: checked (only JSON objects),
/// made harmless for a terminal, and with --with-path (or --show-cursor)
/// wrapped with its path. The line is copied once, whatever the options: it
/// may be 64 MiB. `path` is the socket's path as a JSON string, from
/// [`quoted`]. Returns where [`with_cursor`] inserts the cursor.
fn shaped(path: &[u8], text: Cow<'_, [u8]>) -> (Vec<u8>, usize) {
    let printing = printing();
    if !printing.with_path && !printing.show_cursor {
        return (text.into_owned(), 0);
    }
    let mut out = Vec::with_capacity(text.len() + path.len() + 32 + CURSOR_ROOM);
    out.extend_from_slice(b"{\"path\":");
    out.extend_from_slice(path);
    let at = out.len();
    out.extend_from_slice(b",\"notification\":");
    out.extend_from_slice(&text);
    out.push(b'}');
    (out, at)
}

/// Inserts `,"cursor":...` at `at` of a line from [`shaped`] (with
/// --show-cursor), in place.
fn with_cursor(line: &mut Vec<u8>, at: usize, cursor: Option<&str>) {
    let mut member = b",\"cursor\":".to_vec();
    match cursor {
        // EPOCH-SEQ, from the client: hex digits, a dash, decimal digits;
        // anything else is quoted as any string.
        Some(cursor)
            if cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            member.push(b'"');
            member.extend_from_slice(cursor.as_bytes());
            member.push(b'"');
        }
        Some(cursor) => member.extend_from_slice(&quoted(cursor)),
        None => member.extend_from_slice(b"null"),
    }
    let end = line.len();
    line.resize(end + member.len(), 0);
    line.copy_within(at..end, at + member.len());
    line[at..at + member.len()].copy_from_slice(&member);
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
    /// A line for stdout and, for --cursor-file, the socket and the cursor of
    /// its notification.
    Line(Vec<u8>, Option<(Arc<str>, String)>),
    /// Something to say on stderr, in order with the lines around it.
    Note(String),
    /// A socket's thread ended: None when its publisher closed the stream
    /// (only without reconnection), else why it failed.
    Ended(Option<Failure>),
    /// A directory of a glob changed (watch.rs): rescan now.
    Rescan,
    /// A socket found by a glob is no longer followed (its file was removed,
    /// or another user owns it now): its thread ended; a socket there again
    /// is picked up by the next scan.
    Gone(String),
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

/// Where one socket's stream starts: after a cursor, with the replay ring, or live.
#[derive(Clone, Debug, Default)]
struct Resume {
    after: Option<String>,
    replay: bool,
}

/// The options for one socket: `base` with where it starts, checked as the
/// publisher will check them (a malformed cursor is a usage error here, not a
/// refusal from the publisher).
fn options_for(base: &SubscribeOptions, start: Resume) -> Result<SubscribeOptions, Failure> {
    let options = SubscribeOptions {
        after: start.after,
        replay: start.replay,
        ..base.clone()
    };
    check(&options)?;
    Ok(options)
}

fn check(options: &SubscribeOptions) -> Result<(), Failure> {
    let start = match &options.after {
        Some(cursor) => Start::After(
            cursor
                .parse()
                .map_err(|why: String| Failure::usage(format!("cursor {cursor:?}: {why}")))?,
        ),
        None if options.replay => Start::Replay,
        None => Start::Live,
    };
    // Check the request as the publisher will, so a mistake is a usage error
    // here rather than a refusal from every publisher.
    let line = Request::Subscribe {
        filter: options.filter.clone(),
        markers: options.markers,
        heartbeat: options.heartbeat,
        cursors: true,
        start,
    }
    .to_line();
    Request::parse(&line[..line.len() - 1])
        .map_err(|why| Failure::usage(format!("invalid subscription: {why}")))?;
    Ok(())
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
    check(&options)?;
    Ok(options)
}

/// Whether a subscription starts by resuming (see follow).
fn options_resume(options: &SubscribeOptions) -> bool {
    options.after.is_some() || options.replay
}

/// Whether a glob's socket is to be let go of while disconnected: Some(why,
/// for stderr, if anything is to be said) when its file is gone or a user
/// `trust` refuses owns it now.
fn let_go(path: &str, trust: &paths::Trust) -> Option<Option<String>> {
    match paths::owner_check(path, trust) {
        None => Some(None),
        Some(Ok(())) => None,
        Some(Err((uid, dir_owner))) => Some(Some(untrusted_warning(path, uid, dir_owner, trust))),
    }
}

/// Follows one socket until its stream ends for good or the receiver is gone.
/// `glob`: the socket was found by a glob, whose trust it must keep: its
/// thread ends when its file is removed or changes hands (see Msg::Gone).
fn follow(path: String, options: SubscribeOptions, tx: Tx, glob: Option<paths::Trust>) {
    let reconnect = options.reconnect;
    let resumes = options_resume(&options);
    let key: Arc<str> = Arc::from(path.as_str());
    // Once, not for every line (--with-path, --show-cursor).
    let quoted_path = quoted(&path);
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
            "not connected yet (nothing is listening there, or it accepts no connection)"
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
    // Until the first notification of a connection that resumes (after a
    // cursor, with the ring, or after a reconnection), a drop marker counts
    // what the publisher no longer had, not what it dropped for us.
    let mut resuming = resumes;
    let gone = |why: Option<String>| {
        if let Some(why) = why {
            let _ = say(why);
        }
        let _ = tx.send_with(OVERHEAD, || Msg::Gone(path.clone()));
    };
    let mut was_connected = subscriber.is_connected();
    let mut ever_connected = was_connected;
    // "went away" was said, and "back" not yet.
    let mut away = false;
    loop {
        // Looked at between events (recv returns at least every CHECK).
        let connected = subscriber.is_connected();
        if connected && !ever_connected {
            ever_connected = true;
            if say(format!("{path}: connected to the publisher")).is_err() {
                return;
            }
        }
        if was_connected && !connected && reconnect {
            away = true;
            if say(format!(
                "{path}: the publisher went away (connection lost); waiting for it to come back"
            ))
            .is_err()
            {
                return;
            }
        }
        was_connected = connected;
        if !connected {
            if let Some(why) = glob.as_ref().and_then(|trust| let_go(&path, trust)) {
                return gone(why);
            }
        }
        let event = match subscriber.recv(Some(CHECK)) {
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
                resuming = false;
                match untrusted::printable(line, printing().terminal) {
                    Ok(text) => {
                        let cost = text.len() + path.len() + OVERHEAD;
                        // Room first, then the copy: what waits for stdout
                        // stays within its budget (see bounded.rs).
                        let Ok(permit) = tx.reserve(cost) else {
                            return;
                        };
                        let (mut line, at) = shaped(&quoted_path, text);
                        // Only now, the line being copied: the subscriber
                        // is borrowed until then.
                        let cursor = if printing().show_cursor || printing().track_cursors {
                            subscriber.cursor()
                        } else {
                            None
                        };
                        if printing().show_cursor {
                            with_cursor(&mut line, at, cursor.as_deref());
                        }
                        let cursor = cursor
                            .filter(|_| printing().track_cursors)
                            .map(|c| (Arc::clone(&key), c));
                        permit.send(Msg::Line(line, cursor));
                        Ok(())
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
            Event::Reconnected => {
                // A glob's socket now held by a user it does not trust: let
                // go before reading anything from it.
                if let Some(why) = glob.as_ref().and_then(|trust| let_go(&path, trust)) {
                    return gone(why);
                }
                // The client resumes after the last notification it handed
                // out when the publisher gave it cursors (before the first
                // one, where the options said); a gap comes next.
                resuming = resumes || subscriber.cursor().is_some();
                // Gone and back within one wait: say it went away first.
                if !std::mem::take(&mut away)
                    && say(format!("{path}: the publisher went away (connection lost)")).is_err()
                {
                    return;
                }
                was_connected = true;
                say(if resuming {
                    format!("{path}: reconnected; resuming after the last notification received")
                } else {
                    format!("{path}: reconnected; notifications may have been missed")
                })
            }
            Event::DroppedUnknown => say(format!(
                "{path}: an unknown number of notifications missed (the publisher restarted, or keeps no replay ring)"
            )),
            Event::Dropped(n) if resuming => say(format!(
                "{path}: {} missed before resuming (the publisher no longer holds them)",
                plural(n, "notification", "notifications")
            )),
            Event::Dropped(n) => say(format!(
                "{path}: {} dropped (subscriber too slow)",
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
    cursors: Option<Cursors>,
}

/// --cursor-file: the cursors of lines written but not flushed yet, and the
/// file, which only ever names notifications that reached stdout.
struct Cursors {
    file: CursorFile,
    unflushed: HashMap<Arc<str>, String>,
    /// The last failure to write the file, said once.
    last_error: Option<String>,
}

impl Output {
    fn line(&mut self, line: &[u8], cursor: Option<(Arc<str>, String)>) -> io::Result<()> {
        match self.pretty {
            None => {
                self.out.write_all(line)?;
                self.out.write_all(b"\n")?;
            }
            Some(colour) => {
                // Streamed: the indented text can be a hundred times the line.
                json::pretty(line, colour, &mut self.out)?;
                self.out.write_all(b"\n")?;
            }
        }
        if let (Some(cursors), Some((socket, cursor))) = (&mut self.cursors, cursor) {
            cursors.unflushed.insert(socket, cursor);
        }
        Ok(())
    }

    /// Flushes stdout, then saves the cursors of what it flushed (when their
    /// interval has passed, or `force`). A failure to save is said on stderr
    /// (once) and returned; a failure to flush is returned as the outer error.
    fn flush(&mut self, force: bool) -> io::Result<Result<(), String>> {
        self.out.flush()?;
        let Some(cursors) = &mut self.cursors else {
            return Ok(Ok(()));
        };
        for (socket, cursor) in cursors.unflushed.drain() {
            cursors.file.set(&socket, cursor);
        }
        match cursors.file.save_if_due(force) {
            Ok(()) => {
                cursors.last_error = None;
                Ok(Ok(()))
            }
            Err(err) => {
                let message = format!(
                    "{}: cannot save the cursors: {err}",
                    cursors.file.path().display()
                );
                if cursors.last_error.as_deref() != Some(&message) {
                    cursors.last_error = Some(message.clone());
                    note(&message);
                }
                Ok(Err(message))
            }
        }
    }

    /// When the cursor file is due to be written.
    fn save_due(&self) -> Option<Instant> {
        self.cursors.as_ref().and_then(|c| c.file.due())
    }

    /// The last flush before exiting with `code`: a cursor file that could not
    /// be saved turns success into a failure (5), since the next tail would
    /// repeat what this one printed.
    fn finish(&mut self, code: u8) -> Result<u8, Failure> {
        match self.flush(true) {
            Err(err) => stdout_failure(err),
            Ok(Err(_)) if code == exit::OK => Ok(exit::OTHER),
            Ok(_) => Ok(code),
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

/// The warning for a socket a glob leaves out because of its owner.
fn untrusted_warning(path: &str, uid: u32, dir_owner: u32, trust: &paths::Trust) -> String {
    match trust {
        paths::Trust::Only(uids) => {
            let list: Vec<String> = uids.iter().map(|u| format!("uid {u}")).collect();
            format!(
                "{path}: skipped: owned by uid {uid}, not by {} (--owner); not connected to",
                list.join(" or ")
            )
        }
        _ => paths::other_owner_warning(path, uid, dir_owner),
    }
}

/// What the globs have found: whose sockets they follow, and what was said
/// about the others.
struct Globs {
    trust: paths::Trust,
    /// Sockets of untrusted owners seen by the last scan (warned about when
    /// they appear, not again while they stay).
    foreign: HashSet<String>,
    /// Matches not followed because MAX_FOLLOWED are (warned about likewise).
    capped: HashSet<String>,
    /// Sockets followed because a glob found them.
    followed: HashSet<String>,
}

impl Globs {
    /// One scan of every pattern: the live trusted sockets not followed yet,
    /// at most as many as MAX_FOLLOWED leaves room for.
    /// `full`: every pattern is scanned (what the last full scan saw and is
    /// gone now may be warned about again when it reappears); otherwise what
    /// this scan saw is added to what earlier ones saw.
    fn scan(&mut self, patterns: &[&String], known: &HashSet<String>, full: bool) -> Vec<String> {
        let mut foreign = HashSet::new();
        let mut capped = HashSet::new();
        let mut new = Vec::new();
        for pattern in patterns {
            // Those followed already are neither checked nor probed again.
            let matches =
                paths::expand_trusted_except(pattern, &self.trust, &|p| known.contains(p));
            for (path, uid, dir_owner) in matches.other_owner {
                if !self.foreign.contains(&path) && !foreign.contains(&path) {
                    note(&untrusted_warning(&path, uid, dir_owner, &self.trust));
                }
                foreign.insert(path);
            }
            for path in matches.paths {
                if known.contains(&path) || new.contains(&path) {
                    continue;
                }
                if self.followed.len() + new.len() >= MAX_FOLLOWED {
                    if !self.capped.contains(&path) && !capped.contains(&path) {
                        note(&format!(
                            "{path}: not followed: {MAX_FOLLOWED} sockets are followed already \
                             (it will be when one of them goes away)"
                        ));
                    }
                    capped.insert(path);
                    continue;
                }
                new.push(path);
            }
        }
        if full {
            self.foreign = foreign;
            self.capped = capped;
        } else {
            self.foreign.extend(foreign);
            self.capped.extend(capped);
        }
        new
    }
}

/// The users --owner names, as uids.
fn owner_uids(names: &[String]) -> Result<Vec<u32>, Failure> {
    names
        .iter()
        .map(|name| {
            if let Ok(uid) = name.parse::<u32>() {
                return Ok(uid);
            }
            let c_name = std::ffi::CString::new(name.as_str())
                .map_err(|_| Failure::usage(format!("--owner {name:?}: not a user name")))?;
            // SAFETY: passwd is plain data; getpwnam_r fills it and buf.
            let mut passwd: libc::passwd = unsafe { std::mem::zeroed() };
            let mut buf = vec![0 as libc::c_char; 16 << 10];
            let mut found: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: valid pointers to a C string, a passwd, a buffer of the
            // stated length and the result pointer.
            let rc = unsafe {
                libc::getpwnam_r(
                    c_name.as_ptr(),
                    &mut passwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut found,
                )
            };
            if rc != 0 || found.is_null() {
                return Err(Failure::usage(format!(
                    "--owner {name}: no such user (give a user name or a uid)"
                )));
            }
            Ok(passwd.pw_uid)
        })
        .collect()
}

/// What tail knows at start about where each socket's stream starts.
struct Starts {
    base: SubscribeOptions,
    /// --after, for the one socket given.
    after: Option<String>,
    replay: bool,
    /// The cursor file's content at start, socket -> cursor.
    saved: HashMap<String, String>,
}

impl Starts {
    fn options(&self, path: &str) -> Result<SubscribeOptions, Failure> {
        let after = self.after.clone().or_else(|| self.saved.get(path).cloned());
        let replay = after.is_none() && self.replay;
        options_for(&self.base, Resume { after, replay })
    }
}

/// Starts following `path` unless it is followed already; returns how many
/// threads it started (0 or 1). `glob`: found by a glob that trusts its owner.
fn start(
    path: &str,
    known: &mut HashSet<String>,
    starts: &Starts,
    tx: &Tx,
    glob: Option<paths::Trust>,
) -> Result<usize, Failure> {
    if !known.insert(path.to_owned()) {
        return Ok(0);
    }
    let options = starts.options(path)?;
    let (path, tx) = (path.to_owned(), tx.clone());
    thread::Builder::new()
        .name("notif-tail".into())
        .spawn(move || follow(path, options, tx, glob))
        .map_err(|e| Failure::new(exit::OTHER, format!("cannot start a thread: {e}")))?;
    Ok(1)
}

pub fn run(args: TailArgs) -> Result<u8, Failure> {
    let options = subscribe_options(&args)?;
    let reconnect = options.reconnect;
    if args.after.is_some() && (args.paths.len() != 1 || paths::is_pattern(&args.paths[0])) {
        return Err(Failure::usage(
            "--after names a notification of one publisher: give one socket path (not a glob); \
             over several sockets, use --cursor-file",
        ));
    }
    let cursor_file = match &args.cursor_file {
        None => None,
        Some(path) => {
            let mut file = CursorFile::open(path)?;
            // Every cursor now, not when its socket turns up in a glob.
            for (socket, cursor) in file.entries() {
                cursor
                    .parse::<notif::subscription::Cursor>()
                    .map_err(|why| {
                        Failure::usage(format!(
                            "{}: the cursor of {socket}: {why}: fix or remove the file",
                            path.display()
                        ))
                    })?;
            }
            // Now rather than after the first notification: a file that
            // cannot be written is said before anything is printed.
            file.save().map_err(|e| {
                Failure::new(
                    exit::OTHER,
                    format!("{}: cannot write the cursor file: {e}", path.display()),
                )
            })?;
            Some(file)
        }
    };
    let starts = Starts {
        base: options,
        after: args.after.clone(),
        replay: args.replay,
        saved: cursor_file
            .iter()
            .flat_map(|file| file.entries())
            .map(|(socket, cursor)| (socket.to_owned(), cursor.to_owned()))
            .collect(),
    };
    // SAFETY: isatty only inspects the descriptor.
    let terminal = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
    // https://no-color.org: set and not empty means no colour.
    let colour = terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = PRINTING.set(Printing {
        terminal,
        with_path: args.with_path,
        show_cursor: args.show_cursor,
        track_cursors: args.cursor_file.is_some(),
    });
    let mut output = Output {
        out: BufWriter::with_capacity(64 << 10, io::stdout()),
        pretty: args.pretty.then_some(colour),
        // Entries of sockets not followed this time are written back as
        // they were.
        cursors: cursor_file.map(|file| Cursors {
            file,
            unflushed: HashMap::new(),
            last_error: None,
        }),
    };
    if args.count == Some(0) {
        return Ok(exit::OK);
    }

    let trust = if args.any_owner {
        paths::Trust::AnyOwner
    } else if !args.owners.is_empty() {
        paths::Trust::Only(owner_uids(&args.owners)?)
    } else {
        paths::Trust::DirectoryOwnerOrMe
    };
    let (tx, mut rx) = bounded::channel::<Msg>(IN_FLIGHT);
    let mut known: HashSet<String> = HashSet::new();
    let mut globs = Globs {
        trust,
        foreign: HashSet::new(),
        capped: HashSet::new(),
        followed: HashSet::new(),
    };
    let mut active = 0usize;
    let mut failure: Option<Failure> = None;
    let patterns: Vec<&String> = args.paths.iter().filter(|p| paths::is_pattern(p)).collect();
    for path in &args.paths {
        if !paths::is_pattern(path) {
            active += start(path, &mut known, &starts, &tx, None)?;
            continue;
        }
        let matches = globs.scan(&[path], &known, false);
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
            active += start(&found, &mut known, &starts, &tx, Some(globs.trust.clone()))?;
            globs.followed.insert(found);
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
    let on_signal = args.cursor_file.is_some();
    if on_signal {
        stop_signal::install();
    }
    loop {
        if let Some(signal) = stop_signal::received() {
            // Everything received was printed: save, then go as the signal says.
            let _ = output.finish(exit::OK);
            stop_signal::raise_again(signal);
        }
        let ended = active == 0 && (patterns.is_empty() || !reconnect);
        if ended {
            if let Some(failure) = failure {
                return output.finish(failure.code);
            }
            if let Some(count) = args.count {
                if let Err(err) = output.flush(true) {
                    return stdout_failure(err);
                }
                note(&format!(
                    "the stream ended after {printed} of the {count} notifications asked for"
                ));
                return Ok(exit::OTHER);
            }
            return output.finish(exit::OK);
        }
        let mut wake_at = if patterns.is_empty() {
            Instant::now() + Duration::from_secs(3600)
        } else {
            next_scan
        };
        if let Some(due) = output.save_due() {
            wake_at = wake_at.min(due);
        }
        if on_signal {
            wake_at = wake_at.min(Instant::now() + stop_signal::POLL);
        }
        let mut next = rx.recv_timeout(wake_at.saturating_duration_since(Instant::now()));
        // Write everything already waiting, then flush once.
        let mut budget = BATCH;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line, cursor) => {
                    if let Err(err) = output.line(&line, cursor) {
                        return stdout_failure(err);
                    }
                    printed += 1;
                    if args.count == Some(printed) {
                        return output.finish(exit::OK);
                    }
                }
                Msg::Note(text) => {
                    if let Err(err) = output.flush(false) {
                        return stdout_failure(err);
                    }
                    note(&text);
                }
                Msg::Rescan => next_scan = Instant::now(),
                Msg::Gone(path) => {
                    active -= 1;
                    known.remove(&path);
                    globs.followed.remove(&path);
                    // A new socket at that path (a restarted worker) is
                    // picked up at once.
                    next_scan = Instant::now();
                }
                Msg::Ended(why) => {
                    active -= 1;
                    if let Some(why) = why {
                        if let Err(err) = output.flush(false) {
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
        if let Err(err) = output.flush(false) {
            return stdout_failure(err);
        }
        if !patterns.is_empty() && Instant::now() >= next_scan {
            for found in globs.scan(&patterns, &known, true) {
                active += start(&found, &mut known, &starts, &tx, Some(globs.trust.clone()))?;
                globs.followed.insert(found);
            }
            next_scan = Instant::now() + RESCAN;
        }
    }
}
