//! `notif emit`: a publisher fed by standard input, one JSON object per line.

use std::io::{self, BufRead};
use std::thread;
use std::time::{Duration, Instant};

use notif::{json_line, Options, Publisher};

use crate::exit::{self, Failure};
use crate::{note, EmitArgs};

/// How often --wait-subscribers looks, and how long emit waits for room when
/// the backlog to the server thread is full.
const POLL: Duration = Duration::from_millis(10);
const BACKLOG_PAUSE: Duration = Duration::from_millis(1);

fn options(args: &EmitArgs) -> Result<Options, Failure> {
    let mut options = Options::default();
    if let Some(text) = &args.mode {
        let digits = text.strip_prefix("0o").unwrap_or(text);
        let mode = u32::from_str_radix(digits, 8).map_err(|_| {
            Failure::usage(format!(
                "--mode {text}: give permission bits in octal, e.g. 0660"
            ))
        })?;
        options
            .set_mode(mode)
            .map_err(|e| Failure::usage(format!("--mode {text}: {}", e.message())))?;
    }
    if let Some(text) = &args.replay {
        let bytes = size(text).ok_or_else(|| {
            Failure::usage(format!(
                "--replay {text}: give a number of bytes, optionally with K or M (KiB, MiB), e.g. 4M"
            ))
        })?;
        options
            .set_replay(bytes)
            .map_err(|e| Failure::usage(format!("--replay {text}: {}", e.message())))?;
    }
    if let Some(group) = &args.group {
        options
            .set_group(group.as_bytes())
            .map_err(|e| Failure::usage(format!("--group {group}: {}", e.message())))?;
    }
    Ok(options)
}

/// `N`, `NK` or `NM` (KiB, MiB) as bytes.
fn size(text: &str) -> Option<usize> {
    let (digits, unit) = match text.strip_suffix(['K', 'k']) {
        Some(digits) => (digits, 1 << 10),
        None => match text.strip_suffix(['M', 'm']) {
            Some(digits) => (digits, 1 << 20),
            None => (text, 1),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

fn open_failure(path: &str, err: &notif::Error) -> Failure {
    let detail = err.message();
    match err.errno() {
        libc::EADDRINUSE => Failure::new(
            exit::NOT_NOTIF,
            format!("{path}: another publisher is live there ({detail}): stop it, or publish on another path"),
        ),
        libc::EEXIST => Failure::new(
            exit::NOT_NOTIF,
            format!("{path}: {detail}: remove it yourself if it is not needed, or publish on another path"),
        ),
        libc::ENOENT | libc::ENOTDIR => Failure::new(
            exit::MISSING,
            format!("{path}: {detail}: create the directory first, or check the path"),
        ),
        libc::EACCES | libc::EPERM => Failure::new(
            exit::PERMISSION,
            format!("{path}: {detail}: run as a user that may write there (and is in the --group, if given)"),
        ),
        libc::EINVAL | libc::ENAMETOOLONG => Failure::usage(format!("{path}: {detail}")),
        _ => Failure::new(exit::OTHER, format!("{path}: cannot publish: {detail}")),
    }
}

/// Why `line` would be rejected by a publisher with `options`, if it would.
/// The publisher only checks a notification when someone would receive it;
/// this reports mistakes the same way when nobody is listening.
fn check(line: &[u8], options: &Options) -> Option<String> {
    match json_line::to_compact_line(line) {
        Err(err) => Some(format!("notification rejected: {err}")),
        Ok(_) if notif::top_level::first_member_is_reserved(line) => Some(
            notif::top_level::reserved_name_refusal()
                .message()
                .to_string(),
        ),
        Ok(compact) if compact.len() > options.max_message => Some(format!(
            "notification rejected: {} bytes once compact, over the max_message limit of {}",
            compact.len(),
            options.max_message
        )),
        Ok(_) => None,
    }
}

enum Line {
    /// A line (its newline, if any, included) is in the buffer.
    Whole,
    /// The line has more than `limit` bytes before its newline; the buffer
    /// holds its first bytes, and the rest is still to be read.
    TooLong,
    /// End of input.
    End,
}

/// Reads one line into `line`, keeping at most `limit` bytes of it (plus the
/// newline).
fn read_line(input: &mut impl BufRead, line: &mut Vec<u8>, limit: usize) -> io::Result<Line> {
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if chunk.is_empty() {
            return Ok(if line.is_empty() {
                Line::End
            } else {
                Line::Whole
            });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let text = take - usize::from(done);
        if line.len() + text > limit {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(&chunk[..take]);
        input.consume(take);
        if done {
            return Ok(Line::Whole);
        }
    }
}

/// Discards input up to and including the next newline (or the end).
fn skip_line(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                input.consume(n);
            }
        }
    }
}

/// How long --wait-subscribers' count must hold.
const HOLD: Duration = Duration::from_millis(30);

fn wait_for_subscribers(
    publisher: &Publisher,
    path: &str,
    wanted: u64,
    timeout: Duration,
) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    // The count must hold for a moment: a connection that asks for stats
    // (a glob's liveness probe, a monitor) counts until its request is read,
    // and leaves at once.
    let mut reached = false;
    loop {
        let connected = publisher.stats().subscribers;
        if connected >= wanted && reached {
            return Ok(());
        }
        reached = connected >= wanted;
        if reached {
            thread::sleep(HOLD);
            continue;
        }
        if Instant::now() >= deadline {
            return Err(Failure::new(
                exit::MISSING,
                format!(
                    "{path}: {connected} of the {wanted} subscribers asked for connected within {:?}: \
                     start them first, or raise --timeout",
                    timeout
                ),
            ));
        }
        thread::sleep(POLL);
    }
}

