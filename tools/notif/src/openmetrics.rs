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
//! Every sample has a `path` label (the socket path as given). `notif_up` is 1
//! for a path that answered and 0 for one that did not, so a publisher that
//! went away shows up as a value rather than as missing series. When the answer
//! has a `subscriber_list`, per-subscriber series are labelled by `pid` and
//! `uid` (empty when the publisher does not show them to us); connections
//! with the same labels are added up, so the label sets stay unique.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    OpenMetrics,
    Prometheus,
}

/// One path: the text of its stats object, or None when it did not answer.
pub type Answer<'a> = (&'a str, Option<&'a [u8]>);

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

/// A metric name from a stats key: [a-zA-Z0-9_] only (keys are snake_case;
/// anything else is replaced, so a strange key cannot break the format).
fn metric_name(key: &str) -> String {
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("notif_{name}")
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

/// A number member as a sample value: an integer as sent, any other JSON
/// number in Rust's shortest float spelling; None for anything else.
fn number(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(text.to_string());
    }
    let v: f64 = serde_json::from_slice::<serde_json::Value>(value)
        .ok()?
        .as_f64()?;
    v.is_finite().then(|| format!("{v}"))
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

fn peers(list: &[u8]) -> BTreeMap<(String, String), Peer> {
    let mut peers: BTreeMap<(String, String), Peer> = BTreeMap::new();
    let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(list) else {
        return peers;
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
        peer.queued_bytes += count("queued_bytes");
        peer.delivered += count("delivered");
        peer.dropped_slow += count("dropped_slow");
        if let Some(at) = entry["connected_at"].as_f64().filter(|t| t.is_finite()) {
            peer.connected_at = Some(peer.connected_at.map_or(at, |old: f64| old.min(at)));
        }
    }
    peers
}

fn collect(answers: &[Answer]) -> Families {
    let mut families = Families::default();
    let mut seen: Vec<&str> = Vec::new();
    for &(path, stats) in answers {
        // The same path twice would repeat a label set: the formats forbid it.
        if seen.contains(&path) {
            continue;
        }
        seen.push(path);
        let path_label = || vec![("path", path.to_string())];
        families.add(
            "notif_up",
            Kind::Gauge,
            "1 if the publisher at path answered the stats request, 0 if not.",
            path_label(),
            if stats.is_some() { "1" } else { "0" }.to_string(),
        );
        let Some(members) = stats.and_then(json::members) else {
            continue;
        };
        let mut keys_seen: Vec<String> = Vec::new();
        for (key, value) in &members {
            // A repeated key (or two that map to one name) would repeat a sample.
            let name = metric_name(key);
            if key == "subscriber_list" || keys_seen.contains(&name) {
                continue;
            }
            keys_seen.push(name.clone());
            if key == "version" {
                if let Ok(version) = serde_json::from_slice::<String>(value) {
                    let mut labels = path_label();
                    labels.push(("version", version));
                    families.add(
                        "notif_publisher",
                        Kind::Info,
                        "The libnotif version of the publisher at path.",
                        labels,
                        "1".to_string(),
                    );
                }
                continue;
            }
            let Some(sample) = number(value) else {
                continue;
            };
            // Unknown keys are the publisher's text: the sanitised name only.
            let help = HELP.iter().find(|(k, _)| k == key).map_or_else(
                || format!("The publisher's {} value.", &name["notif_".len()..]),
                |(_, h)| h.to_string(),
            );
            let kind = if is_gauge(key) {
                Kind::Gauge
            } else {
                Kind::Counter
            };
            families.add(&name, kind, &help, path_label(), sample);
        }
        let Some((_, list)) = members.iter().find(|(k, _)| k == "subscriber_list") else {
            continue;
        };
        for ((pid, uid), peer) in peers(list) {
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

/// Writes the metrics of `answers` in `flavor`.
pub fn write(answers: &[Answer], flavor: Flavor, out: &mut impl Write) -> io::Result<()> {
    for family in collect(answers).0 {
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

    fn text(answers: &[Answer], flavor: Flavor) -> String {
        let mut out = Vec::new();
        write(answers, flavor, &mut out).unwrap();
        String::from_utf8(out).unwrap()
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
            out.contains("notif_new_line_total{path=\"/s\"} 3\n"),
            "{out}"
        );
        assert!(!out.contains("} 4\n"), "{out}");
        assert!(out.contains(r#"version="1\"\n""#), "{out}");
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
        assert_eq!(number(b"12"), Some("12".into()));
        assert_eq!(number(b"1.5e3"), Some("1500".into()));
        assert_eq!(number(b"\"12\""), None);
        assert_eq!(number(b"true"), None);
        assert_eq!(metric_name("a-b.c"), "notif_a_b_c");
    }
}
