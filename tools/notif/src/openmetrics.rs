//! `notif stats --format openmetrics` and `--format prometheus`: the stats
//! answers as metrics text for the monitoring a host already runs.
//!
//! - `openmetrics`: OpenMetrics 1.0 (`application/openmetrics-text`): counter
//!   families are named without `_total`, their samples with it; ends with
//!   `# EOF`.
//! - `prometheus`: the Prometheus text format 0.0.4, which node_exporter's
//!   textfile collector reads (it does not read OpenMetrics: no `info` type,
//!   and a TYPE line must name the sample itself, `_total` included).
//!
//! One set of series per argument, labelled `path` with the argument as given:
//! a socket path, or a glob (`/run/nova/notifications-*.sock`), whose live
//! sockets are added up. So the series of a service whose `{pid}` workers
//! restart stay the same: no label holds a pid unless asked for. For each:
//! `notif_up` (1 if at least one publisher answered), `notif_publishers` (how
//! many answered), `notif_stale_sockets` (sockets nobody listens on, such as
//! a dead worker's leftover file: not a down service),
//! `notif_unanswered_sockets` (sockets that are listened on but gave no stats
//! answer), the publishers' counters and gauges (summed), and
//! `notif_publisher_info` with a `version` label (a count per version). With
//! `subscribers`, per-subscriber series are labelled by `pid` and `uid`
//! (empty when the publisher does not show them to us).
//!
//! The answers are the publishers' text: only the fields this tool knows
//! become series, only as unsigned integers, and the version only when it
//! looks like one, so that a publisher cannot add series or labels of its own
//! (a second `notif_up` for its path, say).

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    OpenMetrics,
    Prometheus,
}

/// One argument of `notif stats`: a path or a glob, and what its sockets said.
#[derive(Default)]
pub struct Target<'a> {
    /// The argument as given: the `path` label.
    pub label: &'a str,
    /// Whether it is a glob (its sockets come and go: the per-open numbering,
    /// `replay_oldest` and `next_seq`, is left out).
    pub glob: bool,
    /// The stats objects of the sockets that answered.
    pub answers: Vec<&'a [u8]>,
    /// Sockets that nobody listens on (ECONNREFUSED).
    pub stale: usize,
    /// Sockets that are listened on but gave no stats answer.
    pub unanswered: usize,
}

/// What to publish beyond the publishers' own series.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Per-subscriber series labelled by `pid` and `uid`.
    pub subscribers: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Info,
}

