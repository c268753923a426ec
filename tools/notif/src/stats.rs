//! `notif stats`: the stats request of the subscription protocol, for each path.

use std::io::{self, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::exit::{self, connect_failure, file_kind, Failure};
use notif::subscription::{parse_control_line, ControlLine, Reason};

use crate::openmetrics::{self, Flavor};
use crate::{json, note, paths, untrusted, StatsArgs, StatsFormat};

/// How long a publisher has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Longest line read while waiting for the answer (notifications emitted
/// between our connection and the request can come first).
const MAX_LINE: usize = 64 << 20;

fn connect(path: &str) -> io::Result<UnixStream> {
    // Bounded: a socket whose listen backlog stays full must not hang us.
    crate::connect::within(path, ANSWER_WITHIN)
}

fn not_notif(path: &str, why: impl std::fmt::Display) -> Failure {
    Failure::new(
        exit::NOT_NOTIF,
        format!("{path}: {why}: not a notif publisher?"),
    )
}

/// What one line from the publisher means for the stats request.
enum Answer {
    Stats(Vec<u8>),
    Refused {
        message: String,
        reason: Reason,
    },
    /// A notification sent before the publisher read our request, or a
    /// control line we did not ask for: skip it.
    Other,
}

fn classify(line: &[u8]) -> Option<Answer> {
    json::members(line)?;
    // A control line is one whose first member is "notif" (emit refuses
    // notifications that start so).
    match parse_control_line(line) {
        None | Some(ControlLine::Unknown) => Some(Answer::Other),
        Some(ControlLine::Stats(_)) => {
            let (_, control) = json::members(line)?.into_iter().next()?;
            let stats = json::member(control, "stats")?;
            Some(Answer::Stats(stats.to_vec()))
        }
        Some(ControlLine::Error { message, reason }) => Some(Answer::Refused { message, reason }),
        Some(_) => Some(Answer::Other),
    }
}

/// What a refusal of the stats request means, as an exit code.
fn refused(path: &str, message: &str, reason: &Reason) -> Failure {
    match reason {
        Reason::Denied => Failure::new(
            exit::PERMISSION,
            format!(
                "{path}: the publisher does not let this user ask (its allow-lists; denied: \"{message}\"): \
                 run as the publisher's user, or ask for this user or group to be allowed"
            ),
        ),
        Reason::Full => Failure::new(
            exit::FULL,
            format!(
                "{path}: the publisher is full (max_subscribers; \"{message}\"): try again later"
            ),
        ),
        _ => not_notif(
            path,
            format!(
                "the stats request was refused ({}: \"{message}\")",
                reason.as_str()
            ),
        ),
    }
}

/// Why a socket gave no stats.
enum QueryError {
    /// Nobody listens on it (ECONNREFUSED): a stopped publisher's file.
    Stale(Failure),
    Other(Failure),
}

impl QueryError {
    fn failure(self) -> Failure {
        match self {
            QueryError::Stale(f) | QueryError::Other(f) => f,
        }
    }
}

/// Asks the publisher at `path` for its stats; returns the text of the stats object.
fn query(path: &str) -> Result<Vec<u8>, QueryError> {
    if let Some(kind) = file_kind(path) {
        if kind != "socket" {
            return Err(QueryError::Other(Failure::new(
                exit::NOT_NOTIF,
                format!("{path}: is a {kind}, not a socket: not a notif publisher; check the path"),
            )));
        }
    }
    let stream = connect(path).map_err(|e| match e.raw_os_error() {
        // A socket nobody listens on (not a socket was handled above). Not
        // connect_failure's text: its "drop --no-reconnect" is tail's option.
        Some(libc::ECONNREFUSED) => QueryError::Stale(Failure::new(
            exit::NOT_NOTIF,
            format!(
                "{path}: nothing is listening there (a socket left by a publisher that \
                 stopped?): not a notif publisher now; start the publisher"
            ),
        )),
        _ if e.kind() == io::ErrorKind::TimedOut => QueryError::Other(Failure::new(
            exit::NOT_NOTIF,
            crate::connect::not_accepting(path, ANSWER_WITHIN),
        )),
        errno => QueryError::Other(connect_failure(
            path,
            errno.unwrap_or(libc::EIO),
            &e.to_string(),
        )),
    })?;
    exchange(path, stream).map_err(QueryError::Other)
}

/// Sends the stats request on `stream` and reads the answer.
fn exchange(path: &str, mut stream: UnixStream) -> Result<Vec<u8>, Failure> {
    let deadline = Instant::now() + ANSWER_WITHIN;
    let timed_out = || not_notif(path, format!("no answer within {ANSWER_WITHIN:?}"));
    stream
        .set_write_timeout(Some(ANSWER_WITHIN))
        .and_then(|()| stream.write_all(b"{\"stats\":true}\n"))
        .or_else(|e| match e.kind() {
            // It hung up already, maybe after saying why (denied, full): read that.
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Ok(()),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(timed_out()),
            _ => Err(not_notif(
                path,
                format!("cannot send the stats request ({e})"),
            )),
        })?;
    let mut buf: Vec<u8> = Vec::new();
    let mut scanned = 0;
    loop {
        while let Some(i) = buf[scanned..].iter().position(|&b| b == b'\n') {
            let line = &buf[scanned..scanned + i];
            match classify(line) {
                Some(Answer::Stats(stats)) => return Ok(stats),
                Some(Answer::Refused { message, reason }) => {
                    return Err(refused(path, &message, &reason))
                }
                Some(Answer::Other) => scanned += i + 1,
                None => {
                    let shown = untrusted::excerpt(line, 80);
                    return Err(not_notif(
                        path,
                        format!("answered with something that is not JSON (\"{shown}\")"),
                    ));
                }
            }
        }
        if buf.len() - scanned > MAX_LINE {
            return Err(not_notif(path, "answered with an endless line"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| Failure::new(exit::OTHER, format!("{path}: {e}")))?;
        let mut chunk = [0u8; 16 << 10];
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(not_notif(
                    path,
                    "closed the connection without answering the stats request \
                     (or it is at its max_subscribers limit)",
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // What it sent before the reset was read already.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(not_notif(
                    path,
                    "closed the connection without answering the stats request",
                ))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out())
            }
            Err(e) => return Err(not_notif(path, format!("reading the answer failed ({e})"))),
        }
    }
}

