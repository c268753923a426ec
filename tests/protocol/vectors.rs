//! The protocol vectors (tests/protocol-vectors/, format in its README) run
//! against the server, over a real socket, and against the Rust client's
//! readers of the protocol (request, control lines, filter, glob, cursor).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use notif::subscription::{
    glob_matches, parse_control_line, ControlLine, Cursor, Filter, Reason, Request,
    MAX_REQUEST_LINE,
};
use notif::Publisher;
use serde_json::{json, Value};

use crate::common::TempDir;

const READ_TIMEOUT: Duration = Duration::from_secs(20);

fn vectors(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/protocol-vectors")
        .join(file);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    match serde_json::from_slice(&text) {
        Ok(Value::Array(list)) if !list.is_empty() => list,
        other => panic!("{}: not a non-empty JSON array: {other:?}", path.display()),
    }
}

fn text<'a>(vector: &'a Value, key: &str) -> &'a str {
    vector[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key:?} is not a string in {vector}"))
}

/// A raw connection to the publisher: writes bytes, reads lines.
struct Raw {
    reader: BufReader<UnixStream>,
}

impl Raw {
    fn connect(path: &Path) -> Raw {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
        Raw {
            reader: BufReader::new(stream),
        }
    }

    /// Writes `bytes`; a publisher that refuses a long line may close before
    /// reading it all, so a failed write is not an error here.
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.reader.get_mut().write_all(bytes);
    }

    /// The next line without its newline; None at the end of the stream
    /// (or a reset: a publisher that closed on unread input).
    fn line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                assert_eq!(line.pop(), Some(b'\n'), "a line cut short: {line:?}");
                Some(line)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("no line within {READ_TIMEOUT:?}: {e}"),
        }
    }

    /// Writes `request` and reads the acknowledgement.
    fn subscribe(path: &Path, request: &Value) -> Raw {
        let mut raw = Raw::connect(path);
        raw.send(format!("{request}\n").as_bytes());
        let ack = json_of(&raw.line().expect("an acknowledgement"));
        assert_eq!(ack["notif"]["subscribed"], true, "{request}: {ack}");
        raw
    }
}

fn json_of(line: &[u8]) -> Value {
    serde_json::from_slice(line)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)))
}

/// The request line of a vector, `pad_to` applied, without its newline.
fn request_line(vector: &Value) -> Vec<u8> {
    let mut line = text(vector, "line").as_bytes().to_vec();
    if let Some(pad_to) = vector.get("pad_to").and_then(Value::as_u64) {
        let pad_to = pad_to as usize;
        assert!(pad_to > line.len() + 1, "{vector}");
        let last = line.pop().expect("a line to pad");
        line.resize(pad_to - 2, b' ');
        line.push(last);
        assert_eq!(line.len() + 1, pad_to);
    }
    line
}

/// What the server answers to a request line: the class of its first line
/// (`{"ack":{"cursor":B}}`, `{"error":{"reason":R}}` or `{"stats":true}`).
fn server_answer(path: &Path, line: &[u8]) -> Value {
    let mut raw = Raw::connect(path);
    let mut bytes = line.to_vec();
    bytes.push(b'\n');
    raw.send(&bytes);
    let first = raw.line().expect("an answer before the end of the stream");
    let answer = json_of(&first);
    let body = &answer["notif"];
    if body["subscribed"] == Value::Bool(true) {
        json!({"ack": {"cursor": body.get("epoch").is_some()}})
    } else if body.get("error").is_some() {
        assert_eq!(raw.line(), None, "the connection is closed after an error");
        json!({"error": {"reason": body["reason"]}})
    } else if body["stats"].is_object() {
        json!({"stats": true})
    } else {
        panic!("unexpected answer {answer}")
    }
}

/// What the Rust client's request reader (shared with the server) makes of it.
fn client_answer(line: &[u8]) -> Value {
    if line.len() + 1 > MAX_REQUEST_LINE {
        return json!({"error": {"reason": "bad_request"}});
    }
    match Request::parse(line) {
        Ok(Request::Stats) => json!({"stats": true}),
        Ok(Request::Subscribe { cursors, .. }) => json!({"ack": {"cursor": cursors}}),
        Err(_) => json!({"error": {"reason": "bad_request"}}),
    }
}

