//! `notif stats`: the stats request of the subscription protocol, for each path.

use std::io::{self, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::exit::{self, connect_failure, file_kind, Failure};
use crate::openmetrics::{self, Flavor};
use crate::{json, note, StatsArgs, StatsFormat};

/// How long a publisher has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Longest line read while waiting for the answer (notifications emitted
/// between our connection and the request can come first).
const MAX_LINE: usize = 64 << 20;

fn connect(path: &str) -> io::Result<UnixStream> {
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        return UnixStream::connect_addr(&address);
    }
    UnixStream::connect(path)
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
    Refused(String),
    /// A notification sent before the publisher read our request: skip it.
    Other,
}

fn classify(line: &[u8]) -> Option<Answer> {
    let members = json::members(line)?;
    if members.len() != 1 || members[0].0 != "notif" {
        return Some(Answer::Other);
    }
    let control = members[0].1;
    if let Some(stats) = json::member(control, "stats") {
        if stats.starts_with(b"{") {
            return Some(Answer::Stats(stats.to_vec()));
        }
    }
    if let Some(error) = json::member(control, "error") {
        let text = serde_json::from_slice::<String>(error).unwrap_or_default();
        return Some(Answer::Refused(text));
    }
    Some(Answer::Other)
}

/// Asks the publisher at `path` for its stats; returns the text of the stats object.
fn query(path: &str) -> Result<Vec<u8>, Failure> {
    if let Some(kind) = file_kind(path) {
        if kind != "socket" {
            return Err(Failure::new(
                exit::NOT_NOTIF,
                format!("{path}: is a {kind}, not a socket: not a notif publisher; check the path"),
            ));
        }
    }
    let mut stream = connect(path).map_err(|e| match e.raw_os_error() {
        // A socket nobody listens on (not a socket was handled above). Not
        // connect_failure's text: its "drop --no-reconnect" is tail's option.
        Some(libc::ECONNREFUSED) => Failure::new(
            exit::NOT_NOTIF,
            format!(
                "{path}: nothing is listening there (a socket left by a publisher that \
                 stopped?): not a notif publisher now; start the publisher"
            ),
        ),
        errno => connect_failure(path, errno.unwrap_or(libc::EIO), &e.to_string()),
    })?;
    let deadline = Instant::now() + ANSWER_WITHIN;
    let timed_out = || not_notif(path, format!("no answer within {ANSWER_WITHIN:?}"));
    stream
        .set_write_timeout(Some(ANSWER_WITHIN))
        .and_then(|()| stream.write_all(b"{\"stats\":true}\n"))
        .map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
            _ => not_notif(path, format!("cannot send the stats request ({e})")),
        })?;
    let mut buf: Vec<u8> = Vec::new();
    let mut scanned = 0;
    loop {
        while let Some(i) = buf[scanned..].iter().position(|&b| b == b'\n') {
            let line = &buf[scanned..scanned + i];
            match classify(line) {
                Some(Answer::Stats(stats)) => return Ok(stats),
                Some(Answer::Refused(message)) => {
                    return Err(not_notif(
                        path,
                        format!("the stats request was refused (\"{message}\")"),
                    ))
                }
                Some(Answer::Other) => scanned += i + 1,
                None => {
                    let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
                    return Err(not_notif(
                        path,
                        format!("answered with something that is not JSON ({shown:?})"),
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
fn cell(value: &[u8]) -> String {
    match serde_json::from_slice::<String>(value) {
        Ok(text) => text,
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    }
}

fn table(answers: &[(&str, Vec<u8>)], out: &mut impl Write) -> io::Result<()> {
    let mut fields: Vec<String> = Vec::new();
    let mut columns: Vec<Vec<(String, String)>> = Vec::new();
    for (_, stats) in answers {
        let members: Vec<(String, String)> = json::members(stats)
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k != "subscriber_list") // its own table, below
            .map(|(k, v)| (k, cell(v)))
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
        out.write_all(stats)?;
        out.write_all(b"}\n")?;
    }
    Ok(())
}

pub fn run(args: StatsArgs) -> Result<u8, Failure> {
    let mut answers: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut code = exit::OK;
    for path in &args.paths {
        match query(path) {
            Ok(stats) => answers.push((path, stats)),
            Err(failure) => {
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
            let all: Vec<openmetrics::Answer> = args
                .paths
                .iter()
                .map(|path| {
                    let stats = answers.iter().find(|(p, _)| p == path);
                    (path.as_str(), stats.map(|(_, s)| s.as_slice()))
                })
                .collect();
            openmetrics::write(&all, flavor, &mut out)
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
