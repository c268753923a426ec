//! The `notif` command: watch (`tail`), publish (`emit`) and inspect (`stats`)
//! notif sockets from a shell.

mod bounded;
mod connect;
mod cursor_file;
mod emit;
mod exit;
mod json;
mod openmetrics;
mod paths;
mod stats;
mod stop_signal;
mod subscriber_table;
mod tail;
mod untrusted;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use exit::Failure;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  usage error (bad arguments or option values)
  2  no socket at the path (or, for emit, its directory is missing or no subscriber came in time)
  3  permission denied
  4  not a notif publisher at the path (nothing listening, not a socket, no or wrong answer);
     for emit: the path is taken (another publisher is live there, or it is not a socket)
  5  any other failure (I/O error, the stream ended early)
  6  the publisher is full: it has as many subscribers as its max_subscribers";

#[derive(Parser, Debug)]
#[command(
    name = "notif",
    version,
    about = "Watch, publish and inspect notif sockets (newline-delimited JSON over a Unix socket)",
    after_help = EXIT_CODES,
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the notifications published on one or more sockets, one JSON object per line.
    #[command(after_help = TAIL_HELP)]
    Tail(TailArgs),
    /// Publish every JSON line read from standard input on a socket.
    #[command(after_help = EMIT_HELP)]
    Emit(EmitArgs),
    /// Ask publishers for their counters and print them.
    #[command(after_help = STATS_HELP)]
    Stats(StatsArgs),
}

const TAIL_HELP: &str = "\
Each notification is printed exactly as received (compact JSON, one per line) unless
--pretty or --with-path is given. Drops and reconnections are reported on stderr. A line
that is not a JSON object (the socket is not a notif publisher) is never printed: it is
reported on stderr (the 1st, 10th, 100th... of each socket) and skipped. When stdout is a
terminal, the characters JSON allows raw in strings that a terminal would act on (DEL and
the C1 controls U+0080-U+009F) are printed as \\u00XX escapes. While stdout is slow, tail
holds at most 8 MiB (or one line, if longer) for it, plus one line of at most 64 MiB per
socket being read: the publishers drop for us meanwhile, and the drop markers say so. A PATH may be a glob
(quote it: 'notif tail \"/run/nova/notifications-*.sock\"'); it is re-scanned every second,
so sockets that appear later are picked up. A glob follows only the sockets owned by the
directory's owner or by the user running tail (--owner USER names others instead,
--any-owner takes any): another user's socket there is never connected to, and is reported
on stderr when it appears. A glob follows at most 256 sockets at once; a socket whose file
is removed is no longer followed (a new one at that path is picked up again). When a
publisher goes away and when it comes back, tail says so on stderr. Colours (--pretty on
a terminal) are off when NO_COLOR is set. Filters combine with AND; repeated options of one
kind are alternatives (OR).

