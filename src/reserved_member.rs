//! The one name a notification may not start with: `notif`.
//!
//! Subscribers recognise the publisher's control lines (`{"notif":{"dropped":N}}`,
//! `{"notif":{"error":...}}`...) by their first member being named `notif`
//! (docs/subscription-protocol.md). A notification starting that way could pose
//! as one: report a million drops, or make a subscriber give up as if refused.
//! So emit refuses it, in every spelling JSON allows for the name (escapes
//! such as `"\u006eotif"` included); a `notif` member anywhere else is fine.

/// The reserved name.
pub const RESERVED: &str = "notif";

/// Whether the first top-level member of `json` is named `notif`. `json` is
/// one JSON object, already validated (json_line::scan); anything malformed
/// answers false. Reads at most the first member's name, and gives up as soon
/// as the name cannot be `notif`, so the cost does not grow with the input.
pub fn first_member_is_reserved(json: &[u8]) -> bool {
    let mut at = skip_whitespace(json, 0);
    if json.get(at) != Some(&b'{') {
        return false;
    }
    at = skip_whitespace(json, at + 1);
    if json.get(at) != Some(&b'"') {
        return false; // an empty object
    }
    at += 1;
    let wanted = RESERVED.as_bytes();
    let mut matched = 0;
    loop {
        let Some(&byte) = json.get(at) else {
            return false;
        };
        let (decoded, next) = match byte {
            b'"' => return matched == wanted.len(),
            b'\\' => match decode_escape(json, at + 1) {
                Some(decoded) => decoded,
                None => return false,
            },
            _ => (u32::from(byte), at + 1),
        };
        // Bytes of a multi-byte character are >= 0x80 and never match ASCII.
        if matched == wanted.len() || decoded != u32::from(wanted[matched]) {
            return false;
        }
        matched += 1;
        at = next;
    }
}

/// The error emit returns for such a notification (EINVAL).
pub fn refusal() -> crate::Error {
    crate::Error::new(
        libc::EINVAL,
        "notification rejected: its first member is named \"notif\", which is reserved for \
         the publisher's control lines (docs/subscription-protocol.md): rename it, or put \
         another member first",
    )
}

fn skip_whitespace(json: &[u8], mut at: usize) -> usize {
    while matches!(json.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The character of the escape whose letter is at `at` (after the backslash),
/// and where the next character starts. A `\u` surrogate is returned as such:
/// it is never an ASCII letter, which is all the caller compares against.
fn decode_escape(json: &[u8], at: usize) -> Option<(u32, usize)> {
    let decoded = match *json.get(at)? {
        b'u' => {
            let hex = json.get(at + 1..at + 5)?;
            let text = std::str::from_utf8(hex).ok()?;
            return Some((u32::from_str_radix(text, 16).ok()?, at + 5));
        }
        b'"' => b'"',
        b'\\' => b'\\',
        b'/' => b'/',
        b'b' => 8,
        b'f' => 12,
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        _ => return None,
    };
    Some((u32::from(decoded), at + 1))
}

#[cfg(test)]
mod tests {
    use super::first_member_is_reserved as reserved;

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
            assert!(reserved(line.as_bytes()), "{line}");
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
            assert!(!reserved(line.as_bytes()), "{line}");
        }
    }
}
