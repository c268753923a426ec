//! `json_line::scan` must accept exactly what serde_json accepts as an object, and compaction
//! must not change the value. Inputs come from a seeded generator, mutations of its output and
//! of the fixtures, and every truncation of the fixtures.

use notif::json_line::{compact_into, scan, scan_reference, to_compact_line, Layout, MAX_DEPTH};
use serde_json::Value;

use crate::common::{json_fixtures, Rng};

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;
const GENERATED_DOCUMENTS: usize = 40_000;
const MUTATIONS_PER_INPUT: usize = 6;

fn whitespace(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.chance(4) {
        for _ in 0..rng.below(3) + 1 {
            out.push(*rng.pick(b" \t\n\r"));
        }
    }
}

fn string(rng: &mut Rng, out: &mut Vec<u8>) {
    const PIECES: &[&str] = &[
        "a",
        "key",
        "nova",
        " ",
        "\\\"",
        "\\\\",
        "\\/",
        "\\b",
        "\\f",
        "\\n",
        "\\r",
        "\\t",
        "\\u0041",
        "\\u00e9",
        "\\uD834\\uDD1E",
        "\\uffff",
        "é",
        "€",
        "𝄞",
        "\u{7f}",
        "\u{10ffff}",
        "0123456789",
        "plain ascii text",
        "\\\\\\\"",
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
    ];
    out.push(b'"');
    for _ in 0..rng.below(6) {
        out.extend_from_slice(rng.pick(PIECES).as_bytes());
    }
    out.push(b'"');
}

fn number(rng: &mut Rng, out: &mut Vec<u8>) {
    if rng.chance(3) {
        out.push(b'-');
    }
    if rng.chance(3) {
        out.push(b'0');
    } else {
        out.push(b'1' + rng.below(9) as u8);
        for _ in 0..rng.below(25) {
            out.push(b'0' + rng.below(10) as u8);
        }
    }
    if rng.chance(3) {
        out.push(b'.');
        for _ in 0..rng.below(4) + 1 {
            out.push(b'0' + rng.below(10) as u8);
        }
    }
    if rng.chance(4) {
        out.push(*rng.pick(b"eE"));
        if rng.chance(2) {
            out.push(*rng.pick(b"+-"));
        }
        for _ in 0..rng.below(3) + 1 {
            out.push(b'0' + rng.below(10) as u8);
        }
    }
}

fn value(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
    let kinds = if depth >= 6 { 4 } else { 6 };
    match rng.below(kinds) {
        0 => string(rng, out),
        1 => number(rng, out),
        2 => out.extend_from_slice(rng.pick(&["true", "false", "null"]).as_bytes()),
        3 => string(rng, out),
        4 => object(rng, depth + 1, out),
        _ => {
            out.push(b'[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(b',');
                }
                whitespace(rng, out);
                value(rng, depth + 1, out);
                whitespace(rng, out);
            }
            out.push(b']');
        }
    }
}

fn object(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
    out.push(b'{');
    for i in 0..rng.below(5) {
        if i > 0 {
            out.push(b',');
        }
        whitespace(rng, out);
        string(rng, out);
        whitespace(rng, out);
        out.push(b':');
        whitespace(rng, out);
        value(rng, depth, out);
        whitespace(rng, out);
    }
    out.push(b'}');
}

fn document(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    whitespace(rng, &mut out);
    if rng.chance(40) {
        // Occasionally a non-object top level, which must be rejected.
        value(rng, 0, &mut out);
    } else {
        object(rng, 1, &mut out);
    }
    whitespace(rng, &mut out);
    out
}

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = &[
        b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', 0x00, 0x1F, 0x7F, 0x80, 0xC0, 0xED, 0xF4,
        0xFF, b'u', b'e', b'-', b'.', b'0', b' ', b'\n',
    ];
    let mut out = input.to_vec();
    for _ in 0..rng.below(3) + 1 {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => out[at] ^= 1 << rng.below(8),
            1 => out.insert(at, rng.next() as u8),
            2 if at < out.len() => {
                out.remove(at);
            }
            _ => out.insert(at, *rng.pick(INTERESTING)),
        }
    }
    out
}

