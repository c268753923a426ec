//! `Request::parse` never panics, and an accepted request survives `to_line` and a second parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use notif::subscription::Request;

fuzz_target!(|input: &[u8]| {
    let Ok(request) = Request::parse(input) else {
        return;
    };
    let line = request.to_line();
    assert_eq!(line.last(), Some(&b'\n'));
    let body = &line[..line.len() - 1];
    assert!(
        !body.contains(&b'\n'),
        "newline inside {}",
        line.escape_ascii()
    );
    let again = Request::parse(body).unwrap_or_else(|e| {
        panic!(
            "{request:?} from {} is written as {}, which does not parse: {e}",
            input.escape_ascii(),
            line.escape_ascii()
        )
    });
    assert_eq!(
        again,
        request,
        "round trip through {} changed the request",
        line.escape_ascii()
    );
});