pub fn run(args: EmitArgs) -> Result<u8, Failure> {
    let options = options(&args)?;
    if !(args.timeout.is_finite() && args.timeout >= 0.0) {
        return Err(Failure::usage(format!(
            "--timeout {}: give a number of seconds, 0 or more",
            args.timeout
        )));
    }
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .map_err(|_| Failure::usage(format!("--timeout {}: too large", args.timeout)))?;
    let path = args.path.display().to_string();
    let publisher =
        Publisher::open_with(&args.path, &options).map_err(|e| open_failure(&path, &e))?;

    if let Some(wanted) = args.wait_subscribers {
        if let Err(failure) = wait_for_subscribers(&publisher, &path, wanted, timeout) {
            publisher.close();
            return Err(failure);
        }
    }

    let mut stdin = io::stdin().lock();
    // A line longer than this is not even kept: `notif emit < /dev/zero`
    // holds max_message bytes at most, never the endless line.
    let limit = options.max_message;
    let mut line = Vec::new();
    let (mut number, mut skipped, mut backlog_waits) = (0u64, 0u64, 0u64);
    // Bad lines emitted while nobody listened: the publisher counted them as
    // dropped_no_subscriber without looking at them.
    let mut skipped_unheard = 0u64;
    let mut read_error = None;
    loop {
        line.clear();
        match read_line(&mut stdin, &mut line, limit) {
            Ok(Line::End) => break,
            Ok(Line::Whole) => number += 1,
            Ok(Line::TooLong) => {
                number += 1;
                skipped += 1;
                note(&format!(
                    "stdin line {number}: longer than the max_message limit of {limit} bytes; skipping to the next newline"
                ));
                match skip_line(&mut stdin) {
                    Ok(()) => continue,
                    Err(err) => {
                        read_error = Some(err);
                        break;
                    }
                }
            }
            Err(err) => {
                read_error = Some(err);
                break;
            }
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
            continue;
        }
        loop {
            match publisher.emit(text) {
                Ok(0) => {
                    if let Some(why) = check(text, &options) {
                        skipped += 1;
                        skipped_unheard += 1;
                        note(&format!("stdin line {number}: {why}; skipped"));
                    }
                }
                Ok(_) => {}
                Err(err) if err.errno() == libc::EAGAIN => {
                    // The server thread is behind: wait rather than drop what we were given.
                    backlog_waits += 1;
                    thread::sleep(BACKLOG_PAUSE);
                    continue;
                }
                Err(err) if matches!(err.errno(), libc::EINVAL | libc::EMSGSIZE) => {
                    skipped += 1;
                    note(&format!("stdin line {number}: {}; skipped", err.message()));
                }
                Err(err) => {
                    publisher.close();
                    return Err(Failure::new(
                        exit::OTHER,
                        format!(
                            "{path}: emit failed at stdin line {number}: {}",
                            err.message()
                        ),
                    ));
                }
            }
            break;
        }
    }

    let stats = publisher.close();
    // dropped_backlog counts the attempts we waited out and then retried.
    let no_subscriber = stats.dropped_no_subscriber.saturating_sub(skipped_unheard);
    let dropped = no_subscriber
        + stats.dropped_slow
        + stats.dropped_closed
        + stats.dropped_backlog.saturating_sub(backlog_waits);
    note(&format!(
        "{path}: {number} lines read, {skipped} skipped; emitted {}, delivered {}, dropped {dropped} \
         (no subscriber {}, subscriber too slow {}, at close or hang-up {})",
        stats.emitted,
        stats.delivered,
        no_subscriber,
        stats.dropped_slow,
        stats.dropped_closed
    ));
    match read_error {
        Some(err) => Err(Failure::new(
            exit::OTHER,
            format!("reading stdin after line {number}: {err}"),
        )),
        None => Ok(exit::OK),
    }
}
