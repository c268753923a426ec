//! `json_line::scan` accepts exactly what serde_json reads as an object (within MAX_DEPTH),
//! and `compact_into` turns every accepted input into an equal value on one compact line.
//! `compact_into` must not panic on rejected input either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use notif::json_line::{compact_into, scan, to_compact_line, JsonLineError, Layout, MAX_DEPTH};
use serde_json::Value;

/// With arbitrary_precision, serde_json reads an object whose first key is this (after
/// unescaping) as a number, or fails: such inputs say nothing about the scanner.
const MAGIC_KEY: &str = "$serde_json::private::Number";

fuzz_target!(|input: &[u8]| {
    // Never panics, whatever the input.
    let mut garbage_out = Vec::new();
    compact_into(input, &mut garbage_out);
    assert!(garbage_out.len() <= input.len());

    let verdict = scan(input);
    if let Err(error) = verdict {
        check_error(input, error);
    }
    if mentions_magic_key(input) {
        return;
    }
    let parsed = serde_json::from_slice::<Value>(input);
    let oracle = match &parsed {
        Ok(value) if value.is_object() && depth(value) <= MAX_DEPTH => Some(value),
        _ => None,
    };
    assert_eq!(
        oracle.is_some(),
        verdict.is_ok(),
        "disagreement: serde_json {:?}, scan {verdict:?}\ninput: {}",
        parsed
            .as_ref()
            .map(|_| "parsed")
            .map_err(ToString::to_string),
        input.escape_ascii(),
    );
    if let Ok(value) = &parsed {
        if !value.is_object() {
            assert_eq!(
                verdict,
                Err(JsonLineError::NotAnObject),
                "{}",
                input.escape_ascii()
            );
        }
    }
    let Some(expected) = oracle else {
        return;
    };

    let line = garbage_out;
    assert!(!line.contains(&b'\n'), "newline in {}", line.escape_ascii());
    assert_no_whitespace_outside_strings(&line);
    let reparsed: Value = serde_json::from_slice(&line)
        .unwrap_or_else(|e| panic!("compact form does not parse ({e}): {}", line.escape_ascii()));
    assert_eq!(&reparsed, expected, "compaction changed the value");
    if verdict == Ok(Layout::Compact) {
        assert_eq!(line, input, "a compact input was not kept byte for byte");
    } else {
        assert_ne!(
            line, input,
            "NeedsCompaction, but compacting changed nothing"
        );
    }
    assert_eq!(scan(&line), Ok(Layout::Compact));
    let mut again = b"prefix".to_vec();
    compact_into(&line, &mut again);
    assert_eq!(
        &again[6..],
        &line[..],
        "compacting twice is not the identity"
    );
    assert_eq!(&*to_compact_line(input).unwrap(), &line[..]);
});

/// What an error says must fit the input.
fn check_error(input: &[u8], error: JsonLineError) {
    let only_whitespace = input
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    assert_eq!(error == JsonLineError::Empty, only_whitespace, "{error:?}");
    match error {
        JsonLineError::NotUtf8 { offset } => {
            assert!(offset < input.len(), "{error:?}");
            assert!(
                std::str::from_utf8(&input[..offset]).is_ok(),
                "{error:?}: earlier bytes are not UTF-8"
            );
            assert!(std::str::from_utf8(&input[offset..]).is_err(), "{error:?}");
        }
        JsonLineError::Syntax { offset, .. } => {
            assert!(offset < input.len(), "{error:?}");
        }
        JsonLineError::TooDeep { offset } => {
            assert!(matches!(input.get(offset), Some(b'{' | b'[')), "{error:?}");
        }
        JsonLineError::Empty | JsonLineError::NotAnObject | JsonLineError::Truncated => {}
    }
}

/// Nesting depth of objects and arrays, the value itself counting as one level.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// An independent check: outside strings, no byte of JSON whitespace.
fn assert_no_whitespace_outside_strings(line: &[u8]) {
    let mut in_string = false;
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            assert!(
                !matches!(b, b' ' | b'\t' | b'\n' | b'\r'),
                "whitespace at {i} outside strings: {}",
                line.escape_ascii()
            );
            in_string = b == b'"';
        }
        i += 1;
    }
}

/// Whether some string in `input`, once unescaped, is the magic key.
fn mentions_magic_key(input: &[u8]) -> bool {
    let mut i = 0;
    while let Some(start) = input[i..].iter().position(|&b| b == b'"').map(|k| i + k) {
        let mut end = start + 1;
        let mut escaped = false;
        while end < input.len() && input[end] != b'"' {
            if input[end] == b'\\' {
                escaped = true;
                end += 1;
            }
            end += 1;
        }
        if end >= input.len() {
            return false;
        }
        let body = &input[start + 1..end];
        let is_magic = if escaped {
            serde_json::from_slice::<String>(&input[start..=end]).is_ok_and(|s| s == MAGIC_KEY)
        } else {
            body == MAGIC_KEY.as_bytes()
        };
        if is_magic {
            return true;
        }
        i = end + 1;
    }
    false
}
