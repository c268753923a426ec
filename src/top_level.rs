//! The one reader of a notification's top level: the members of the outer
//! object, walked without building anything. Everything that looks at a
//! notification's top level reads it here: emit (the reserved first member),
//! the server's filter and the subscriber client's (the fields filters look
//! at, [`message_fields`]), and the `notif` tool (the members of a line, in
//! their order).
//!
//! The rules (docs/subscription-protocol.md):
//! - **The reserved first member.** A control line's first member is named
//!   `notif` ([`RESERVED`]); emit refuses a notification whose first member has
//!   that name in any spelling JSON allows (escapes such as `"\u006eotif"`
//!   included), so no notification can pose as one. A `notif` member anywhere
//!   else is ordinary. Clients recognise a control line by its bytes
//!   ([`CONTROL_PREFIX`]): every line the publisher writes is compact.
//! - **Keys are compared after unescaping** (`"event\u005ftype"` is `event_type`),
//!   and so are the string values filters look at.
//! - **Duplicate keys: the last one wins**, as in serde_json, Go and Python.
//! - Only the top level is looked at; nested objects are skipped whole.
//!
//! The input is one JSON object, already validated (json_line::scan) where it
//! matters; anything malformed ends the walk early, never panics.

use std::borrow::Cow;

/// The reserved name: the first member of every control line.
pub const RESERVED: &str = "notif";

/// The byte prefix of every control line: its first member is named `notif`,
/// and the publisher never sends a notification that starts so (emit refuses
/// them, [`first_member_is_reserved`]).
pub const CONTROL_PREFIX: &[u8] = b"{\"notif\":";

/// Whether a line from the publisher is a control line: one that starts with
/// [`CONTROL_PREFIX`], which emit never lets a notification do.
pub fn is_control_line(line: &[u8]) -> bool {
    line.starts_with(CONTROL_PREFIX)
}

/// The fields of a notification that filters look at: its top-level
/// `event_type`, `priority` and `publisher_id` when they are strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFields<'a> {
    pub event_type: Option<Cow<'a, str>>,
    pub priority: Option<Cow<'a, str>>,
    pub publisher_id: Option<Cow<'a, str>>,
}

/// Reads the filterable fields of a notification line. A field that is
/// absent, or whose last occurrence is not a string, is None.
pub fn message_fields(line: &[u8]) -> MessageFields<'_> {
    let mut fields = MessageFields::default();
    for member in members(line) {
        // One comparison per member for the usual unescaped key.
        let key: Cow<'_, [u8]> = if member.key.escaped {
            match member.key.decode() {
                Some(key) if member.key.content.len() <= 6 * "publisher_id".len() => {
                    Cow::Owned(key.into_owned().into_bytes())
                }
                _ => continue,
            }
        } else {
            Cow::Borrowed(member.key.content)
        };
        let slot = match &*key {
            b"event_type" => &mut fields.event_type,
            b"priority" => &mut fields.priority,
            b"publisher_id" => &mut fields.publisher_id,
            _ => continue,
        };
        *slot = member.string_value();
    }
    fields
}

/// Whether the first top-level member of `json` is named `notif`, in any
/// spelling. Reads the first member's name only (not its value); anything
/// malformed answers false.
#[inline]
pub fn first_member_is_reserved(json: &[u8]) -> bool {
    let mut walker = Walker::new(json);
    if !walker.open_object() {
        return false;
    }
    // On emit's path: nearly every first key starts with neither `n` nor an
    // escape, and is then known not to be `notif` without reading it whole.
    if walker.peek() != Some(b'"') || !matches!(json.get(walker.at + 1), Some(b'n' | b'\\')) {
        return false;
    }
    walker
        .string()
        .is_some_and(|key| key.is(RESERVED.as_bytes()))
}

/// The error emit returns for a notification whose first member is named
/// `notif` (EINVAL).
pub fn reserved_name_refusal() -> crate::Error {
    crate::Error::new(
        libc::EINVAL,
        "notification rejected: its first member is named \"notif\", which is reserved for \
         the publisher's control lines (docs/subscription-protocol.md): rename it, or put \
         another member first",
    )
}

/// The members of the top-level object, in the order they appear (duplicates
/// included: the caller that wants one takes the last).
pub fn members(line: &[u8]) -> Members<'_> {
    Members {
        walker: Walker::new(line),
        started: false,
        done: false,
    }
}

