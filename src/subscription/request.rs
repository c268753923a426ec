//! The request line a subscriber may write: its keys, their types and
//! bounds, and the line the client writes for a given request.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{Cursor, Filter};

/// Longest request line accepted, newline included.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;
/// Most patterns in one list of a filter (`event_types`, `priorities` or
/// `publishers`): matching cost per notification must stay small whatever a
/// peer asks for.
pub const MAX_PATTERNS: usize = 64;
/// Longest pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 256;
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);

/// What a subscriber asked for in its request line.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Subscribe {
        filter: Filter,
        markers: bool,
        heartbeat: Option<Duration>,
        /// Whether it wants to be told its position (epoch and `seq` lines).
        cursors: bool,
        /// Where its stream starts.
        start: Start,
    },
    Stats,
}

/// Where a subscriber's stream starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Start {
    /// With what is emitted from now on.
    #[default]
    Live,
    /// Right after the notification this cursor names (what the publisher
    /// still holds of what followed it, then live).
    After(Cursor),
    /// With everything the publisher's replay ring holds, then live.
    Replay,
}

impl Request {
    /// Parses a request line (without its newline). The error is a sentence
    /// for the subscriber's author.
    pub fn parse(line: &[u8]) -> Result<Request, String> {
        let value: Value = serde_json::from_slice(line)
            .map_err(|e| format!("the request is not valid JSON: {e}"))?;
        let Value::Object(request) = value else {
            return Err("the request must be a JSON object".into());
        };
        if let Some(stats) = request.get("stats") {
            if stats != &Value::Bool(true) || request.len() != 1 {
                return Err("a stats request is exactly {\"stats\":true}".into());
            }
            return Ok(Request::Stats);
        }
        let mut filter = Filter::default();
        let mut markers = false;
        let mut heartbeat = None;
        let mut cursors = false;
        let mut start = Start::Live;
        for (key, value) in &request {
            match key.as_str() {
                "subscribe" => filter = parse_filter(value)?,
                "markers" => markers = value.as_bool().ok_or("\"markers\" must be true or false")?,
                "heartbeat_s" => {
                    let seconds = value.as_f64().ok_or("\"heartbeat_s\" must be a number of seconds")?;
                    let seconds = Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO);
                    if !(MIN_HEARTBEAT..=MAX_HEARTBEAT).contains(&seconds) {
                        return Err("\"heartbeat_s\" must be between 0.1 and 3600".into());
                    }
                    heartbeat = Some(seconds);
                }
                "cursor" => cursors = value.as_bool().ok_or("\"cursor\" must be true or false")?,
                "after" => {
                    let text = value.as_str().ok_or("\"after\" must be a cursor string")?;
                    if start == Start::Replay {
                        return Err("\"after\" and \"replay\" cannot be combined".into());
                    }
                    start = Start::After(text.parse()?);
                }
                "replay" => {
                    if value != &Value::Bool(true) {
                        return Err("\"replay\" must be true (leave it out otherwise)".into());
                    }
                    if matches!(start, Start::After(_)) {
                        return Err("\"after\" and \"replay\" cannot be combined".into());
                    }
                    start = Start::Replay;
                }
                other => {
                    return Err(format!(
                        "unknown key {other:?} in the request (known: subscribe, markers, heartbeat_s, cursor, after, replay, stats)"
                    ))
                }
            }
        }
        Ok(Request::Subscribe {
            filter,
            markers,
            heartbeat,
            cursors: cursors || start != Start::Live,
            start,
        })
    }

    /// The request as one line, newline included, ready to write to the socket.
    pub fn to_line(&self) -> Vec<u8> {
        let value = match self {
            Request::Stats => serde_json::json!({"stats": true}),
            Request::Subscribe {
                filter,
                markers,
                heartbeat,
                cursors,
                start,
            } => {
                let mut request = Map::new();
                let mut subscribe = Map::new();
                for (key, list) in [
                    ("event_types", &filter.event_types),
                    ("priorities", &filter.priorities),
                    ("publishers", &filter.publishers),
                ] {
                    if !list.is_empty() {
                        subscribe.insert(key.into(), list.clone().into());
                    }
                }
                if !subscribe.is_empty() {
                    request.insert("subscribe".into(), Value::Object(subscribe));
                }
                if *markers {
                    request.insert("markers".into(), true.into());
                }
                if let Some(heartbeat) = heartbeat {
                    request.insert("heartbeat_s".into(), heartbeat.as_secs_f64().into());
                }
                match start {
                    Start::Live if *cursors => {
                        request.insert("cursor".into(), true.into());
                    }
                    Start::Live => {}
                    Start::After(cursor) => {
                        request.insert("after".into(), cursor.to_string().into());
                    }
                    Start::Replay => {
                        request.insert("replay".into(), true.into());
                    }
                }
                Value::Object(request)
            }
        };
        let mut line = serde_json::to_vec(&value).expect("a JSON value serialises");
        line.push(b'\n');
        line
    }
}

