//! `glob_matches` agrees with a plain recursive matcher written from the protocol's definition:
//! `*` matches any run of characters (the empty run too), every other character itself.
//! The input is "PATTERN\nTEXT" (lossy UTF-8), kept small.
#![no_main]

use libfuzzer_sys::fuzz_target;
use notif::subscription::glob_matches;
use std::collections::HashMap;

fuzz_target!(|input: &[u8]| {
    let input = String::from_utf8_lossy(input);
    let (pattern, text) = input.split_once('\n').unwrap_or((&input, ""));
    if pattern.chars().count() > 64 || text.chars().count() > 256 {
        return;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let expected = reference(&p, &t, &mut HashMap::new());
    assert_eq!(
        glob_matches(pattern, text),
        expected,
        "pattern {pattern:?} on text {text:?}"
    );
});

/// By definition, memoised so that many stars stay cheap.
fn reference(p: &[char], t: &[char], memo: &mut HashMap<(usize, usize), bool>) -> bool {
    let key = (p.len(), t.len());
    if let Some(&known) = memo.get(&key) {
        return known;
    }
    let result = match p.first() {
        None => t.is_empty(),
        // The star matches nothing, or one more character.
        Some('*') => reference(&p[1..], t, memo) || (!t.is_empty() && reference(p, &t[1..], memo)),
        Some(&c) => t.first() == Some(&c) && reference(&p[1..], &t[1..], memo),
    };
    memo.insert(key, result);
    result
}