/// The text of the value of `key` in the object `line`; the last one when
/// the key is repeated.
pub fn member<'a>(line: &'a [u8], key: &str) -> Option<&'a [u8]> {
    members(line)
        .filter(|m| m.key_is(key))
        .last()
        .map(|m| m.value)
}

/// One top-level member as it appears in the line.
#[derive(Debug, Clone, Copy)]
pub struct Member<'a> {
    key: RawString<'a>,
    /// The value's text.
    value: &'a [u8],
    /// When the value is a string: its content between the quotes.
    string: Option<RawString<'a>>,
}

impl<'a> Member<'a> {
    /// The key, unescaped; None if its escapes are invalid.
    pub fn key(&self) -> Option<Cow<'a, str>> {
        self.key.decode()
    }

    /// Whether the key, unescaped, is `name`. Allocates only for a key with
    /// escapes short enough to be `name`.
    pub fn key_is(&self, name: &str) -> bool {
        self.key.is(name.as_bytes())
    }

    /// The value's text, as in the line.
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    /// The value, unescaped, when it is a string.
    pub fn string_value(&self) -> Option<Cow<'a, str>> {
        self.string.and_then(|s| s.decode())
    }
}

/// Iterator over the top-level members (see [`members`]).
pub struct Members<'a> {
    walker: Walker<'a>,
    started: bool,
    done: bool,
}

impl<'a> Iterator for Members<'a> {
    type Item = Member<'a>;

    fn next(&mut self) -> Option<Member<'a>> {
        if self.done {
            return None;
        }
        let member = self.read_member();
        if member.is_none() {
            self.done = true;
        }
        member
    }
}

impl<'a> Members<'a> {
    fn read_member(&mut self) -> Option<Member<'a>> {
        let w = &mut self.walker;
        if !self.started {
            self.started = true;
            if !w.open_object() {
                return None;
            }
        } else {
            w.skip_whitespace();
            if !w.expect(b',') {
                return None;
            }
            w.skip_whitespace();
        }
        let key = w.string()?;
        w.skip_whitespace();
        if !w.expect(b':') {
            return None;
        }
        w.skip_whitespace();
        let start = w.at;
        let string = if w.peek() == Some(b'"') {
            Some(w.string()?)
        } else {
            if !w.skip_value() {
                return None;
            }
            None
        };
        Some(Member {
            key,
            value: &w.bytes[start..w.at],
            string,
        })
    }
}

/// A string's raw content between its quotes, and whether it has escapes.
#[derive(Debug, Clone, Copy)]
struct RawString<'a> {
    content: &'a [u8],
    escaped: bool,
}

impl<'a> RawString<'a> {
    /// The content: borrowed when it has no escapes, decoded otherwise;
    /// None when it is not valid UTF-8 or its escapes are invalid.
    fn decode(self) -> Option<Cow<'a, str>> {
        if !self.escaped {
            return std::str::from_utf8(self.content).ok().map(Cow::Borrowed);
        }
        let mut quoted = Vec::with_capacity(self.content.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(self.content);
        quoted.push(b'"');
        serde_json::from_slice::<String>(&quoted)
            .ok()
            .map(Cow::Owned)
    }

    /// Whether the content, unescaped, is `name` (ASCII). An escape takes at
    /// most 6 bytes per character, so a longer content is not decoded.
    fn is(self, name: &[u8]) -> bool {
        if !self.escaped {
            return self.content == name;
        }
        self.content.len() <= 6 * name.len()
            && self.decode().is_some_and(|key| key.as_bytes() == name)
    }
}

