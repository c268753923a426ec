//! `message_fields` reads what serde_json reads: the last top-level "event_type", "priority"
//! and "publisher_id" members, when they are strings (None when absent or not a string). It
//! never panics on arbitrary bytes. `Filter::matches_line` agrees with the fields serde_json
//! sees, for filters taken from the line itself (top-level "f": event_types, "p": priorities,
//! "g": publishers, when they are arrays of strings).
#![no_main]

use libfuzzer_sys::fuzz_target;
use notif::json_line::compact_into;
use notif::subscription::{glob_matches, message_fields, Filter};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// Known bugs (inputs in fuzz/regressions/message_fields): message_fields compares top-level
/// keys without unescaping them, so `{"event\u005ftype":"x"}` has no event_type for it; and
/// it finds no field at all in an object preceded by whitespace. With
/// NOTIF_FUZZ_SKIP_KNOWN_BUGS=1 such inputs are skipped (for the second, only the check on
/// the raw input), so that a long run can look for other bugs; by default they fail.
static SKIP_KNOWN_BUGS: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("NOTIF_FUZZ_SKIP_KNOWN_BUGS").is_some_and(|v| v == "1"));

fuzz_target!(|input: &[u8]| {
    let raw_fields = message_fields(input);
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(input) else {
        return;
    };
    if *SKIP_KNOWN_BUGS && has_escaped_top_level_key(input) {
        return;
    }
    // Also the compact line, which is what the server really filters.
    let mut line = Vec::new();
    compact_into(input, &mut line);
    let leading_whitespace = input.first().is_some_and(u8::is_ascii_whitespace);
    for (what, fields) in [
        ("input", raw_fields),
        ("compact line", message_fields(&line)),
    ] {
        if *SKIP_KNOWN_BUGS && leading_whitespace && what == "input" {
            continue;
        }
        for (key, got) in [
            ("event_type", &fields.event_type),
            ("priority", &fields.priority),
            ("publisher_id", &fields.publisher_id),
        ] {
            assert_eq!(
                got.as_deref(),
                string_member(&object, key),
                "{key} of the {what}: {}",
                input.escape_ascii()
            );
        }
    }

    let filter = Filter {
        event_types: string_list(&object, "f"),
        priorities: string_list(&object, "p"),
        publishers: string_list(&object, "g"),
    };
    let globs_match = |patterns: &[String], key: &str| {
        patterns.is_empty()
            || string_member(&object, key)
                .is_some_and(|v| patterns.iter().any(|p| glob_matches(p, v)))
    };
    let expected = globs_match(&filter.event_types, "event_type")
        && globs_match(&filter.publishers, "publisher_id")
        && (filter.priorities.is_empty()
            || string_member(&object, "priority")
                .is_some_and(|v| filter.priorities.iter().any(|p| p.eq_ignore_ascii_case(v))));
    assert_eq!(
        filter.matches_line(&line),
        expected,
        "{filter:?} on {}",
        line.escape_ascii()
    );
});

fn string_member<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

fn string_list(object: &Map<String, Value>, key: &str) -> Vec<String> {
    match object.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a top-level key of the object is written with an escape: serde_json hands such a
/// key to `visit_str` (decoded) rather than `visit_borrowed_str` (straight from the input).
fn has_escaped_top_level_key(input: &[u8]) -> bool {
    struct Key(bool);
    impl<'de> serde::Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Key;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a key")
                }
                fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Key, E> {
                    Ok(Key(false))
                }
                fn visit_str<E>(self, _: &str) -> Result<Key, E> {
                    Ok(Key(true))
                }
            }
            d.deserialize_str(V)
        }
    }
    struct Escaped;
    impl<'de> Visitor<'de> for Escaped {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut escaped = false;
            while let Some(Key(e)) = map.next_key()? {
                escaped |= e;
                map.next_value::<IgnoredAny>()?;
            }
            Ok(escaped)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(input);
    de.deserialize_map(Escaped).unwrap_or(false)
}
