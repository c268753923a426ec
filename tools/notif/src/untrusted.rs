//! What `notif tail` prints is written by whoever listens on the socket: it
//! may not be a notif publisher at all. Only JSON objects go to stdout, and
//! on a terminal not one byte that the terminal would act on.

use std::borrow::Cow;

use notif::json_line::{self, Layout};

/// The line as it may be printed, or why it may not: it is not one JSON
/// object (random bytes, escape sequences...). A valid object that is not
/// compact is compacted, so it holds no whitespace but spaces. With
/// `terminal`, the two kinds of character valid JSON carries raw inside
/// strings that a terminal may act on, DEL and the C1 controls
/// (U+0080..U+009F; U+009B is CSI for some terminals), are written as
/// `\u00XX` escapes: the same JSON value, harmless bytes.
pub fn printable(line: &[u8], terminal: bool) -> Result<Cow<'_, [u8]>, String> {
    let mut text = match json_line::scan(line) {
        Err(why) => return Err(why.to_string()),
        Ok(Layout::Compact) => Cow::Borrowed(line),
        Ok(Layout::NeedsCompaction) => {
            let mut compact = Vec::with_capacity(line.len());
            json_line::compact_into(line, &mut compact);
            Cow::Owned(compact)
        }
    };
    if terminal && has_terminal_controls(&text) {
        text = Cow::Owned(escape_terminal_controls(&text));
    }
    Ok(text)
}

fn has_terminal_controls(text: &[u8]) -> bool {
    text.iter().enumerate().any(|(i, &b)| {
        b == 0x7f || b < 0x20 || (b == 0xc2 && text.get(i + 1).is_some_and(|&n| n < 0xa0))
    })
}

/// Valid UTF-8 JSON in, valid JSON out. (Raw bytes under 0x20 cannot be in
/// a valid compact line; they are escaped too, in case.)
fn escape_terminal_controls(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        let control = if b == 0x7f || b < 0x20 {
            Some((u32::from(b), 1))
        } else if b == 0xc2 && text.get(i + 1).is_some_and(|&n| (0x80..0xa0).contains(&n)) {
            Some((u32::from(text[i + 1]), 2))
        } else {
            None
        };
        match control {
            Some((code, width)) => {
                out.extend_from_slice(format!("\\u{code:04x}").as_bytes());
                i += width;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// A short, harmless rendering of bytes for a message: at most `limit`
/// bytes, every control and non-ASCII byte escaped.
pub fn excerpt(bytes: &[u8], limit: usize) -> String {
    let shown: String = bytes[..bytes.len().min(limit)].escape_ascii().to_string();
    if bytes.len() > limit {
        format!("{shown}...")
    } else {
        shown
    }
}

/// Replaces every control character of a message for stderr (which may be
/// a terminal) by an escape: publisher-supplied text goes into messages.
pub fn harmless(message: &str) -> Cow<'_, str> {
    if !message.chars().any(char::is_control) {
        return Cow::Borrowed(message);
    }
    Cow::Owned(
        message
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_objects_and_on_a_terminal_no_controls() {
        assert_eq!(&*printable(br#"{"a":1}"#, true).unwrap(), br#"{"a":1}"#);
        assert_eq!(
            &*printable(b"{ \"a\" :\r 1 }", false).unwrap(),
            br#"{"a":1}"#
        );
        for bad in [
            &b"\x1b[2J\x07"[..],
            b"random \xff\xfe",
            b"[1]",
            b"",
            b"{\"a\":\"\x1b\"}",
        ] {
            assert!(printable(bad, true).is_err(), "{}", bad.escape_ascii());
        }
        let c1 = "{\"a\":\"x\u{9b}2J\u{7f}\u{85}é\"}";
        assert_eq!(
            &*printable(c1.as_bytes(), true).unwrap(),
            "{\"a\":\"x\\u009b2J\\u007f\\u0085é\"}".as_bytes()
        );
        // Through a pipe it is left as sent.
        assert_eq!(&*printable(c1.as_bytes(), false).unwrap(), c1.as_bytes());
        assert_eq!(harmless("a\u{1b}[2Jb\u{7}"), "a\\u{1b}[2Jb\\u{7}");
        assert_eq!(excerpt(b"\x1b[2J\x07abc", 6), "\\x1b[2J\\x07a...");
    }
}
