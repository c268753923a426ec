//! `message_fields` reads what serde_json reads: the last top-level "event_type", "priority"
//! and "publisher_id" members, when they are strings (None when absent or not a string). It
//! never panics on arbitrary bytes. `Filter::matches_line` agrees with the fields serde_json
//! sees, for filters taken from the line itself (top-level "f": event_types, "p": priorities,
//! "g": publishers, when they are arrays of strings).
#![no_main]

use libfuzzer_sys::fuzz_target;
use notif::json_line::compact_into;
use notif::subscription::{glob_matches, message_fields, Filter};
use serde_json::{Map, Value};

fuzz_target!(|input: &[u8]| {
    let raw_fields = message_fields(input);
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(input) else {
        return;
    };
    // Also the compact line, which is what the server really filters.
    let mut line = Vec::new();
    compact_into(input, &mut line);
    for (what, fields) in [
        ("input", raw_fields),
        ("compact line", message_fields(&line)),
    ] {
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
