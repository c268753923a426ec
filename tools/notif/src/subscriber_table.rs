//! The subscribers of each path, as `notif stats` shows them under the
//! counters when the publisher's answer has a `subscriber_list`.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

const COLUMNS: [&str; 10] = [
    "pid",
    "uid",
    "gid",
    "connected",
    "queued_bytes",
    "delivered",
    "dropped_slow",
    "markers",
    "heartbeat_s",
    "filter",
];

/// How long ago `at` (unix seconds) was: "42s", "5m07s", "3h02m", "2d04h".
fn age(at: f64, now: f64) -> String {
    let s = (now - at).max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

fn row(entry: &serde_json::Value, now: f64) -> Vec<String> {
    COLUMNS
        .iter()
        .map(|&column| {
            let value = &entry[column];
            match (column, value) {
                ("connected", _) => entry["connected_at"]
                    .as_f64()
                    .map_or_else(|| "-".to_string(), |at| age(at, now)),
                (_, serde_json::Value::Null) => "-".to_string(),
                (_, serde_json::Value::Bool(b)) => if *b { "yes" } else { "no" }.to_string(),
                (_, serde_json::Value::String(s)) => s.clone(),
                (_, other) => other.to_string(),
            }
        })
        .collect()
}

/// Writes one table per path whose answer lists subscribers (nothing for the
/// others, and nothing for older publishers that send no list).
pub fn write(answers: &[(&str, Vec<u8>)], out: &mut impl Write) -> io::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for (path, stats) in answers {
        let Ok(serde_json::Value::Object(stats)) = serde_json::from_slice(stats) else {
            continue;
        };
        let Some(serde_json::Value::Array(list)) = stats.get("subscriber_list") else {
            continue;
        };
        writeln!(out)?;
        writeln!(out, "subscribers of {path}: {}", list.len())?;
        if list.is_empty() {
            continue;
        }
        let rows: Vec<Vec<String>> = list.iter().map(|e| row(e, now)).collect();
        let widths: Vec<usize> = (0..COLUMNS.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([COLUMNS[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[&str]| -> String {
            let mut text = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    text.push_str(cell); // the filter: last, not padded
                } else {
                    text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            text.trim_end().to_string()
        };
        writeln!(out, "{}", line(&COLUMNS))?;
        for r in &rows {
            let cells: Vec<&str> = r.iter().map(String::as_str).collect();
            writeln!(out, "{}", line(&cells))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(age(100.0, 142.9), "42s");
        assert_eq!(age(0.0, 307.0), "5m07s");
        assert_eq!(age(0.0, 3.0 * 3600.0 + 125.0), "3h02m");
        assert_eq!(age(0.0, 2.0 * 86400.0 + 4.0 * 3600.0), "2d04h");
        assert_eq!(age(10.0, 5.0), "0s");
    }

    #[test]
    fn one_table_per_listing_path() {
        let listed = br#"{"subscribers":2,"subscriber_list":[
            {"pid":10,"uid":0,"gid":0,"connected_at":0,"filter":{"event_types":["a.*"]},"markers":true,"heartbeat_s":5,"queued_bytes":100,"delivered":4,"dropped_slow":1},
            {"pid":null,"uid":null,"gid":null,"connected_at":0,"filter":null,"markers":false,"heartbeat_s":null,"queued_bytes":0,"delivered":9,"dropped_slow":0}]}"#;
        let answers = vec![
            ("/a", listed.to_vec()),
            ("/old", br#"{"subscribers":1}"#.to_vec()),
        ];
        let mut out = Vec::new();
        write(&answers, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "subscribers of /a: 2", "{text}");
        let header: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(header, COLUMNS, "{text}");
        let first: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(first[..3], ["10", "0", "0"], "{text}");
        assert_eq!(first[4..9], ["100", "4", "1", "yes", "5"], "{text}");
        assert_eq!(first[9], r#"{"event_types":["a.*"]}"#, "{text}");
        let second: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(second[..3], ["-", "-", "-"], "{text}");
        assert!(!text.contains("/old"), "{text}");
    }
}