/// Compares `scan` with the oracle and checks that compaction preserves the value; returns
/// whether the input was accepted, so the tests can show they exercise both outcomes.
fn check(input: &[u8], origin: &str) -> bool {
    let oracle: Option<Value> = serde_json::from_slice::<Value>(input)
        .ok()
        .filter(Value::is_object);
    let verdict = scan(input);
    // `scan` runs the fast kernel; the reference scanner must give the same answer (so both
    // are checked against serde_json here; tests/protocol/json_line_simd.rs compares every kernel).
    assert_eq!(
        scan_reference(input),
        verdict,
        "reference vs scan on {origin}"
    );
    assert_eq!(
        oracle.is_some(),
        verdict.is_ok(),
        "disagreement on {origin} (seed {SEED:#x}): serde_json {}, scan {verdict:?}\ninput: {}",
        if oracle.is_some() {
            "accepts"
        } else {
            "rejects"
        },
        input.escape_ascii(),
    );
    let Some(expected) = oracle else {
        return false;
    };
    let line = to_compact_line(input).unwrap();
    assert!(
        !line.contains(&b'\n'),
        "newline in compact output of {origin}"
    );
    let compacted: Value = serde_json::from_slice(&line).unwrap_or_else(|e| {
        panic!(
            "compact form of {origin} does not parse ({e}): {}",
            line.escape_ascii()
        )
    });
    assert_eq!(
        compacted, expected,
        "compaction changed the value of {origin}"
    );
    assert_eq!(scan(&line), Ok(Layout::Compact), "{origin} compacted");
    if verdict == Ok(Layout::Compact) {
        assert_eq!(&*line, input, "{origin} was compact but not sent as is");
    }
    let mut appended = b"prefix".to_vec();
    compact_into(input, &mut appended);
    assert_eq!(&appended[6..], &*line);
    true
}

#[test]
fn agrees_with_serde_json_on_generated_and_mutated_documents() {
    let mut rng = Rng(SEED);
    let (mut count, mut accepted) = (0, 0);
    for n in 0..GENERATED_DOCUMENTS {
        let doc = document(&mut rng);
        accepted += usize::from(check(&doc, &format!("generated document {n}")));
        count += 1;
        for m in 0..MUTATIONS_PER_INPUT {
            let mutant = mutate(&mut rng, &doc);
            accepted += usize::from(check(&mutant, &format!("mutation {m} of document {n}")));
            count += 1;
        }
    }
    for (name, bytes) in json_fixtures() {
        for m in 0..2_000 {
            let mutant = mutate(&mut rng, &bytes);
            accepted += usize::from(check(&mutant, &format!("mutation {m} of {name}")));
            count += 1;
        }
    }
    println!("{count} generated and mutated inputs agree ({accepted} accepted)");
    assert!(count >= 300_000);
    assert!(accepted > count / 10 && accepted < count * 9 / 10);
}

#[test]
fn agrees_with_serde_json_on_every_fixture_truncation() {
    let mut count = 0;
    for (name, bytes) in json_fixtures() {
        for end in 0..=bytes.len() {
            check(&bytes[..end], &format!("{name} truncated to {end} bytes"));
            count += 1;
        }
    }
    println!("{count} truncations agree");
}

#[test]
fn agrees_with_serde_json_on_the_depth_limit() {
    for depth in MAX_DEPTH - 2..=MAX_DEPTH + 2 {
        let arrays = format!(
            "{{\"k\":{}{}}}",
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        );
        let objects = format!("{}1{}", "{\"k\":".repeat(depth), "}".repeat(depth));
        check(arrays.as_bytes(), &format!("{depth} levels of arrays"));
        check(objects.as_bytes(), &format!("{depth} levels of objects"));
    }
}