struct Family {
    name: String,
    kind: Kind,
    help: String,
    /// (labels, value), in the order added.
    samples: Vec<(Vec<(&'static str, String)>, String)>,
}

#[derive(Default)]
struct Families(Vec<Family>);

impl Families {
    fn add(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        labels: Vec<(&'static str, String)>,
        value: String,
    ) {
        let family = match self.0.iter_mut().position(|f| f.name == name) {
            Some(i) => &mut self.0[i],
            None => {
                self.0.push(Family {
                    name: name.to_string(),
                    kind,
                    help: help.to_string(),
                    samples: Vec::new(),
                });
                self.0.last_mut().expect("just pushed")
            }
        };
        family.samples.push((labels, value));
    }
}

/// What the counters of the stats answer mean (the Counters table of docs/c-api.md).
/// A key not listed (a newer publisher's) still becomes a metric.
const HELP: &[(&str, &str)] = &[
    ("subscribers", "Subscribers connected now."),
    ("accepted", "Connections accepted since the publisher opened."),
    (
        "emitted",
        "Notifications accepted by emit for at least one subscriber.",
    ),
    (
        "delivered",
        "(notification, subscriber) pairs fully written to the subscriber's socket.",
    ),
    (
        "dropped_no_subscriber",
        "Notifications with nobody to go to.",
    ),
    (
        "dropped_slow",
        "(notification, subscriber) pairs dropped because that subscriber's buffer was full.",
    ),
    (
        "dropped_backlog",
        "Notifications emit dropped because the backlog to the server thread was full (EAGAIN).",
    ),
    (
        "rejected",
        "Notifications emit refused (not one JSON object, too large).",
    ),
    ("bytes_sent", "Bytes written to subscriber sockets."),
    (
        "disconnected",
        "Connections the publisher closed (slow policy, limits, allow-lists, bad requests).",
    ),
    (
        "dropped_closed",
        "(notification, subscriber) pairs still queued when the subscriber went away or close's linger ran out.",
    ),
    (
        "refused",
        "Connections closed at accept because max_subscribers were connected.",
    ),
    (
        "fanout",
        "(notification, subscriber) pairs handed to subscribers' queues.",
    ),
    (
        "filtered",
        "(notification, subscriber) pairs a subscriber's filter left out.",
    ),
    ("bad_requests", "Invalid subscription request lines."),
    ("stats_requests", "Stats requests answered."),
    (
        "denied",
        "Connections closed at accept because the peer matched no allow-list.",
    ),
    (
        "replayed",
        "(notification, subscriber) pairs sent again from the log to a subscriber that resumed or asked for the replay ring (in fanout too).",
    ),
    ("replay_bytes", "Bytes of memory the replay ring holds now."),
    ("replay_messages", "Notifications the replay ring holds now."),
    (
        "replay_oldest",
        "Sequence number of the oldest notification the replay ring holds (next_seq when it holds none).",
    ),
    (
        "next_seq",
        "Sequence number the next notification will get (this open of the publisher).",
    ),
    (
        "writes",
        "System calls that wrote (or tried to write) to subscriber sockets: the server thread's and those of emitting threads writing through.",
    ),
    (
        "wakeups",
        "Times an emitting thread woke the sleeping server thread (an eventfd write).",
    ),
    (
        "written_through",
        "(notification, subscriber) pairs an emitting thread wrote to the socket itself while the server thread slept (in delivered and fanout too).",
    ),
    (
        "disconnected_costly",
        "Connections cut off because writing to them cost the publisher's thread far more than their bytes (reason too_costly; in disconnected too).",
    ),
    (
        "kept_no_subscriber",
        "Notifications emitted while nobody was connected and kept in the replay ring for subscribers that resume or replay.",
    ),
];

/// Which numeric members are levels rather than running totals: the count of
/// subscribers, anything that measures what is queued or held now, and the
/// replay ring's content and numbering (`replay_oldest`, `next_seq`: they
/// start again at 0 when the publisher reopens, so they are no counters).
/// `replayed` is a running total.
fn is_gauge(key: &str) -> bool {
    key == "subscribers"
        || key.contains("queued")
        || key.starts_with("memory")
        || key.starts_with("replay_")
        || key == "next_seq"
}

/// The metric name of a stats key this tool knows (keys are snake_case).
fn metric_name(key: &str) -> String {
    format!("notif_{key}")
}

/// A label value: backslash, double quote and newline escaped (both formats).
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out
}

/// A counter or gauge of an answer: an unsigned integer, nothing else.
fn number(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A version as a label value: at most 64 characters of [0-9A-Za-z.+-_~];
/// anything else is not a version and reads "invalid".
fn version(value: &[u8]) -> String {
    match serde_json::from_slice::<String>(value) {
        Ok(v)
            if !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-~".contains(&b)) =>
        {
            v
        }
        _ => "invalid".to_string(),
    }
}

/// One subscriber of the list, as far as the metrics use it.
#[derive(Default)]
struct Peer {
    connections: u64,
    queued_bytes: u64,
    delivered: u64,
    dropped_slow: u64,
    /// The oldest connection's connected_at (unix seconds).
    connected_at: Option<f64>,
}

/// Adds the subscriber list `list` into `peers`, by (pid, uid).
fn add_peers(peers: &mut BTreeMap<(String, String), Peer>, list: &[u8]) {
    let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(list) else {
        return;
    };
    let id = |v: &serde_json::Value, key: &str| v[key].as_u64().map(|n| n.to_string());
    for entry in list.iter().filter(|e| e.is_object()) {
        let key = (
            id(entry, "pid").unwrap_or_default(),
            id(entry, "uid").unwrap_or_default(),
        );
        let peer = peers.entry(key).or_default();
        let count = |name: &str| entry[name].as_u64().unwrap_or(0);
        peer.connections += 1;
        peer.queued_bytes = peer.queued_bytes.saturating_add(count("queued_bytes"));
        peer.delivered = peer.delivered.saturating_add(count("delivered"));
        peer.dropped_slow = peer.dropped_slow.saturating_add(count("dropped_slow"));
        if let Some(at) = entry["connected_at"]
            .as_f64()
            .filter(|t| t.is_finite() && *t >= 0.0)
        {
            peer.connected_at = Some(peer.connected_at.map_or(at, |old: f64| old.min(at)));
        }
    }
}

/// The per-open numbering of one publisher: meaningless added up over a glob.
fn per_open(key: &str) -> bool {
    key == "replay_oldest" || key == "next_seq"
}

fn collect(targets: &[Target], options: Options) -> Families {
    let mut families = Families::default();
    let mut seen: Vec<&str> = Vec::new();
    for target in targets {
        let path = target.label;
        // The same argument twice would repeat a label set: the formats forbid it.
        if seen.contains(&path) {
            continue;
        }
        seen.push(path);
        let path_label = || vec![("path", path.to_string())];
        let answered = target.answers.len();
        families.add(
            "notif_up",
            Kind::Gauge,
            "1 if a publisher at path (a socket, or a glob's live sockets) answered the stats request, 0 if none did.",
            path_label(),
            if answered > 0 { "1" } else { "0" }.to_string(),
        );
        families.add(
            "notif_publishers",
            Kind::Gauge,
            "Publishers at path (a socket, or a glob's sockets) that answered the stats request; the series below add them up.",
            path_label(),
            answered.to_string(),
        );
        families.add(
            "notif_stale_sockets",
            Kind::Gauge,
            "Sockets at path that nobody listens on (a stopped publisher's leftover file, such as a dead worker's).",
            path_label(),
            target.stale.to_string(),
        );
        families.add(
            "notif_unanswered_sockets",
            Kind::Gauge,
            "Sockets at path that are listened on but gave no stats answer (refused, too slow, not a notif publisher).",
            path_label(),
            target.unanswered.to_string(),
        );
        // Known fields only, in the order of HELP; each publisher's first
        // value of a field (a repeated key is ignored).
        let mut sums: Vec<(&str, Option<u64>)> = HELP.iter().map(|(k, _)| (*k, None)).collect();
        let mut versions: BTreeMap<String, u64> = BTreeMap::new();
        let mut peers: BTreeMap<(String, String), Peer> = BTreeMap::new();
        for stats in &target.answers {
            let Some(members) = json::members(stats) else {
                continue;
            };
            let mut done: Vec<&str> = Vec::new();
            for (key, value) in &members {
                if done.contains(&key.as_str()) {
                    continue;
                }
                if key == "version" {
                    *versions.entry(version(value)).or_default() += 1;
                } else if key == "subscriber_list" {
                    if options.subscribers {
                        add_peers(&mut peers, value);
                    }
                } else if let Some(slot) = sums.iter_mut().find(|(k, _)| k == key) {
                    if let Some(n) = number(value) {
                        slot.1 = Some(slot.1.unwrap_or(0).saturating_add(n));
                    }
                } else {
                    continue;
                }
                done.push(key.as_str());
            }
        }
        for (key, sum) in sums {
            let Some(sum) = sum else { continue };
            if target.glob && per_open(key) {
                continue;
            }
            let help = HELP
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, h)| *h)
                .unwrap_or_default();
            let kind = if is_gauge(key) {
                Kind::Gauge
            } else {
                Kind::Counter
            };
            families.add(&metric_name(key), kind, help, path_label(), sum.to_string());
        }
        for (version, count) in versions {
            let mut labels = path_label();
            labels.push(("version", version));
            families.add(
                "notif_publisher",
                Kind::Info,
                "The libnotif version of the publishers at path (the value: how many).",
                labels,
                count.to_string(),
            );
        }
        for ((pid, uid), peer) in peers {
            let labels = || {
                vec![
                    ("path", path.to_string()),
                    ("pid", pid.clone()),
                    ("uid", uid.clone()),
                ]
            };
            let per =
                "per subscriber process (pid and uid empty where the publisher does not show them)";
            families.add(
                "notif_subscriber_connections",
                Kind::Gauge,
                &format!("Connections now, {per}."),
                labels(),
                peer.connections.to_string(),
            );
            families.add(
                "notif_subscriber_queued_bytes",
                Kind::Gauge,
                &format!("Bytes queued for the subscriber now, {per}."),
                labels(),
                peer.queued_bytes.to_string(),
            );
            families.add(
                "notif_subscriber_delivered",
                Kind::Counter,
                &format!("Notifications delivered on the current connections, {per}."),
                labels(),
                peer.delivered.to_string(),
            );
            families.add(
                "notif_subscriber_dropped_slow",
                Kind::Counter,
                &format!(
                    "Notifications dropped because the subscriber was too slow, on the current connections, {per}."
                ),
                labels(),
                peer.dropped_slow.to_string(),
            );
            if let Some(at) = peer.connected_at {
                families.add(
                    "notif_subscriber_connect_time_seconds",
                    Kind::Gauge,
                    &format!("When the oldest current connection was made (unix time), {per}."),
                    labels(),
                    format!("{at}"),
                );
            }
        }
    }
    families
}

/// Writes the metrics of `targets` in `flavor`.
pub fn write(
    targets: &[Target],
    options: Options,
    flavor: Flavor,
    out: &mut impl Write,
) -> io::Result<()> {
    for family in collect(targets, options).0 {
        let (family_name, sample_name, kind) = match (flavor, family.kind) {
            (Flavor::OpenMetrics, Kind::Counter) => (
                family.name.clone(),
                format!("{}_total", family.name),
                "counter",
            ),
            (Flavor::OpenMetrics, Kind::Info) => {
                (family.name.clone(), format!("{}_info", family.name), "info")
            }
            (Flavor::Prometheus, Kind::Counter) => {
                let name = format!("{}_total", family.name);
                (name.clone(), name, "counter")
            }
            (Flavor::Prometheus, Kind::Info) => {
                let name = format!("{}_info", family.name);
                (name.clone(), name, "gauge")
            }
            (_, Kind::Gauge) => (family.name.clone(), family.name.clone(), "gauge"),
        };
        writeln!(out, "# HELP {family_name} {}", family.help)?;
        writeln!(out, "# TYPE {family_name} {kind}")?;
        for (labels, value) in &family.samples {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            writeln!(out, "{sample_name}{{{}}} {value}", labels.join(","))?;
        }
    }
    if flavor == Flavor::OpenMetrics {
        writeln!(out, "# EOF")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One plain path per answer (None: it did not answer), with the
    /// per-subscriber series.
    fn text(answers: &[(&str, Option<&[u8]>)], flavor: Flavor) -> String {
        let targets: Vec<Target> = answers
            .iter()
            .map(|&(label, stats)| Target {
                label,
                answers: stats.into_iter().collect(),
                unanswered: usize::from(stats.is_none()),
                ..Target::default()
            })
            .collect();
        render(&targets, Options { subscribers: true }, flavor)
    }

    fn render(targets: &[Target], options: Options, flavor: Flavor) -> String {
        let mut out = Vec::new();
        write(targets, options, flavor, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// Every sample line, parsed: (name, labels, value).
    fn sample_lines(out: &str) -> Vec<(String, String, String)> {
        out.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (name, rest) = l.split_once('{').expect("labels");
                let (labels, value) = rest.rsplit_once("} ").expect("a value");
                (name.to_string(), labels.to_string(), value.to_string())
            })
            .collect()
    }

    const STATS: &[u8] = br#"{"subscribers":2,"accepted":5,"delivered":7,"bytes_sent":900,"version":"0.1.0","future_flag":true}"#;

    #[test]
    fn openmetrics_counters_gauges_info_and_eof() {
        let out = text(
            &[("/run/a.sock", Some(STATS)), ("/run/gone.sock", None)],
            Flavor::OpenMetrics,
        );
        for line in [
            "# TYPE notif_up gauge",
            "notif_up{path=\"/run/a.sock\"} 1",
            "notif_up{path=\"/run/gone.sock\"} 0",
            "# TYPE notif_subscribers gauge",
            "notif_subscribers{path=\"/run/a.sock\"} 2",
            "# TYPE notif_delivered counter",
            "notif_delivered_total{path=\"/run/a.sock\"} 7",
            "notif_bytes_sent_total{path=\"/run/a.sock\"} 900",
            "# TYPE notif_publisher info",
            "notif_publisher_info{path=\"/run/a.sock\",version=\"0.1.0\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        assert!(out.ends_with("\n# EOF\n"), "{out}");
        assert!(!out.contains("future_flag"), "{out}");
        // Every family has its HELP line.
        let types = out.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = out.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps, "{out}");
    }

    #[test]
    fn prometheus_names_samples_in_type_lines_and_has_no_eof() {
        let out = text(&[("/run/a.sock", Some(STATS))], Flavor::Prometheus);
        assert!(out.contains("# TYPE notif_delivered_total counter\nnotif_delivered_total{path=\"/run/a.sock\"} 7\n"), "{out}");
        assert!(out.contains("# TYPE notif_publisher_info gauge\n"), "{out}");
        assert!(!out.contains("# EOF"), "{out}");
        assert!(!out.contains(" info\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped_and_repeated_paths_written_once() {
        let path = "/tmp/a \"b\"\\c\nd.sock";
        let out = text(
            &[(path, Some(STATS)), (path, Some(STATS))],
            Flavor::OpenMetrics,
        );
        assert!(
            out.contains(r#"notif_up{path="/tmp/a \"b\"\\c\nd.sock"} 1"#),
            "{out}"
        );
        assert_eq!(out.matches("notif_up{").count(), 1, "{out}");
    }

    #[test]
    fn subscriber_list_becomes_per_peer_series() {
        let stats = br#"{"subscribers":3,"subscriber_list":[
            {"pid":10,"uid":0,"gid":0,"connected_at":1700000000.5,"filter":null,"markers":true,"heartbeat_s":null,"queued_bytes":100,"delivered":4,"dropped_slow":1},
            {"pid":10,"uid":0,"gid":0,"connected_at":1700000100,"filter":{"event_types":["a"]},"markers":false,"heartbeat_s":5,"queued_bytes":20,"delivered":6,"dropped_slow":2},
            {"pid":null,"uid":null,"gid":null,"connected_at":1700000200,"filter":null,"markers":false,"heartbeat_s":null,"queued_bytes":0,"delivered":9,"dropped_slow":0}
        ]}"#;
        let out = text(&[("/s", Some(stats))], Flavor::OpenMetrics);
        for line in [
            "notif_subscriber_connections{path=\"/s\",pid=\"10\",uid=\"0\"} 2",
            "notif_subscriber_queued_bytes{path=\"/s\",pid=\"10\",uid=\"0\"} 120",
            "notif_subscriber_delivered_total{path=\"/s\",pid=\"10\",uid=\"0\"} 10",
            "notif_subscriber_dropped_slow_total{path=\"/s\",pid=\"10\",uid=\"0\"} 3",
            "notif_subscriber_connect_time_seconds{path=\"/s\",pid=\"10\",uid=\"0\"} 1700000000.5",
            "notif_subscriber_connections{path=\"/s\",pid=\"\",uid=\"\"} 1",
            "notif_subscriber_delivered_total{path=\"/s\",pid=\"\",uid=\"\"} 9",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        assert!(!out.contains("notif_subscriber_list"), "{out}");
    }

    #[test]
    fn a_strange_answer_cannot_break_the_format() {
        let stats =
            br#"{"delivered":1,"delivered":2,"new\nline":3,"new line":4,"version":"1\"\n"}"#;
        let out = text(&[("/s", Some(stats))], Flavor::OpenMetrics);
        assert_eq!(out.matches("notif_delivered_total{").count(), 1, "{out}");
        assert!(
            out.contains("notif_delivered_total{path=\"/s\"} 1\n"),
            "{out}"
        );
        // Keys this tool does not know are the publisher's text: no series.
        assert!(!out.contains("new_line"), "{out}");
        assert!(!out.contains("} 3\n") && !out.contains("} 4\n"), "{out}");
        assert!(out.contains(r#"version="invalid""#), "{out}");
        for line in out.lines() {
            assert!(
                line.starts_with("# HELP notif_")
                    || line.starts_with("# TYPE notif_")
                    || line.starts_with("notif_")
                    || line == "# EOF",
                "{line:?} in\n{out}"
            );
        }
    }

    #[test]
    fn replay_fields_are_gauges_but_replayed_is_a_counter() {
        let stats = br#"{"replayed":12,"replay_bytes":4096,"replay_messages":40,"replay_oldest":60,"next_seq":100}"#;
        let out = text(&[("/s", Some(stats))], Flavor::OpenMetrics);
        for line in [
            "# TYPE notif_replayed counter",
            "notif_replayed_total{path=\"/s\"} 12",
            "# TYPE notif_replay_bytes gauge",
            "notif_replay_bytes{path=\"/s\"} 4096",
            "# TYPE notif_replay_messages gauge",
            "notif_replay_messages{path=\"/s\"} 40",
            "# TYPE notif_replay_oldest gauge",
            "notif_replay_oldest{path=\"/s\"} 60",
            "# TYPE notif_next_seq gauge",
            "notif_next_seq{path=\"/s\"} 100",
            "# HELP notif_replay_bytes Bytes of memory the replay ring holds now.",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        let out = text(&[("/s", Some(stats))], Flavor::Prometheus);
        assert!(
            out.contains(
                "# TYPE notif_replayed_total counter\nnotif_replayed_total{path=\"/s\"} 12\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("# TYPE notif_next_seq gauge\nnotif_next_seq{path=\"/s\"} 100\n"),
            "{out}"
        );
    }

    #[test]
    fn write_counters_are_counters_with_their_own_help() {
        let stats = br#"{"writes":30,"wakeups":7,"written_through":5}"#;
        for (flavor, family) in [(Flavor::OpenMetrics, ""), (Flavor::Prometheus, "_total")] {
            let out = text(&[("/s", Some(stats))], flavor);
            for (key, value) in [("writes", 30), ("wakeups", 7), ("written_through", 5)] {
                let name = format!("notif_{key}{family}");
                let (_, help) = HELP.iter().find(|(k, _)| *k == key).expect("a help text");
                for line in [
                    format!("# HELP {name} {help}"),
                    format!("# TYPE {name} counter"),
                    format!("notif_{key}_total{{path=\"/s\"}} {value}"),
                ] {
                    assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
                }
            }
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b"12"), Some(12));
        assert_eq!(number(b"1.5e3"), None);
        assert_eq!(number(b"-1"), None);
        assert_eq!(number(b"\"12\""), None);
        assert_eq!(number(b"true"), None);
        assert_eq!(number(b"99999999999999999999999"), None);
    }

    const WORKER: &[u8] = br#"{"subscribers":1,"delivered":10,"next_seq":40,"replay_oldest":3,"version":"0.1.0","subscriber_list":[{"pid":77,"uid":0,"queued_bytes":0,"delivered":10,"dropped_slow":0}]}"#;

    #[test]
    fn a_glob_is_one_set_of_series_whatever_its_workers() {
        let glob = "/run/nova/notifications-*.sock";
        let one = Target {
            label: glob,
            glob: true,
            answers: vec![WORKER],
            ..Target::default()
        };
        let three = Target {
            label: glob,
            glob: true,
            answers: vec![WORKER, WORKER, WORKER],
            stale: 2,
            unanswered: 0,
        };
        let a = render(&[one], Options::default(), Flavor::Prometheus);
        let b = render(&[three], Options::default(), Flavor::Prometheus);
        let series = |out: &str| -> Vec<(String, String)> {
            sample_lines(out)
                .into_iter()
                .map(|(n, l, _)| (n, l))
                .collect()
        };
        assert_eq!(series(&a), series(&b), "{a}\n{b}");
        for line in [
            "notif_up{path=\"/run/nova/notifications-*.sock\"} 1",
            "notif_publishers{path=\"/run/nova/notifications-*.sock\"} 3",
            "notif_stale_sockets{path=\"/run/nova/notifications-*.sock\"} 2",
            "notif_unanswered_sockets{path=\"/run/nova/notifications-*.sock\"} 0",
            "notif_delivered_total{path=\"/run/nova/notifications-*.sock\"} 30",
            "notif_subscribers{path=\"/run/nova/notifications-*.sock\"} 3",
            "notif_publisher_info{path=\"/run/nova/notifications-*.sock\",version=\"0.1.0\"} 3",
        ] {
            assert!(b.lines().any(|l| l == line), "no {line:?} in\n{b}");
        }
        // Per-open numbering means nothing added up; no pid, no uid.
        assert!(
            !b.contains("next_seq") && !b.contains("replay_oldest"),
            "{b}"
        );
        assert!(!b.contains("pid=") && !b.contains("uid="), "{b}");
        // With --subscribers: the subscriber's pid and uid.
        let with = render(
            &[Target {
                label: glob,
                glob: true,
                answers: vec![WORKER, WORKER],
                ..Target::default()
            }],
            Options { subscribers: true },
            Flavor::Prometheus,
        );
        assert!(with.contains("notif_subscriber_connections{path=\"/run/nova/notifications-*.sock\",pid=\"77\",uid=\"0\"} 2\n"), "{with}");
        // None answered: down, and the series of the counters are gone.
        let down = render(
            &[Target {
                label: glob,
                glob: true,
                stale: 4,
                ..Target::default()
            }],
            Options::default(),
            Flavor::Prometheus,
        );
        assert!(
            down.contains("notif_up{path=\"/run/nova/notifications-*.sock\"} 0\n"),
            "{down}"
        );
        assert!(
            down.contains("notif_stale_sockets{path=\"/run/nova/notifications-*.sock\"} 4\n"),
            "{down}"
        );
    }

    #[test]
    fn a_hostile_answer_adds_no_series_and_no_label() {
        // Keys named like the tool's own series, values that are not
        // counters, a version that would close the label.
        let hostile = br#"{"up":0,"publishers":9,"stale_sockets":9,"unanswered_sockets":9,"publisher_info":1,"subscriber_connections":5,"delivered":-3,"accepted":1.5,"emitted":"7","subscribers":1e9,"bytes_sent":[1],"version":"1\"} 1\nnotif_up{path=\"/x\"} 0\n#","subscriber_list":[{"pid":"1\"","uid":{"x":1},"queued_bytes":-1,"connected_at":-5}]}"#;
        let glob = "/run/x-*.sock";
        let target = |answers| Target {
            label: glob,
            glob: true,
            answers,
            ..Target::default()
        };
        for options in [Options::default(), Options { subscribers: true }] {
            for flavor in [Flavor::Prometheus, Flavor::OpenMetrics] {
                let out = render(&[target(vec![hostile, WORKER])], options, flavor);
                let samples = sample_lines(&out);
                let ups: Vec<_> = samples.iter().filter(|(n, _, _)| n == "notif_up").collect();
                assert_eq!(ups.len(), 1, "{out}");
                assert_eq!(ups[0].2, "1", "{out}");
                for (name, labels, value) in &samples {
                    assert!(
                        labels.starts_with("path=\"/run/x-*.sock\""),
                        "{name}{{{labels}}} in\n{out}"
                    );
                    assert!(value.parse::<f64>().is_ok(), "{value} in\n{out}");
                }
                let value = |name: &str| {
                    samples
                        .iter()
                        .find(|(n, _, _)| n == name)
                        .map(|(_, _, v)| v.clone())
                };
                assert_eq!(value("notif_publishers").as_deref(), Some("2"), "{out}");
                assert_eq!(value("notif_stale_sockets").as_deref(), Some("0"), "{out}");
                assert_eq!(
                    value("notif_delivered_total").as_deref(),
                    Some("10"),
                    "{out}"
                );
                assert_eq!(value("notif_subscribers").as_deref(), Some("1"), "{out}");
                assert_eq!(value("notif_accepted_total"), None, "{out}");
                assert_eq!(value("notif_emitted_total"), None, "{out}");
                assert_eq!(value("notif_bytes_sent_total"), None, "{out}");
                assert!(out.contains("version=\"invalid\"} 1\n"), "{out}");
                // Each line is a comment, a sample of ours, or # EOF.
                for line in out.lines() {
                    assert!(
                        line.starts_with("# HELP notif_")
                            || line.starts_with("# TYPE notif_")
                            || line.starts_with("notif_")
                            || line == "# EOF",
                        "{line:?} in\n{out}"
                    );
                }
                if options.subscribers {
                    assert!(out.contains("pid=\"\",uid=\"\""), "{out}");
                }
            }
        }
    }
}