Resuming: every notification has a cursor (EPOCH-SEQ, opaque: store it, pass it back). With
--cursor-file FILE, tail starts each socket after the cursor FILE holds for it (one JSON object,
{\"<socket path>\":\"<cursor>\",...}; without an entry: live, or the ring with --replay; --after
takes precedence for its socket) and saves the cursor of the last notification printed from each
socket, by replacing FILE (a temporary file, then rename), after stdout is flushed, at most every
100 ms while notifications flow, and at exit; SIGINT, SIGTERM and SIGHUP save it too, then end
tail by that signal (without saving, after 2 s stuck on stdout or at a second signal). A tail killed otherwise (SIGKILL) may repeat,
when restarted, what it printed since the last save (at most 100 ms of output, unless stdout was
blocking), never skip any. What the publisher no longer holds (its replay ring
is too small, or it restarted since) is reported on stderr, then the stream continues. After a
reconnection, tail resumes after the last notification it received.

Exit codes: 0 success (also when stdout is closed, e.g. piped to head); 1 usage error;
2 no socket at the path (with --no-reconnect); 3 permission denied (by the socket file's
permissions, or by the publisher's allow-lists: never retried); 4 not a notif publisher, or it
refused the request; 5 other failure; 6 the publisher is full (max_subscribers: not retried).";

const EMIT_HELP: &str = "\
Reads one JSON object per line from stdin and emits it. Empty lines are skipped; a line that
is not one JSON object, or is too large, is reported on stderr with its line number and
skipped. At end of input the publisher is closed (queued notifications are flushed) and a
summary is printed on stderr. Note that with nobody connected a notification is counted as
dropped_no_subscriber: use --wait-subscribers to wait for readers first.

Exit codes: 0 success (even if some lines were skipped); 1 usage error; 2 the socket's
directory does not exist, or fewer than N subscribers came within --timeout; 3 permission
denied; 4 the path is taken (a live publisher, or something that is not a socket); 5 other
failure.";

const STATS_HELP: &str = "\
Prints a table with one column per path and one row per counter (in the order the publisher
sends them), or with --json one line {\"path\":...,\"stats\":{...}} per path. Paths that fail
are reported on stderr; the others are still printed. A quoted glob is expanded here: its live
sockets are queried; its dead ones (nobody listens: a dead worker's leftover file) are skipped
quietly.

--format openmetrics or prometheus prints metrics for Prometheus and node_exporter's textfile
collector (which reads the prometheus format): one set of series per argument, labelled
path=\"<the argument as given>\", a glob's sockets added up, so that workers that restart
under a {pid} template make no new series. notif_up is 1 when at least one publisher answered,
notif_publishers how many did, notif_stale_sockets counts the dead sockets (not a failure),
notif_unanswered_sockets the live ones that gave no answer. Per-subscriber series (labelled by
the subscribers' pid and uid) only with --subscribers. See docs/metrics.md.

Exit codes: 0 every path answered (a glob's dead sockets do not count); 1 usage error; otherwise
the code of the first path that failed: 2 no socket there (a glob: no live socket);
3 permission denied (the socket file, or the publisher's
allow-lists); 4 not a notif publisher (nothing listening, not a socket, no answer within 2 s,
or an answer that is not a stats line); 5 other failure; 6 the publisher is full (an older
publisher counts stats requests against max_subscribers).";

#[derive(Args, Debug)]
struct TailArgs {
    /// Socket paths or globs (`@name` for an abstract socket).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// Only notifications whose event_type matches this glob (`*` matches anything). Repeatable.
    #[arg(long = "event-type", value_name = "GLOB")]
    event_types: Vec<String>,
    /// Only notifications with this priority (ignoring case), e.g. error. Repeatable.
    #[arg(long = "priority", value_name = "P")]
    priorities: Vec<String>,
    /// Only notifications whose publisher_id matches this glob. Repeatable.
    #[arg(long = "publisher", value_name = "GLOB")]
    publishers: Vec<String>,
    /// Print each notification indented (coloured when stdout is a terminal).
    #[arg(long)]
    pretty: bool,
    /// Exit after this many notifications in total.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Exit when a publisher is absent or goes away instead of waiting for it.
    #[arg(long)]
    no_reconnect: bool,
    /// Report notifications dropped because we were too slow (the default).
    #[arg(long, overrides_with = "no_markers")]
    markers: bool,
    /// Do not ask the publisher to report drops.
    #[arg(long, overrides_with = "markers")]
    no_markers: bool,
    /// Ask for a heartbeat after this many idle seconds (0.1 to 3600); silence for
    /// three intervals counts as a lost connection.
    #[arg(long, value_name = "SECONDS")]
    heartbeat: Option<f64>,
    /// Print each notification as {"path":"<socket>","notification":{...}}, saying
    /// which socket it came from (useful with globs).
    #[arg(long)]
    with_path: bool,
    /// Over a glob, follow sockets whoever owns them (by default only those
    /// owned by the directory's owner or by this user; the others are
    /// skipped with a warning and never connected to).
    #[arg(long, conflicts_with = "owners")]
    any_owner: bool,
    /// Over a glob, follow only sockets owned by this user (name or uid)
    /// instead of the directory's owner and this user. Repeatable.
    #[arg(long = "owner", value_name = "USER")]
    owners: Vec<String>,
    /// Start after the notification this cursor names (from --show-cursor or a
    /// cursor file): what the publisher still holds after it, then live. One
    /// socket only: a cursor belongs to one publisher (see --cursor-file).
    #[arg(long, value_name = "CURSOR", conflicts_with = "replay")]
    after: Option<String>,
    /// Start with everything the publisher's replay ring holds, then live.
    #[arg(long)]
    replay: bool,
    /// Resume each socket after the cursor saved for it in FILE (if FILE
    /// exists), and save there the cursor of the last notification printed
    /// from each socket as it goes.
    #[arg(long, value_name = "FILE")]
    cursor_file: Option<PathBuf>,
    /// Print each notification as {"path":...,"cursor":...,"notification":{...}}
    /// (--with-path with the notification's cursor; null from a publisher that
    /// does not number its notifications).
    #[arg(long)]
    show_cursor: bool,
}

#[derive(Args, Debug)]
struct EmitArgs {
    /// Where to publish (a socket file path, or `@name` for an abstract socket).
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// Before reading stdin, wait until this many subscribers are connected.
    #[arg(long, value_name = "N")]
    wait_subscribers: Option<u64>,
    /// Permissions of the socket file, in octal (default 0600).
    #[arg(long, value_name = "MODE")]
    mode: Option<String>,
    /// Group of the socket file, by name or number.
    #[arg(long, value_name = "G")]
    group: Option<String>,
    /// How long --wait-subscribers waits, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    timeout: f64,
    /// Keep the most recent notifications, up to this many bytes (suffix K
    /// or M for KiB, MiB; at most half of the 64 MiB memory limit), in a
    /// replay ring, so that `notif tail --replay` or `--after` gets them even
    /// if it connects later. Default: off.
    #[arg(long, value_name = "BYTES")]
    replay: Option<String>,
}

#[derive(Args, Debug)]
struct StatsArgs {
    /// Socket paths or quoted globs (`@name` for an abstract socket); a glob
    /// skips dead sockets.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// One JSON object per line instead of a table (the same as --format json).
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Over a glob, also query sockets owned by another user than the
    /// directory's owner or this user (by default they are skipped with a
    /// warning).
    #[arg(long)]
    any_owner: bool,
    /// table (default), json, openmetrics (OpenMetrics 1.0, ends with # EOF) or
    /// prometheus (the text format node_exporter's textfile collector reads).
    #[arg(long, value_enum, value_name = "FORMAT")]
    format: Option<StatsFormat>,
    /// With --format openmetrics or prometheus: also per-subscriber series,
    /// labelled by each subscriber's pid and uid (left out by default: they
    /// make new series at each reconnection and tell who reads).
    #[arg(long)]
    subscribers: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StatsFormat {
    Table,
    Json,
    Openmetrics,
    Prometheus,
}

fn main() -> ExitCode {
    // `notif __generate DIR` (for `make`, not for people: it is no clap
    // subcommand, so neither --help, the man pages nor the completions show it).
    let mut argv = std::env::args_os().skip(1);
    if argv.next().as_deref() == Some(std::ffi::OsStr::new("__generate")) {
        return match (argv.next(), argv.next()) {
            (Some(dir), None) => match generate(std::path::Path::new(&dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    note(&format!("__generate: {e}"));
                    ExitCode::from(exit::OTHER)
                }
            },
            _ => {
                note("usage: notif __generate DIR");
                ExitCode::from(exit::USAGE)
            }
        };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version are not errors; everything else is a usage error (1).
            let code = if err.use_stderr() { exit::USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Tail(args) => tail::run(args),
        Command::Emit(args) => emit::run(args),
        Command::Stats(args) => stats::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, message }) => {
            note(&message);
            ExitCode::from(code)
        }
    }
}

/// Writes what a system tool ships beside its binary, from the command line's
/// own definitions (the clap derive above), into DIR: the man pages
/// (man1/notif.1 and man1/notif-SUBCOMMAND.1) and the shell completions
/// (completions/notif.bash, completions/_notif for zsh, completions/notif.fish).
fn generate(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    use clap_complete::Shell;

    let mut cmd = Cli::command();
    cmd.build();
    let man = dir.join("man1");
    std::fs::create_dir_all(&man)?;
    // Pages for notif and each subcommand; none for clap's `help` subcommand.
    clap_mangen::generate_to(Cli::command().disable_help_subcommand(true), &man)?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "notif", &completions)?;
    }
    Ok(())
}

/// Writes "notif: MESSAGE" on stderr; a closed stderr is not worth a panic.
/// Messages quote what publishers sent: control characters are escaped, so
/// nothing reaches a terminal that it would act on.
pub fn note(message: &str) {
    use std::io::Write;
    let message = untrusted::harmless(message);
    let _ = writeln!(std::io::stderr().lock(), "notif: {message}");
}
