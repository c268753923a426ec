//! The subscription protocol (docs/subscription-protocol.md): the request a
//! subscriber may write, the filter it carries, the fields of a notification the
//! filter looks at, and the control lines the publisher answers with. Shared by
//! the server thread and the subscriber client, so both read the protocol alike.

use std::borrow::Cow;
use std::time::Duration;

use serde_json::{Map, Value};

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

/// Which notifications a subscriber wants. An empty list means "no constraint"
/// here (the request parser refuses empty lists; an absent key becomes empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Globs on `event_type`.
    pub event_types: Vec<String>,
    /// Priorities, compared ignoring ASCII case.
    pub priorities: Vec<String>,
    /// Globs on `publisher_id`.
    pub publishers: Vec<String>,
}

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

/// Names one notification of one open of a publisher: its epoch (drawn at
/// random when the publisher opened) and its sequence number. Written
/// `EPOCH-SEQ`: 16 lowercase hex digits, a dash, the number in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub epoch: u64,
    pub seq: u64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{}", self.epoch, self.seq)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Cursor, String> {
        let bad = || {
            format!("{text:?} is not a notif cursor (EPOCH-SEQ: 16 hex digits, a dash, a number)")
        };
        let (epoch, seq) = text.split_once('-').ok_or_else(bad)?;
        // At most 20 digits (leading zeros included), as every client checks.
        if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Cursor {
            epoch: parse_epoch(epoch).ok_or_else(bad)?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// An epoch as written in cursors and acknowledgements: exactly 16 lowercase
/// hexadecimal digits.
pub fn parse_epoch(text: &str) -> Option<u64> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if text.len() != 16 || !text.bytes().all(lower_hex) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

/// The fields of a notification that filters look at: its top-level
/// `event_type`, `priority` and `publisher_id` when they are strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFields<'a> {
    pub event_type: Option<Cow<'a, str>>,
    pub priority: Option<Cow<'a, str>>,
    pub publisher_id: Option<Cow<'a, str>>,
}

/// A line from the publisher that is not a notification.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlLine {
    /// The acknowledgement; with cursors, the publisher's epoch.
    Subscribed {
        epoch: Option<u64>,
    },
    /// `{"notif":{"seq":N}}`: the next notification line has number N.
    Seq(u64),
    Dropped(u64),
    /// `{"notif":{"dropped":"unknown"}}`: some were missed, how many is not known.
    DroppedUnknown,
    Heartbeat(f64),
    /// `{"notif":{"error":"<message>","reason":"<reason>"}}`: the publisher
    /// refused the request or is closing the connection, and says why.
    Error {
        message: String,
        reason: Reason,
    },
    Stats(Map<String, Value>),
    /// A control line this version does not understand (from a newer
    /// publisher, or malformed): never a notification, so skipped.
    Unknown,
}

/// The byte prefix of every control line: its first member is named `notif`,
/// and the publisher never sends a notification that starts so (emit refuses
/// them, see `reserved_member`).
pub const CONTROL_PREFIX: &[u8] = b"{\"notif\":";

/// Why the publisher sent an error line (its `reason`). Clients act on the
/// reason, never on the human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The request line was invalid (also an error line without a reason,
    /// from an older publisher). Permanent: retrying sends the same request.
    BadRequest,
    /// A partial request line was not completed in time. Like BadRequest.
    RequestTimeout,
    /// The publisher's allow-lists refuse this peer. Permanent.
    Denied,
    /// The publisher has max_subscribers already. Not retried in a loop.
    Full,
    /// Disconnected by the slow-subscriber policy: transient, reconnect.
    TooSlow,
    /// Disconnected because the publisher's memory budget was reached:
    /// transient, reconnect.
    Memory,
    /// Disconnected because writing to this peer cost the publisher's
    /// thread more than its budget (its socket is watched by very many
    /// epoll registrations, say). Permanent: it would cost the same again.
    TooCostly,
    /// A reason this version does not know: treated as BadRequest.
    Other(String),
}