#[test]
fn requests() {
    let dir = TempDir::new("requests");
    let publisher = Publisher::open(dir.socket()).unwrap();
    for vector in vectors("requests.json") {
        let line = request_line(&vector);
        let name = text(&vector, "name");
        let expect = &vector["expect"];
        assert_eq!(&client_answer(&line), expect, "client: {name}");
        assert_eq!(
            &server_answer(&dir.socket(), &line),
            expect,
            "server: {name}"
        );
    }
    publisher.close();
}

/// A control line's class and fields as the Rust client reads it.
fn classify(line: &[u8]) -> (&'static str, Value) {
    let Some(control) = parse_control_line(line) else {
        return ("notification", json!({}));
    };
    match control {
        ControlLine::Subscribed { epoch } => {
            ("ack", json!({"epoch": epoch.map(|e| format!("{e:016x}"))}))
        }
        ControlLine::Seq(seq) => ("seq", json!({ "seq": seq })),
        ControlLine::Dropped(count) => ("dropped", json!({ "count": count })),
        ControlLine::DroppedUnknown => ("dropped", json!({"count": "unknown"})),
        ControlLine::Heartbeat(time) => ("heartbeat", json!({ "time": time })),
        ControlLine::Error { message, reason } => {
            // A reason the client does not know is treated as bad_request.
            let acted_on = match reason {
                Reason::Other(_) => Reason::BadRequest,
                known => known,
            };
            (
                "error",
                json!({"reason": acted_on.as_str(), "message": message}),
            )
        }
        ControlLine::Stats(stats) => ("stats", json!({ "stats": stats })),
        ControlLine::Unknown => ("unknown_control", json!({})),
    }
}

/// Numbers compare by value (a heartbeat of 1765158000 is 1765158000.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_u64(), y.as_u64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}

#[test]
fn control_lines() {
    let dir = TempDir::new("control");
    let publisher = Publisher::open(dir.socket()).unwrap();
    // emit looks at a line only while someone is connected.
    let mut reader = Raw::subscribe(&dir.socket(), &json!({}));
    let mut accepted = Vec::new();
    for vector in vectors("control_lines.json") {
        let line = text(&vector, "line").as_bytes();
        let (class, fields) = classify(line);
        assert_eq!(class, text(&vector, "class"), "client: {vector}");
        assert!(
            same(&fields, &vector["fields"]),
            "client: {vector}: {fields}"
        );
        // The server: emit refuses every line a client could take for a
        // control line, and sends the others as they are.
        let emitted = publisher.emit(line);
        match text(&vector, "emit") {
            "accepted" => {
                assert_eq!(emitted.as_ref().ok(), Some(&1), "server: {vector}");
                accepted.push(line.to_vec());
            }
            "refused" => assert_eq!(
                emitted.map_err(|e| e.errno()),
                Err(libc::EINVAL),
                "server: {vector}"
            ),
            other => panic!("emit is accepted or refused, not {other:?}"),
        }
    }
    for line in accepted {
        let received = reader.line().expect("an accepted line");
        assert_eq!(json_of(&received), json_of(&line));
        assert_eq!(classify(&received).0, "notification");
    }
    publisher.close();
}

/// One subscription of the filter and glob vectors: its filter, and the
/// lines to emit with whether each must reach it.
struct Case {
    name: String,
    subscribe: Value,
    lines: Vec<(String, bool)>,
}

fn filter_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for vector in vectors("filters.json") {
        let lines = vector["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .map(|case| (text(case, "line").to_string(), case["match"] == true))
            .collect();
        cases.push(Case {
            name: text(&vector, "name").to_string(),
            subscribe: vector["subscribe"].clone(),
            lines,
        });
    }
    for vector in vectors("globs.json") {
        let (pattern, subject) = (text(&vector, "pattern"), text(&vector, "text"));
        let wanted = vector["match"] == true;
        cases.push(Case {
            name: format!("glob {vector}"),
            subscribe: json!({"event_types": [pattern]}),
            lines: vec![(json!({ "event_type": subject }).to_string(), wanted)],
        });
        cases.push(Case {
            name: format!("glob on publishers {vector}"),
            subscribe: json!({"publishers": [pattern]}),
            lines: vec![(json!({ "publisher_id": subject }).to_string(), wanted)],
        });
    }
    cases
}

