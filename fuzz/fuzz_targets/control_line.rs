//! `parse_control_line` never panics, and recognises exactly the lines whose first
//! member is named "notif" (the byte prefix `{"notif":`, a trailing newline allowed);
//! what it reads from them is what the JSON says.
#![no_main]

use libfuzzer_sys::fuzz_target;
use notif::subscription::{parse_control_line, ControlLine, Reason, CONTROL_PREFIX};
use serde_json::Value;

fuzz_target!(|input: &[u8]| {
    let trimmed = input.strip_suffix(b"\n").unwrap_or(input);
    let Some(control) = parse_control_line(input) else {
        assert!(
            !trimmed.starts_with(CONTROL_PREFIX),
            "a control line taken for a notification: {}",
            input.escape_ascii()
        );
        return;
    };
    assert!(
        trimmed.starts_with(CONTROL_PREFIX),
        "{control:?} from a line that does not start with the prefix: {}",
        input.escape_ascii()
    );
    if control == ControlLine::Unknown {
        return;
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(trimmed) else {
        panic!(
            "{control:?} from a line that is not an object: {}",
            input.escape_ascii()
        );
    };
    let Some(Value::Object(body)) = object.get("notif") else {
        panic!(
            "{control:?} without a \"notif\" object: {}",
            input.escape_ascii()
        );
    };
    match control {
        ControlLine::Subscribed { .. } => {
            assert_eq!(body.get("subscribed"), Some(&Value::Bool(true)))
        }
        ControlLine::Seq(n) => assert_eq!(body.get("seq").and_then(Value::as_u64), Some(n)),
        ControlLine::Dropped(n) => assert_eq!(body.get("dropped").and_then(Value::as_u64), Some(n)),
        ControlLine::DroppedUnknown => {
            assert_eq!(body.get("dropped").and_then(Value::as_str), Some("unknown"))
        }
        ControlLine::Heartbeat(t) => {
            let got = body.get("heartbeat").and_then(Value::as_f64);
            assert!(
                got.is_some_and(|g| g.to_bits() == t.to_bits()),
                "{t} vs {got:?}"
            );
        }
        ControlLine::Error { message, reason } => {
            assert_eq!(
                body.get("error").and_then(Value::as_str),
                Some(message.as_str())
            );
            assert_eq!(
                Reason::parse(body.get("reason").and_then(Value::as_str)),
                reason
            );
        }
        ControlLine::Stats(stats) => assert_eq!(body.get("stats"), Some(&Value::Object(stats))),
        ControlLine::Unknown => unreachable!(),
    }
});