/// A value for the table: strings without their quotes, the rest as sent.
/// Control characters in it are escaped: the publisher wrote it.
fn cell(value: &[u8]) -> String {
    let text = match serde_json::from_slice::<String>(value) {
        Ok(text) => text,
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    };
    untrusted::harmless(&text).into_owned()
}

fn table(answers: &[(&str, Vec<u8>)], out: &mut impl Write) -> io::Result<()> {
    let mut fields: Vec<String> = Vec::new();
    let mut columns: Vec<Vec<(String, String)>> = Vec::new();
    for (_, stats) in answers {
        let members: Vec<(String, String)> = json::members(stats)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != "subscriber_list") // its own table, below
            .map(|(k, v)| (untrusted::harmless(&k).into_owned(), cell(v)))
            .collect();
        for (key, _) in &members {
            if !fields.contains(key) {
                fields.push(key.clone());
            }
        }
        columns.push(members);
    }
    let name_width = fields.iter().map(|f| f.len()).max().unwrap_or(0).max(5);
    let widths: Vec<usize> = answers
        .iter()
        .zip(&columns)
        .map(|((path, _), column)| {
            column
                .iter()
                .map(|(_, v)| v.chars().count())
                .chain([path.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    write!(out, "{:<name_width$}", "field")?;
    for ((path, _), width) in answers.iter().zip(&widths) {
        write!(out, "  {path:>width$}")?;
    }
    writeln!(out)?;
    for field in &fields {
        write!(out, "{field:<name_width$}")?;
        for (column, width) in columns.iter().zip(&widths) {
            let value = column
                .iter()
                .find(|(k, _)| k == field)
                .map_or("-", |(_, v)| v.as_str());
            write!(out, "  {value:>width$}")?;
        }
        writeln!(out)?;
    }
    crate::subscriber_table::write(answers, out)
}

fn json_lines(answers: &[(&str, Vec<u8>)], out: &mut impl Write) -> io::Result<()> {
    for (path, stats) in answers {
        let path = serde_json::to_string(path).unwrap_or_default();
        out.write_all(b"{\"path\":")?;
        out.write_all(path.as_bytes())?;
        out.write_all(b",\"stats\":")?;
        // On a terminal, DEL and C1 controls inside strings are escaped.
        // SAFETY: isatty only inspects the descriptor.
        let terminal = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
        match untrusted::printable(stats, terminal) {
            Ok(text) => out.write_all(&text)?,
            Err(_) => out.write_all(untrusted::excerpt(stats, usize::MAX).as_bytes())?,
        }
        out.write_all(b"}\n")?;
    }
    Ok(())
}

/// One argument and the sockets it names.
struct Group {
    /// The argument as given (a path or a glob).
    label: String,
    glob: bool,
    /// Indexes into the answers.
    answered: Vec<usize>,
    stale: usize,
    unanswered: usize,
}

pub fn run(args: StatsArgs) -> Result<u8, Failure> {
    let mut answers: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut code = exit::OK;
    // A quoted glob, expanded here: its live sockets, of one owner unless
    // --any-owner. Its dead sockets (nobody listens: a dead worker's file)
    // are counted as stale, quietly: a service whose workers restart leaves
    // them, and they do not make it down.
    let mut targets: Vec<(String, usize)> = Vec::new();
    for path in &args.paths {
        let glob = paths::is_pattern(path);
        groups.push(Group {
            label: path.clone(),
            glob,
            answered: Vec::new(),
            stale: 0,
            unanswered: 0,
        });
        let group = groups.len() - 1;
        if !glob {
            targets.push((path.clone(), group));
            continue;
        }
        let matches = paths::expand_owned(path, args.any_owner);
        for (skipped, uid, owner) in &matches.other_owner {
            note(&paths::other_owner_warning(skipped, *uid, *owner));
        }
        // The sockets left out of both lists refused the probe: dead ones.
        let dead: Vec<String> = paths::expand_sockets(path)
            .into_iter()
            .filter(|p| {
                !matches.paths.contains(p) && !matches.other_owner.iter().any(|(o, _, _)| o == p)
            })
            .collect();
        groups[group].stale = dead.len();
        if matches.paths.is_empty() && matches.other_owner.is_empty() {
            note(&format!(
                "{path}: no live socket matches{}",
                match dead.len() {
                    0 => String::new(),
                    n => format!(" ({n} dead: nobody listens on them)"),
                }
            ));
            if code == exit::OK {
                code = exit::MISSING;
            }
        }
        targets.extend(matches.paths.into_iter().map(|p| (p, group)));
    }
    for (path, group) in &targets {
        let glob = groups[*group].glob;
        match query(path) {
            Ok(stats) => {
                groups[*group].answered.push(answers.len());
                answers.push((path, stats));
            }
            // A glob's socket that died since it was listed: stale too.
            Err(QueryError::Stale(_)) if glob => groups[*group].stale += 1,
            Err(error) => {
                if matches!(error, QueryError::Stale(_)) {
                    groups[*group].stale += 1;
                } else {
                    groups[*group].unanswered += 1;
                }
                let failure = error.failure();
                note(&failure.message);
                if code == exit::OK {
                    code = failure.code;
                }
            }
        }
    }
    let format = match args.format {
        Some(format) => format,
        None if args.json => StatsFormat::Json,
        None => StatsFormat::Table,
    };
    let metrics = match format {
        StatsFormat::Openmetrics => Some(Flavor::OpenMetrics),
        StatsFormat::Prometheus => Some(Flavor::Prometheus),
        _ => None,
    };
    // Metrics are written even when no path answered: notif_up 0 says so.
    if answers.is_empty() && metrics.is_none() {
        return Ok(code);
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let written = match (format, metrics) {
        (_, Some(flavor)) => {
            let all: Vec<openmetrics::Target> = groups
                .iter()
                .map(|group| openmetrics::Target {
                    label: &group.label,
                    glob: group.glob,
                    answers: group
                        .answered
                        .iter()
                        .map(|&i| answers[i].1.as_slice())
                        .collect(),
                    stale: group.stale,
                    unanswered: group.unanswered,
                })
                .collect();
            let options = openmetrics::Options {
                subscribers: args.subscribers,
            };
            openmetrics::write(&all, options, flavor, &mut out)
        }
        (StatsFormat::Json, _) => json_lines(&answers, &mut out),
        _ => table(&answers, &mut out),
    }
    .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(code),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(code),
        Err(err) => Err(Failure::new(
            exit::OTHER,
            format!("cannot write to stdout: {err}"),
        )),
    }
}