fn client_filter(subscribe: &Value) -> Filter {
    let request = json!({ "subscribe": subscribe }).to_string();
    match Request::parse(request.as_bytes()) {
        Ok(Request::Subscribe { filter, .. }) => filter,
        other => panic!("{request}: {other:?}"),
    }
}

#[test]
fn globs() {
    for vector in vectors("globs.json") {
        let (pattern, subject) = (text(&vector, "pattern"), text(&vector, "text"));
        assert_eq!(
            glob_matches(pattern, subject),
            vector["match"] == true,
            "client: {vector}"
        );
    }
}

/// Every filter and glob vector against the client's filter, then against
/// the server: one subscriber per case, all connected before the lines are
/// emitted; each asks for cursors, so the numbers it is told say which lines
/// it got (the n-th line emitted is number n).
#[test]
fn filters_and_globs() {
    let cases = filter_cases();
    for case in &cases {
        let filter = client_filter(&case.subscribe);
        for (line, wanted) in &case.lines {
            assert_eq!(
                filter.matches_line(line.as_bytes()),
                *wanted,
                "client: {}: {line}",
                case.name
            );
        }
    }
    let dir = TempDir::new("filters");
    let publisher = Publisher::open(dir.socket()).unwrap();
    let mut subscribers: Vec<Raw> = cases
        .iter()
        .map(|case| {
            Raw::subscribe(
                &dir.socket(),
                &json!({"subscribe": case.subscribe, "cursor": true}),
            )
        })
        .collect();
    let mut numbers = Vec::new(); // per case, the number of each of its lines
    let mut next = 0u64;
    for case in &cases {
        let mut mine = Vec::new();
        for (line, _) in &case.lines {
            assert_eq!(publisher.emit(line.as_bytes()).unwrap(), cases.len());
            mine.push(next);
            next += 1;
        }
        numbers.push(mine);
    }
    publisher.close(); // flushes, then closes every connection
    for ((case, subscriber), mine) in cases.iter().zip(&mut subscribers).zip(&numbers) {
        let mut received = Vec::new();
        let mut at = None;
        while let Some(line) = subscriber.line() {
            match parse_control_line(&line) {
                Some(ControlLine::Seq(seq)) => at = Some(seq),
                Some(other) => panic!("{}: unexpected {other:?}", case.name),
                None => {
                    let seq = at.expect("a seq line before the first notification");
                    received.push((seq, line));
                    at = Some(seq + 1);
                }
            }
        }
        for ((line, wanted), number) in case.lines.iter().zip(mine) {
            let got = received.iter().find(|(seq, _)| seq == number);
            assert_eq!(got.is_some(), *wanted, "server: {}: {line}", case.name);
            if let Some((_, got)) = got {
                assert_eq!(json_of(got), json_of(line.as_bytes()));
            }
        }
    }
}

#[test]
fn cursors() {
    let dir = TempDir::new("cursors");
    let publisher = Publisher::open(dir.socket()).unwrap();
    for vector in vectors("cursors.json") {
        let cursor = text(&vector, "text");
        let parsed = &vector["parsed"];
        let client = match cursor.parse::<Cursor>() {
            Ok(c) => json!({"epoch": format!("{:016x}", c.epoch), "seq": c.seq.to_string()}),
            Err(_) => json!("invalid"),
        };
        assert_eq!(&client, parsed, "client: {cursor:?}");
        if let Ok(c) = cursor.parse::<Cursor>() {
            assert_eq!(c.to_string().parse::<Cursor>(), Ok(c), "round trip");
        }
        let request = json!({ "after": cursor }).to_string();
        let expected = if parsed == "invalid" {
            json!({"error": {"reason": "bad_request"}})
        } else {
            json!({"ack": {"cursor": true}})
        };
        assert_eq!(
            server_answer(&dir.socket(), request.as_bytes()),
            expected,
            "server: {cursor:?}"
        );
    }
    publisher.close();
}