fn parse_filter(value: &Value) -> Result<Filter, String> {
    let Value::Object(subscribe) = value else {
        return Err("\"subscribe\" must be an object".into());
    };
    let mut filter = Filter::default();
    for (key, value) in subscribe {
        let list = match key.as_str() {
            "event_types" => &mut filter.event_types,
            "priorities" => &mut filter.priorities,
            "publishers" => &mut filter.publishers,
            other => {
                return Err(format!(
                    "unknown key {other:?} in \"subscribe\" (known: event_types, priorities, publishers)"
                ))
            }
        };
        let Value::Array(items) = value else {
            return Err(format!("\"subscribe\".{key:?} must be an array of strings"));
        };
        if items.is_empty() {
            return Err(format!("\"subscribe\".{key:?} is empty, which would match nothing; leave the key out to match everything"));
        }
        if items.len() > MAX_PATTERNS {
            return Err(format!(
                "\"subscribe\".{key:?} has {} patterns; the limit is {MAX_PATTERNS}",
                items.len()
            ));
        }
        for item in items {
            let Value::String(pattern) = item else {
                return Err(format!("\"subscribe\".{key:?} must be an array of strings"));
            };
            if pattern.len() > MAX_PATTERN_BYTES {
                return Err(format!(
                    "a pattern in \"subscribe\".{key:?} is {} bytes; the limit is {MAX_PATTERN_BYTES}",
                    pattern.len()
                ));
            }
            list.push(pattern.clone());
        }
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_round_trip() {
        let request = Request::parse(
            br#"{"subscribe":{"event_types":["compute.instance.*","image.*"],"priorities":["ERROR"],"publishers":["nova-compute:*"]},"markers":true,"heartbeat_s":5}"#,
        )
        .unwrap();
        let Request::Subscribe {
            filter,
            markers,
            heartbeat,
            ..
        } = &request
        else {
            panic!()
        };
        assert_eq!(filter.event_types, ["compute.instance.*", "image.*"]);
        assert!(*markers);
        assert_eq!(*heartbeat, Some(Duration::from_secs(5)));
        let line = request.to_line();
        assert_eq!(Request::parse(&line[..line.len() - 1]).unwrap(), request);
        assert_eq!(
            Request::parse(br#"{"stats":true}"#).unwrap(),
            Request::Stats
        );
        assert_eq!(
            Request::parse(b"{}").unwrap(),
            Request::Subscribe {
                filter: Filter::default(),
                markers: false,
                heartbeat: None,
                cursors: false,
                start: Start::Live,
            }
        );
        // Cursors, resume and replay.
        let cursor: Cursor = "5f3a9c0d12e4b7a8-1041".parse().unwrap();
        assert_eq!(
            cursor,
            Cursor {
                epoch: 0x5f3a9c0d12e4b7a8,
                seq: 1041
            }
        );
        assert_eq!(cursor.to_string(), "5f3a9c0d12e4b7a8-1041");
        for (line, cursors, start) in [
            (&br#"{"cursor":true}"#[..], true, Start::Live),
            (
                br#"{"after":"5f3a9c0d12e4b7a8-1041"}"#,
                true,
                Start::After(cursor),
            ),
            (br#"{"replay":true}"#, true, Start::Replay),
        ] {
            let request = Request::parse(line).unwrap();
            assert_eq!(
                request,
                Request::Subscribe {
                    filter: Filter::default(),
                    markers: false,
                    heartbeat: None,
                    cursors,
                    start,
                }
            );
            let again = request.to_line();
            assert_eq!(Request::parse(&again[..again.len() - 1]).unwrap(), request);
        }
        for bad in [
            &br#"{"after":"5f3a9c0d12e4b7a-1"}"#[..],
            br#"{"after":"5f3a9c0d12e4b7a8-"}"#,
            br#"{"after":"5f3a9c0d12e4b7a8-x"}"#,
            br#"{"after":12}"#,
            br#"{"replay":false}"#,
            br#"{"replay":true,"after":"5f3a9c0d12e4b7a8-1"}"#,
        ] {
            assert!(
                Request::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (request, expected) in [
            (&b"not json"[..], "not valid JSON"),
            (b"[1]", "must be a JSON object"),
            (br#"{"subscribe":{"event_types":[]}}"#, "empty"),
            (br#"{"subscribe":{"event_types":"x"}}"#, "array of strings"),
            (br#"{"subscribe":{"event_types":[1]}}"#, "array of strings"),
            (br#"{"subscribe":{"types":["x"]}}"#, "unknown key \"types\""),
            (br#"{"subscribe":[]}"#, "must be an object"),
            (br#"{"markers":1}"#, "true or false"),
            (br#"{"heartbeat_s":0}"#, "between 0.1 and 3600"),
            (br#"{"heartbeat_s":-1}"#, "between 0.1 and 3600"),
            (br#"{"heartbeat_s":"5"}"#, "number of seconds"),
            (br#"{"stats":true,"markers":true}"#, "exactly"),
            (br#"{"stats":false}"#, "exactly"),
            (br#"{"subscribed":true}"#, "unknown key"),
        ] {
            let error = Request::parse(request).unwrap_err();
            assert!(
                error.contains(expected),
                "{}: {error}",
                String::from_utf8_lossy(request)
            );
        }
    }
}