/// Walks a JSON text without building anything.
struct Walker<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Walker<'a> {
    fn new(bytes: &'a [u8]) -> Walker<'a> {
        Walker { bytes, at: 0 }
    }

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

    /// Past the `{` of the top-level object and the whitespace after it.
    fn open_object(&mut self) -> bool {
        self.skip_whitespace();
        let open = self.expect(b'{');
        self.skip_whitespace();
        open
    }

    /// The string starting here (at its opening quote).
    #[inline]
    fn string(&mut self) -> Option<RawString<'a>> {
        if !self.expect(b'"') {
            return None;
        }
        let bytes = self.bytes;
        let start = self.at;
        let mut at = start;
        let mut escaped = false;
        loop {
            at = crate::json_line::next_quote_or_backslash(bytes, at);
            match bytes.get(at) {
                Some(b'"') => {
                    self.at = at + 1;
                    return Some(RawString {
                        content: &bytes[start..at],
                        escaped,
                    });
                }
                Some(_) => {
                    // A backslash: the next byte is escaped, whatever it is.
                    escaped = true;
                    at += 2;
                }
                None => {
                    self.at = bytes.len();
                    return None;
                }
            }
        }
    }

    /// Skips one value of any kind; false if the input ends first.
    fn skip_value(&mut self) -> bool {
        match self.peek() {
            None => false,
            Some(b'"') => self.string().is_some(),
            Some(b'{' | b'[') => {
                // Only quotes and brackets matter inside: the bytes between
                // them are skipped in a tight loop over a local index.
                let bytes = self.bytes;
                let mut depth = 0usize;
                let mut at = self.at;
                loop {
                    while at < bytes.len() && !matches!(bytes[at], b'"' | b'{' | b'[' | b'}' | b']')
                    {
                        at += 1;
                    }
                    let Some(&byte) = bytes.get(at) else {
                        self.at = at;
                        return false;
                    };
                    if byte == b'"' {
                        self.at = at;
                        if self.string().is_none() {
                            return false;
                        }
                        at = self.at;
                        continue;
                    }
                    at += 1;
                    if matches!(byte, b'{' | b'[') {
                        depth += 1;
                    } else {
                        depth -= 1;
                        if depth == 0 {
                            self.at = at;
                            return true;
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_first_member_named_notif_in_any_spelling() {
        for line in [
            r#"{"notif":{"dropped":1000000}}"#,
            r#"{"notif":{"error":"x"}}"#,
            r#"{"notif":1}"#,
            r#"{"notif":{"dropped":1},"x":1}"#,
            " \t\r\n{ \n \"notif\" : {}}",
            r#"{"\u006eotif":{}}"#,
            r#"{"\u006Eotif":{}}"#,
            r#"{"n\u006f\u0074\u0069\u0066":{}}"#,
            r#"{"notif":{"dropped":1},"notif":2}"#,
        ] {
            assert!(first_member_is_reserved(line.as_bytes()), "{line}");
        }
    }

    #[test]
    fn every_other_first_member_is_ordinary() {
        for line in [
            r#"{}"#,
            r#"{ }"#,
            r#"{"event_type":"x","notif":{"dropped":1}}"#,
            r#"{"notifs":{}}"#,
            r#"{"noti":{}}"#,
            r#"{"Notif":{}}"#,
            r#"{"notif\u0000":{}}"#,
            r#"{"\\notif":{}}"#,
            r#"{"not\"if":{}}"#,
            r#"{"nötif":{}}"#,
            r#"{"\ud800\udc00":{}}"#,
            r#"{"":{}}"#,
            // Not objects, or malformed: not ours to judge, never reserved.
            r#"["notif"]"#,
            r#""notif""#,
            r#"{"notif"#,
            r#"{"\u006"#,
            r#"{"\x"#,
            "",
        ] {
            assert!(!first_member_is_reserved(line.as_bytes()), "{line}");
        }
    }

    #[test]
    fn members_in_order_with_their_text_and_the_last_duplicate_wins() {
        let line = br#"{ "b" : 2, "a\u0041":{"x":[1,"]"]}, "c":"s\"", "b":true }"#;
        let list: Vec<_> = members(line).collect();
        let keys: Vec<_> = list.iter().map(|m| m.key().unwrap()).collect();
        assert_eq!(keys, ["b", "aA", "c", "b"]);
        assert_eq!(list[1].value(), br#"{"x":[1,"]"]}"#);
        assert_eq!(list[2].value(), br#""s\"""#);
        assert_eq!(list[2].string_value().as_deref(), Some("s\""));
        assert_eq!(list[0].string_value(), None);
        assert_eq!(member(line, "b"), Some(&b"true"[..]));
        assert_eq!(member(line, "aA"), Some(&br#"{"x":[1,"]"]}"#[..]));
        assert_eq!(member(line, "z"), None);
        assert_eq!(members(b"[1]").count(), 0);
        assert_eq!(members(b"{}").count(), 0);
        assert_eq!(members(b"{\"a\":").count(), 0);
    }
}
