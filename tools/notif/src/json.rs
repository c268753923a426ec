//! Small JSON helpers that keep the text as received: an indenting printer
//! (serde_json's would sort keys and respell numbers) and the members of an
//! object in their order (read by the library's `top_level`).

use std::io::{self, Write};

const KEY: &[u8] = b"\x1b[1;34m";
const STRING: &[u8] = b"\x1b[32m";
const NUMBER: &[u8] = b"\x1b[36m";
const BOOLEAN: &[u8] = b"\x1b[33m";
const NULL: &[u8] = b"\x1b[35m";
const RESET: &[u8] = b"\x1b[0m";
const INDENT: &[u8] = b"  ";

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The index just past the string that starts with the quote at `start`
/// (the end of the input if it is not terminated).
fn string_end(text: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    text.len()
}

/// The index just past the number or literal starting at `start`.
fn scalar_end(text: &[u8], start: usize) -> usize {
    text[start..]
        .iter()
        .position(|&b| is_space(b) || matches!(b, b',' | b':' | b'}' | b']' | b'{' | b'[' | b'"'))
        .map_or(text.len(), |n| start + n)
        .max(start + 1)
}

fn skip_space(text: &[u8], mut i: usize) -> usize {
    while i < text.len() && is_space(text[i]) {
        i += 1;
    }
    i
}

fn newline(out: &mut impl Write, depth: usize) -> io::Result<()> {
    const SPACES: [u8; 256] = [b' '; 256];
    out.write_all(b"\n")?;
    let mut left = depth * INDENT.len();
    while left > 0 {
        let n = left.min(SPACES.len());
        out.write_all(&SPACES[..n])?;
        left -= n;
    }
    Ok(())
}

fn painted(out: &mut impl Write, colour: Option<&[u8]>, token: &[u8]) -> io::Result<()> {
    match colour {
        Some(c) => {
            out.write_all(c)?;
            out.write_all(token)?;
            out.write_all(RESET)
        }
        None => out.write_all(token),
    }
}

/// Writes `text` (one JSON value) to `out` indented by two spaces per level,
/// without a final newline; with `colour`, keys and values get ANSI colours.
/// Key order, number spelling and string escapes are kept. Never panics,
/// whatever `text` is. The output goes out as it is made (give it a buffered
/// writer): deep nesting makes it many times the size of `text` (a 4 MB line
/// 120 levels deep makes about 490 MB), so it is never held whole.
pub fn pretty(text: &[u8], colour: bool, out: &mut impl Write) -> io::Result<()> {
    let paint = |c: &'static [u8]| if colour { Some(c) } else { None };
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        match b {
            b'"' => {
                let end = string_end(text, i);
                let next = skip_space(text, end);
                let is_key = text.get(next) == Some(&b':');
                painted(out, paint(if is_key { KEY } else { STRING }), &text[i..end])?;
                i = end;
            }
            b'{' | b'[' => {
                let close = if b == b'{' { b'}' } else { b']' };
                let next = skip_space(text, i + 1);
                if text.get(next) == Some(&close) {
                    out.write_all(&[b, close])?;
                    i = next + 1;
                } else {
                    out.write_all(&[b])?;
                    depth += 1;
                    newline(out, depth)?;
                    i += 1;
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(out, depth)?;
                out.write_all(&[b])?;
                i += 1;
            }
            b',' => {
                out.write_all(b",")?;
                newline(out, depth)?;
                i += 1;
            }
            b':' => {
                out.write_all(b": ")?;
                i += 1;
            }
            _ if is_space(b) => i += 1,
            _ => {
                let end = scalar_end(text, i);
                let token = &text[i..end];
                let colour = match token[0] {
                    b't' | b'f' => BOOLEAN,
                    b'n' => NULL,
                    _ => NUMBER,
                };
                painted(out, paint(colour), token)?;
                i = end;
            }
        }
    }
    Ok(())
}

/// The members of the JSON object `text`, in the order they appear: each key
/// (unescaped) with the text of its value. None if `text` is not valid JSON or
/// not an object. Read by the library's one top-level reader
/// ([`notif::top_level::members`]).
pub fn members(text: &[u8]) -> Option<Vec<(String, &[u8])>> {
    match serde_json::from_slice::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => {}
        _ => return None,
    }
    notif::top_level::members(text)
        .map(|m| Some((m.key()?.into_owned(), m.value())))
        .collect()
}

/// The value of `key` in the object `text`, as text (the last one, if
/// repeated, as every JSON reader of notif's takes it).
pub fn member<'a>(text: &'a [u8], key: &str) -> Option<&'a [u8]> {
    members(text)?
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> String {
        let mut out = Vec::new();
        pretty(text.as_bytes(), false, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn pretty_keeps_order_numbers_and_escapes() {
        assert_eq!(
            plain(r#"{"z":1.0e+10,"a":[true,null,"x\"]{"],"e":{},"f":[]}"#),
            "{\n  \"z\": 1.0e+10,\n  \"a\": [\n    true,\n    null,\n    \"x\\\"]{\"\n  ],\n  \"e\": {},\n  \"f\": []\n}"
        );
    }

    #[test]
    fn pretty_colours_keys_and_values() {
        let mut out = Vec::new();
        pretty(br#"{"k":"v","n":-0}"#, true, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\x1b[1;34m\"k\"\x1b[0m: \x1b[32m\"v\"\x1b[0m"),
            "{text:?}"
        );
        assert!(text.contains("\x1b[36m-0\x1b[0m"), "{text:?}");
    }

    #[test]
    fn pretty_survives_garbage() {
        for junk in [
            "",
            "}",
            "]]]",
            "\"unterminated",
            "{\"a\":",
            "x",
            "{\"a\\",
            "\\",
        ] {
            plain(junk);
        }
    }

    #[test]
    fn members_in_order() {
        let text = br#"{ "b" : 2, "a\u0041":{"x":[1,"]"]}, "c":"s" }"#;
        let list = members(text).unwrap();
        let keys: Vec<&str> = list.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "aA", "c"]);
        assert_eq!(list[1].1, br#"{"x":[1,"]"]}"#);
        assert_eq!(list[2].1, br#""s""#);
        assert_eq!(member(text, "c"), Some(&br#""s""#[..]));
        assert_eq!(member(br#"{"a":1,"a":2}"#, "a"), Some(&b"2"[..]));
        assert_eq!(members(b"[1]"), None);
        assert_eq!(members(b"{\"a\":"), None);
    }
}