impl Reason {
    pub fn parse(reason: Option<&str>) -> Reason {
        match reason {
            None | Some("bad_request") => Reason::BadRequest,
            Some("request_timeout") => Reason::RequestTimeout,
            Some("denied") => Reason::Denied,
            Some("full") => Reason::Full,
            Some("too_slow") => Reason::TooSlow,
            Some("memory") => Reason::Memory,
            Some("too_costly") => Reason::TooCostly,
            Some(other) => Reason::Other(other.to_string()),
        }
    }

    /// The word on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Reason::BadRequest => "bad_request",
            Reason::RequestTimeout => "request_timeout",
            Reason::Denied => "denied",
            Reason::Full => "full",
            Reason::TooSlow => "too_slow",
            Reason::Memory => "memory",
            Reason::TooCostly => "too_costly",
            Reason::Other(other) => other,
        }
    }

    /// Whether a client should reconnect after it (as after any lost connection).
    pub fn is_transient(&self) -> bool {
        matches!(self, Reason::TooSlow | Reason::Memory)
    }
}

/// `*` matches any run of characters (the empty run too); everything else
/// matches itself. Linear time: a star only ever resumes from its latest position.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            resume = Some((p + 1, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((after_star, start)) = resume {
            p = after_star;
            t = start + 1;
            resume = Some((after_star, start + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

impl Filter {
    /// True when the filter lets every notification through.
    pub fn is_everything(&self) -> bool {
        self.event_types.is_empty() && self.priorities.is_empty() && self.publishers.is_empty()
    }

    pub fn matches(&self, fields: &MessageFields<'_>) -> bool {
        fn any_glob(patterns: &[String], value: &Option<Cow<'_, str>>) -> bool {
            patterns.is_empty()
                || value
                    .as_deref()
                    .is_some_and(|v| patterns.iter().any(|p| glob_matches(p, v)))
        }
        let priority_ok = self.priorities.is_empty()
            || fields
                .priority
                .as_deref()
                .is_some_and(|v| self.priorities.iter().any(|p| p.eq_ignore_ascii_case(v)));
        priority_ok
            && any_glob(&self.event_types, &fields.event_type)
            && any_glob(&self.publishers, &fields.publisher_id)
    }

    /// Whether a notification line (one JSON object) passes the filter.
    pub fn matches_line(&self, line: &[u8]) -> bool {
        self.is_everything() || self.matches(&message_fields(line))
    }
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

/// Reads the filterable fields of a notification line. The line is one valid
/// JSON object (emit checked it); anything else yields no fields.
pub fn message_fields(line: &[u8]) -> MessageFields<'_> {
    let mut fields = MessageFields::default();
    let mut scanner = TopLevel { bytes: line, at: 0 };
    scanner.skip_whitespace();
    if !scanner.expect(b'{') {
        return fields;
    }
    loop {
        scanner.skip_whitespace();
        let Some((raw_key, key_escaped)) = scanner.string() else {
            return fields;
        };
        // A key may be spelled with escapes ("event\u005ftype" is event_type).
        let decoded_key;
        let key: &[u8] = if key_escaped {
            decoded_key = decode_string(raw_key, true);
            decoded_key.as_deref().map_or(&[][..], str::as_bytes)
        } else {
            &raw_key
        };
        scanner.skip_whitespace();
        if !scanner.expect(b':') {
            return fields;
        }
        scanner.skip_whitespace();
        let slot = match key {
            b"event_type" => Some(&mut fields.event_type),
            b"priority" => Some(&mut fields.priority),
            b"publisher_id" => Some(&mut fields.publisher_id),
            _ => None,
        };
        match slot {
            Some(slot) if scanner.peek() == Some(b'"') => {
                let Some((value, escaped)) = scanner.string() else {
                    return fields;
                };
                // Duplicate keys: the last one wins, as in serde_json and Python.
                *slot = decode_string(value, escaped);
            }
            Some(slot) => {
                *slot = None;
                if !scanner.skip_value() {
                    return fields;
                }
            }
            None => {
                if !scanner.skip_value() {
                    return fields;
                }
            }
        }
        scanner.skip_whitespace();
        if !scanner.expect(b',') {
            return fields;
        }
    }
}

/// A string's content: borrowed when it has no escapes, decoded otherwise.
fn decode_string(raw: Cow<'_, [u8]>, escaped: bool) -> Option<Cow<'_, str>> {
    if !escaped {
        return match raw {
            Cow::Borrowed(bytes) => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            Cow::Owned(bytes) => String::from_utf8(bytes).ok().map(Cow::Owned),
        };
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(&raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted)
        .ok()
        .map(Cow::Owned)
}

/// Walks the top level of a JSON object without building anything.
struct TopLevel<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> TopLevel<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// A string's raw content between its quotes, and whether it has escapes.
    fn string(&mut self) -> Option<(Cow<'a, [u8]>, bool)> {
        if !self.expect(b'"') {
            return None;
        }
        let start = self.at;
        let mut escaped = false;
        loop {
            self.at = crate::json_line::next_quote_or_backslash(self.bytes, self.at);
            match self.peek()? {
                b'"' => {
                    let content = &self.bytes[start..self.at];
                    self.at += 1;
                    return Some((Cow::Borrowed(content), escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.at += 2;
                }
                _ => self.at += 1,
            }
        }
    }

    /// Skips one value of any kind; false if the input ends first.
    fn skip_value(&mut self) -> bool {
        match self.peek() {
            None => false,
            Some(b'"') => self.string().is_some(),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek() {
                        None => return false,
                        Some(b'"') => {
                            if self.string().is_none() {
                                return false;
                            }
                        }
                        Some(b'{' | b'[') => {
                            depth += 1;
                            self.at += 1;
                        }
                        Some(b'}' | b']') => {
                            depth -= 1;
                            self.at += 1;
                            if depth == 0 {
                                return true;
                            }
                        }
                        Some(_) => self.at += 1,
                    }
                }
            }
            Some(_) => {
                // A number or literal runs to the next delimiter.
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                true
            }
        }
    }
}

/// Whether a line from the publisher is a control line: one whose first
/// member is named `notif`, which emit never lets a notification have.
pub fn is_control_line(line: &[u8]) -> bool {
    line.starts_with(CONTROL_PREFIX)
}

/// Recognises a control line: None for a notification (a line that does not
/// start with `{"notif":`), else which control line it is
/// ([`ControlLine::Unknown`] when it cannot be read).
pub fn parse_control_line(line: &[u8]) -> Option<ControlLine> {
    // Cheap test first: notifications are far more common than control lines.
    let trimmed = line.strip_suffix(b"\n").unwrap_or(line);
    if !is_control_line(trimmed) {
        return None;
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(trimmed) else {
        return Some(ControlLine::Unknown);
    };
    let Some(Value::Object(body)) = object.get("notif") else {
        return Some(ControlLine::Unknown);
    };
    if body.get("subscribed") == Some(&Value::Bool(true)) {
        let epoch = body
            .get("epoch")
            .and_then(Value::as_str)
            .and_then(parse_epoch);
        return Some(ControlLine::Subscribed { epoch });
    }
    if let Some(n) = body.get("seq").and_then(Value::as_u64) {
        return Some(ControlLine::Seq(n));
    }
    if let Some(n) = body.get("dropped").and_then(Value::as_u64) {
        return Some(ControlLine::Dropped(n));
    }
    if body.get("dropped").and_then(Value::as_str) == Some("unknown") {
        return Some(ControlLine::DroppedUnknown);
    }
    if let Some(t) = body.get("heartbeat").and_then(Value::as_f64) {
        return Some(ControlLine::Heartbeat(t));
    }
    if let Some(message) = body.get("error").and_then(Value::as_str) {
        return Some(ControlLine::Error {
            message: message.to_string(),
            reason: Reason::parse(body.get("reason").and_then(Value::as_str)),
        });
    }
    if let Some(Value::Object(stats)) = body.get("stats") {
        return Some(ControlLine::Stats(stats.clone()));
    }
    Some(ControlLine::Unknown)
}

/// Control lines the publisher writes.
pub(crate) mod lines {
    use serde_json::json;

    fn line(value: serde_json::Value) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(&value).expect("a JSON value serialises");
        bytes.push(b'\n');
        bytes
    }

    /// The acknowledgement; with cursors it carries the publisher's epoch.
    pub(crate) fn subscribed(epoch: Option<u64>) -> Vec<u8> {
        match epoch {
            Some(epoch) => line(json!({"notif": {
                "subscribed": true, "version": crate::VERSION, "epoch": format!("{epoch:016x}")
            }})),
            None => line(json!({"notif": {"subscribed": true, "version": crate::VERSION}})),
        }
    }

    /// The next notification line has number `seq`.
    pub(crate) fn seq(seq: u64) -> Vec<u8> {
        line(json!({"notif": {"seq": seq}}))
    }

    /// Some notifications were missed; how many is not known.
    pub(crate) fn dropped_unknown() -> Vec<u8> {
        line(json!({"notif": {"dropped": "unknown"}}))
    }

    pub(crate) fn dropped(count: u64) -> Vec<u8> {
        line(json!({"notif": {"dropped": count}}))
    }

    pub(crate) fn heartbeat(unix_seconds: f64) -> Vec<u8> {
        line(json!({"notif": {"heartbeat": unix_seconds}}))
    }

    /// An error line; its reason is for programs (see [`super::Reason`]).
    pub(crate) fn error(reason: &super::Reason, message: &str) -> Vec<u8> {
        line(json!({"notif": {"error": message, "reason": reason.as_str()}}))
    }

    /// Written by hand rather than through a serde_json map, which would sort
    /// the keys: the fields keep the order of notif_stats.
    pub(crate) fn stats(
        fields: &[(&str, u64)],
        version: &str,
        path: &str,
        subscriber_list: &[serde_json::Value],
        left_out: usize,
    ) -> Vec<u8> {
        use std::fmt::Write;
        let mut text = String::from("{\"notif\":{\"stats\":{");
        for (name, value) in fields {
            let _ = write!(text, "\"{name}\":{value},");
        }
        let quoted = |s: &str| serde_json::to_string(s).expect("a string serialises");
        let list = serde_json::to_string(subscriber_list).expect("JSON values serialise");
        let _ = writeln!(
            text,
            "\"version\":{},\"path\":{},\"subscriber_list\":{list},\"subscriber_list_left_out\":{left_out}}}}}}}",
            quoted(version),
            quoted(path)
        );
        text.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("*", ""));
        assert!(glob_matches("compute.*", "compute.instance.create.end"));
        assert!(glob_matches("*.end", "compute.instance.create.end"));
        assert!(glob_matches("c*e*d", "compute.instance.create.end"));
        assert!(!glob_matches("compute.*", "image.update"));
        assert!(!glob_matches("compute", "compute.x"));
        assert!(glob_matches("a*a*a*b", "aaaaaaaaaaaaaaaaab"));
        assert!(!glob_matches("a*a*a*b", "aaaaaaaaaaaaaaaaaa"));
        assert!(glob_matches("**", "x"));
        assert!(!glob_matches("Image.*", "image.update"));
    }

    #[test]
    fn fields_are_read_from_the_top_level_only() {
        let line = br#"{"payload":{"event_type":"nested","priority":"X"},"event_type":"image.update","priority":"info","publisher_id":"image.host1","n":[1,{"a":"}"}]}"#;
        let fields = message_fields(line);
        assert_eq!(fields.event_type.as_deref(), Some("image.update"));
        assert_eq!(fields.priority.as_deref(), Some("info"));
        assert_eq!(fields.publisher_id.as_deref(), Some("image.host1"));
    }

    #[test]
    fn non_string_and_escaped_fields() {
        let fields =
            message_fields(br#"{"event_type":42,"priority":null,"publisher_id":"a\u002eb\"c"}"#);
        assert_eq!(fields.event_type, None);
        assert_eq!(fields.priority, None);
        assert_eq!(fields.publisher_id.as_deref(), Some("a.b\"c"));
        let fields = message_fields(br#"{"event_type":"first","event_type":"last"}"#);
        assert_eq!(fields.event_type.as_deref(), Some("last"));
    }

    #[test]
    fn keys_spelled_with_escapes_and_leading_whitespace() {
        // Both found by the message_fields fuzz target.
        let fields = message_fields(br#"{"event\u005ftype":"compute.x"}"#);
        assert_eq!(fields.event_type.as_deref(), Some("compute.x"));
        let fields = message_fields(br#" {"event_type":"compute.x"}"#);
        assert_eq!(fields.event_type.as_deref(), Some("compute.x"));
        let fields =
            message_fields(br#"{"event\u005ftype":"a","event_type":"b","prior\u0069ty":"INFO"}"#);
        assert_eq!(fields.event_type.as_deref(), Some("b"));
        assert_eq!(fields.priority.as_deref(), Some("INFO"));
    }

    #[test]
    fn fields_after_every_kind_of_value() {
        let line = br#"{"a":true,"b":null,"c":-1.5e3,"d":"x\\","e":[],"f":{},"g":[[[]]],"event_type":"t"}"#;
        assert_eq!(message_fields(line).event_type.as_deref(), Some("t"));
    }

    #[test]
    fn filter_semantics() {
        let filter = Filter {
            event_types: vec!["compute.*".into()],
            priorities: vec!["ERROR".into(), "critical".into()],
            publishers: vec![],
        };
        assert!(filter.matches_line(br#"{"event_type":"compute.x","priority":"error"}"#));
        assert!(filter.matches_line(br#"{"event_type":"compute.x","priority":"CRITICAL"}"#));
        assert!(!filter.matches_line(br#"{"event_type":"compute.x","priority":"INFO"}"#));
        assert!(
            !filter.matches_line(br#"{"event_type":"compute.x"}"#),
            "a missing priority does not match"
        );
        assert!(!filter.matches_line(br#"{"priority":"ERROR"}"#));
        assert!(Filter::default().matches_line(b"{}"));
    }

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

    #[test]
    fn control_lines() {
        assert_eq!(
            parse_control_line(&lines::subscribed(None)),
            Some(ControlLine::Subscribed { epoch: None })
        );
        assert_eq!(
            parse_control_line(&lines::subscribed(Some(0x5f3a9c0d12e4b7a8))),
            Some(ControlLine::Subscribed {
                epoch: Some(0x5f3a9c0d12e4b7a8)
            })
        );
        assert_eq!(
            parse_control_line(&lines::seq(7)),
            Some(ControlLine::Seq(7))
        );
        assert_eq!(
            parse_control_line(&lines::dropped_unknown()),
            Some(ControlLine::DroppedUnknown)
        );
        assert_eq!(
            parse_control_line(&lines::dropped(7)),
            Some(ControlLine::Dropped(7))
        );
        assert_eq!(
            parse_control_line(&lines::heartbeat(12.5)),
            Some(ControlLine::Heartbeat(12.5))
        );
        assert_eq!(
            parse_control_line(&lines::error(&Reason::BadRequest, "bad")),
            Some(ControlLine::Error {
                message: "bad".into(),
                reason: Reason::BadRequest
            })
        );
        for reason in [
            Reason::BadRequest,
            Reason::RequestTimeout,
            Reason::Denied,
            Reason::Full,
            Reason::TooSlow,
            Reason::Memory,
            Reason::Other("newer".into()),
        ] {
            assert_eq!(Reason::parse(Some(reason.as_str())), reason);
            assert_eq!(
                parse_control_line(&lines::error(&reason, "why")),
                Some(ControlLine::Error {
                    message: "why".into(),
                    reason
                })
            );
        }
        // The first member decides: more members do not make it a notification.
        assert_eq!(
            parse_control_line(br#"{"notif":{"dropped":1},"x":1}"#),
            Some(ControlLine::Dropped(1))
        );
        for unknown in [
            &br#"{"notif":{"newer":1}}"#[..],
            br#"{"notif":1}"#,
            br#"{"notif":{"dropped":"#,
            b"{\"notif\":\x1b[2J\x07",
        ] {
            assert_eq!(parse_control_line(unknown), Some(ControlLine::Unknown));
        }
        assert_eq!(parse_control_line(br#"{"event_type":"x"}"#), None);
        assert_eq!(
            parse_control_line(br#"{"event_type":"x","notif":{"dropped":1}}"#),
            None
        );
        assert_eq!(parse_control_line(br#" {"notif":{"dropped":1}}"#), None);
    }
}
