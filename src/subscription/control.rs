//! Control lines: what the publisher writes besides notifications, how a
//! client recognises and reads them, and the reasons of its error lines.

use serde_json::{Map, Value};

use super::parse_epoch;
use crate::top_level::is_control_line;

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
