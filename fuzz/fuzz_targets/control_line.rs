//! `parse_control_line` never panics, and only recognises a line that is one JSON object
//! whose only key is "notif" (a trailing newline allowed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use notif::subscription::{parse_control_line, ControlLine};
use serde_json::Value;

fuzz_target!(|input: &[u8]| {
    let Some(control) = parse_control_line(input) else {
        return;
    };
    let trimmed = input.strip_suffix(b"\n").unwrap_or(input);
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(trimmed) else {
        panic!(
            "{control:?} from a line that is not an object: {}",
            input.escape_ascii()
        );
    };
    assert_eq!(object.len(), 1, "{}", input.escape_ascii());
    let Some(Value::Object(body)) = object.get("notif") else {
        panic!(
            "{control:?} without a \"notif\" object: {}",
            input.escape_ascii()
        );
    };
    match control {
        ControlLine::Subscribed => assert_eq!(body.get("subscribed"), Some(&Value::Bool(true))),
        ControlLine::Dropped(n) => assert_eq!(body.get("dropped").and_then(Value::as_u64), Some(n)),
        ControlLine::Heartbeat(t) => {
            let got = body.get("heartbeat").and_then(Value::as_f64);
            assert!(
                got.is_some_and(|g| g.to_bits() == t.to_bits()),
                "{t} vs {got:?}"
            );
        }
        ControlLine::Error(message) => {
            assert_eq!(
                body.get("error").and_then(Value::as_str),
                Some(message.as_str())
            )
        }
        ControlLine::Stats(stats) => assert_eq!(body.get("stats"), Some(&Value::Object(stats))),
    }
});
