//! The reference scanner: the scalar, one-pass validator that defined notif's contract
//! before the SIMD path existed. It is what runs on machines without a fast kernel, what
//! every fast kernel is checked against (tests/protocol/json_line_agreement.rs, tests/protocol/json_line_simd.rs,
//! fuzz/fuzz_targets/simd_scan.rs), and what produces the exact error when a fast kernel
//! rejects an input: the fast kernels only say "valid, compact or not" or "not valid".
//!
//! It never allocates, keeps its nesting stack in one `u128`, and skips plain string bytes
//! eight at a time. Strictness follows RFC 8259 and agrees with
//! `serde_json::from_slice::<serde_json::Value>` (see `tests/protocol/json_line_agreement.rs`),
//! including its nesting limit.

use super::{JsonLineError, Layout, MAX_DEPTH};

/// Checks that `input` is exactly one JSON object, optionally surrounded by whitespace (space, \t, \n, \r).
/// Compact means: no whitespace byte outside strings anywhere (leading/trailing included), so the input is already its own compact form.
///
/// # Errors
/// The first problem found, scanning from the start; see [`JsonLineError`].
pub fn scan(input: &[u8]) -> Result<Layout, JsonLineError> {
    let mut scanner = Scanner {
        bytes: input,
        pos: 0,
        saw_whitespace: false,
    };
    scanner.skip_whitespace();
    match scanner.peek() {
        None => return Err(JsonLineError::Empty),
        Some(b'{') => {}
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            return Err(JsonLineError::NotAnObject)
        }
        Some(_) => return Err(scanner.error_at(scanner.pos, "'{'")),
    }
    scanner.scan_value_tree()?;
    scanner.skip_whitespace();
    if scanner.pos != input.len() {
        return Err(scanner.error_at(scanner.pos, "end of input"));
    }
    Ok(if scanner.saw_whitespace {
        Layout::NeedsCompaction
    } else {
        Layout::Compact
    })
}

/// Appends the compact form of `input` (whitespace outside strings removed) to `out`.
///
/// Precondition: `scan(input)` returned `Ok`. On any other input this still returns without
/// panicking, but what it appends is unspecified.
pub fn compact_into(input: &[u8], out: &mut Vec<u8>) {
    out.reserve(input.len());
    let mut i = 0;
    while let Some(&byte) = input.get(i) {
        match byte {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let end = string_end(input, i + 1);
                out.extend_from_slice(&input[i..end]);
                i = end;
            }
            _ => {
                let run = input[i..]
                    .iter()
                    .position(|&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'"'))
                    .map_or(input.len(), |len| i + len);
                out.extend_from_slice(&input[i..run]);
                i = run;
            }
        }
    }
}

/// Index just past the closing quote of the string whose body starts at `body_start`, or the
/// end of `input` if it has none; escapes are skipped so `\"` does not end the string.
fn string_end(input: &[u8], body_start: usize) -> usize {
    let mut i = next_quote_or_backslash(input, body_start);
    while i < input.len() {
        if input[i] == b'"' {
            return i + 1;
        }
        i = next_quote_or_backslash(input, i + 2);
    }
    input.len()
}

/// Index of the first `"` or `\` at or after `from`, or `bytes.len()` if there
/// is none (also when `from` is past the end). Eight bytes at a time: most of a
/// notification is string bodies, and this is what skipping them costs.
/// Also how `top_level` skips strings (inlined: it is its inner loop).
#[inline]
pub(crate) fn next_quote_or_backslash(bytes: &[u8], mut from: usize) -> usize {
    while let Some(chunk) = bytes.get(from..from + 8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8-byte slice"));
        let marks = (zero_bytes(word ^ (ONES * u64::from(b'"')))
            | zero_bytes(word ^ (ONES * u64::from(b'\\'))))
            & HIGH_BITS;
        if marks != 0 {
            return from + (marks.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    bytes
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == b'"' || b == b'\\'))
        .map_or(bytes.len(), |at| from + at)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Marks (with its high bit) every byte of `word` that is zero. Bytes above a marked byte may be
/// marked falsely because of the borrow, but the lowest mark is always exact, which is all the
/// string scanner needs.
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(ONES) & !word & HIGH_BITS
}

/// Marks the bytes a string body cannot skip over blindly: `"`, `\`, control bytes below 0x20
/// and non-ASCII bytes (which need UTF-8 validation). Only the lowest mark is exact.
#[inline(always)]
fn bytes_needing_attention(word: u64) -> u64 {
    let quotes = zero_bytes(word ^ (ONES * u64::from(b'"')));
    let backslashes = zero_bytes(word ^ (ONES * u64::from(b'\\')));
    let controls = word.wrapping_sub(ONES * 0x20) & !word;
    (quotes | backslashes | controls | word) & HIGH_BITS
}

/// Index just past the UTF-8 sequence starting at `start`, whose first byte is non-ASCII,
/// following the well-formed byte sequences of Unicode table 3-7: no overlong forms, no
/// encoded surrogates, nothing above U+10FFFF.
fn utf8_sequence_end(bytes: &[u8], start: usize) -> Result<usize, JsonLineError> {
    let invalid = JsonLineError::NotUtf8 { offset: start };
    let (len, second_byte_range) = match bytes[start] {
        0xC2..=0xDF => (2, 0x80..=0xBF),
        0xE0 => (3, 0xA0..=0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80..=0xBF),
        0xED => (3, 0x80..=0x9F),
        0xF0 => (4, 0x90..=0xBF),
        0xF1..=0xF3 => (4, 0x80..=0xBF),
        0xF4 => (4, 0x80..=0x8F),
        _ => return Err(invalid),
    };
    match bytes.get(start + 1) {
        Some(second) if second_byte_range.contains(second) => {}
        _ => return Err(invalid),
    }
    for k in 2..len {
        match bytes.get(start + k) {
            Some(0x80..=0xBF) => {}
            _ => return Err(invalid),
        }
    }
    Ok(start + len)
}

struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
    saw_whitespace: bool,
}

impl Scanner<'_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
            self.saw_whitespace = true;
        }
    }

    /// The error for an unexpected byte at `offset`: running out of input is truncation, and a
    /// byte that is not even UTF-8 is reported as such rather than as a syntax error.
    #[cold]
    fn error_at(&self, offset: usize, expected: &'static str) -> JsonLineError {
        match self.bytes.get(offset) {
            None => JsonLineError::Truncated,
            Some(&b) if b >= 0x80 && utf8_sequence_end(self.bytes, offset).is_err() => {
                JsonLineError::NotUtf8 { offset }
            }
            Some(_) => JsonLineError::Syntax { offset, expected },
        }
    }

    /// Scans the value at `pos` and everything nested in it, iteratively: the nesting stack is
    /// one bit per level (set for an object), which `MAX_DEPTH` < 128 lets fit in a `u128`.
    fn scan_value_tree(&mut self) -> Result<(), JsonLineError> {
        let mut object_levels: u128 = 0;
        let mut depth: usize = 0;
        'value: loop {
            self.skip_whitespace();
            let Some(first) = self.peek() else {
                return Err(JsonLineError::Truncated);
            };
            match first {
                b'{' | b'[' => {
                    if depth == MAX_DEPTH {
                        return Err(JsonLineError::TooDeep { offset: self.pos });
                    }
                    let is_object = first == b'{';
                    object_levels =
                        (object_levels & !(1 << depth)) | (u128::from(is_object) << depth);
                    depth += 1;
                    self.pos += 1;
                    self.skip_whitespace();
                    match (self.peek(), is_object) {
                        (Some(b'}'), true) | (Some(b']'), false) => {
                            self.pos += 1;
                            depth -= 1;
                        }
                        (Some(b'"'), true) => {
                            self.scan_member_key()?;
                            continue 'value;
                        }
                        (_, true) => return Err(self.error_at(self.pos, "a string key or '}'")),
                        (_, false) => continue 'value,
                    }
                }
                b'"' => self.scan_string()?,
                b'-' | b'0'..=b'9' => self.scan_number()?,
                b't' => self.expect_literal(b"true", "'true'")?,
                b'f' => self.expect_literal(b"false", "'false'")?,
                b'n' => self.expect_literal(b"null", "'null'")?,
                _ => return Err(self.error_at(self.pos, "a value")),
            }
            // A value just ended: close as many containers as the input closes, then either
            // move on to the next value or finish at depth 0.
            while depth > 0 {
                self.skip_whitespace();
                let in_object = (object_levels >> (depth - 1)) & 1 == 1;
                match (self.peek(), in_object) {
                    (Some(b','), true) => {
                        self.pos += 1;
                        self.skip_whitespace();
                        if self.peek() != Some(b'"') {
                            return Err(self.error_at(self.pos, "a string key"));
                        }
                        self.scan_member_key()?;
                        continue 'value;
                    }
                    (Some(b','), false) => {
                        self.pos += 1;
                        continue 'value;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.pos += 1;
                        depth -= 1;
                    }
                    (_, true) => return Err(self.error_at(self.pos, "',' or '}'")),
                    (_, false) => return Err(self.error_at(self.pos, "',' or ']'")),
                }
            }
            return Ok(());
        }
    }

    /// Scans `"key" :` with `pos` on the key's opening quote, leaving `pos` after the colon.
    fn scan_member_key(&mut self) -> Result<(), JsonLineError> {
        self.scan_string()?;
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(self.error_at(self.pos, "':'"));
        }
        self.pos += 1;
        Ok(())
    }

    /// Scans a string with `pos` on its opening quote, leaving `pos` after the closing one.
    #[inline(always)]
    fn scan_string(&mut self) -> Result<(), JsonLineError> {
        let bytes = self.bytes;
        let mut i = self.pos + 1;
        loop {
            while let Some(chunk) = bytes.get(i..i + 8) {
                let word = u64::from_le_bytes(chunk.try_into().expect("8-byte slice"));
                let marks = bytes_needing_attention(word);
                if marks != 0 {
                    i += (marks.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            let Some(&byte) = bytes.get(i) else {
                return Err(JsonLineError::Truncated);
            };
            match byte {
                b'"' => {
                    self.pos = i + 1;
                    return Ok(());
                }
                b'\\' => i = self.escape_end(i)?,
                0x00..=0x1F => {
                    return Err(JsonLineError::Syntax {
                        offset: i,
                        expected: "an escape sequence instead of a raw control byte",
                    })
                }
                0x80..=0xFF => i = utf8_sequence_end(bytes, i)?,
                _ => i += 1,
            }
        }
    }

    /// Index just past the escape sequence whose backslash is at `start`. A `\u` escape of a
    /// high surrogate must be followed at once by one of a low surrogate, and a low surrogate
    /// may not appear on its own: the pair has to decode to one scalar value.
    fn escape_end(&self, start: usize) -> Result<usize, JsonLineError> {
        match self.bytes.get(start + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(start + 2),
            Some(b'u') => match self.hex_code_unit(start + 2)? {
                0xD800..=0xDBFF => {
                    let low_start = start + 6;
                    let expected_low =
                        "a \\u escape of a low surrogate (DC00-DFFF) after a high surrogate";
                    for (k, &want) in b"\\u".iter().enumerate() {
                        match self.bytes.get(low_start + k) {
                            None => return Err(JsonLineError::Truncated),
                            Some(&b) if b == want => {}
                            Some(_) => return Err(self.error_at(low_start + k, expected_low)),
                        }
                    }
                    match self.hex_code_unit(low_start + 2)? {
                        0xDC00..=0xDFFF => Ok(low_start + 6),
                        _ => Err(JsonLineError::Syntax {
                            offset: low_start,
                            expected: expected_low,
                        }),
                    }
                }
                0xDC00..=0xDFFF => Err(JsonLineError::Syntax {
                    offset: start,
                    expected: "a \\u escape that is not a lone low surrogate (DC00-DFFF)",
                }),
                _ => Ok(start + 6),
            },
            _ => Err(self.error_at(start + 1, "an escape: one of \" \\ / b f n r t u")),
        }
    }

    /// The four hex digits at `start`, as a UTF-16 code unit.
    fn hex_code_unit(&self, start: usize) -> Result<u16, JsonLineError> {
        let mut unit = 0u16;
        for offset in start..start + 4 {
            let Some(&byte) = self.bytes.get(offset) else {
                return Err(JsonLineError::Truncated);
            };
            let digit = match byte {
                b'0'..=b'9' => byte - b'0',
                b'a'..=b'f' => byte - b'a' + 10,
                b'A'..=b'F' => byte - b'A' + 10,
                _ => return Err(self.error_at(offset, "a hex digit")),
            };
            unit = unit << 4 | u16::from(digit);
        }
        Ok(unit)
    }

    /// Scans `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?` at `pos`. What follows is left to
    /// the caller, which is how `01` is rejected: the `1` is not a `,` or a closing bracket.
    fn scan_number(&mut self) -> Result<(), JsonLineError> {
        let mut i = self.pos;
        if self.bytes[i] == b'-' {
            i += 1;
        }
        match self.bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i = self.digits_end(i + 1),
            _ => return Err(self.error_at(i, "a digit")),
        }
        if self.bytes.get(i) == Some(&b'.') {
            i = self.required_digits_end(i + 1)?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = self.bytes.get(i) {
                i += 1;
            }
            i = self.required_digits_end(i)?;
        }
        self.pos = i;
        Ok(())
    }

    fn digits_end(&self, start: usize) -> usize {
        self.bytes[start..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(self.bytes.len(), |len| start + len)
    }

    fn required_digits_end(&self, start: usize) -> Result<usize, JsonLineError> {
        match self.bytes.get(start) {
            Some(b'0'..=b'9') => Ok(self.digits_end(start + 1)),
            _ => Err(self.error_at(start, "a digit")),
        }
    }

    fn expect_literal(
        &mut self,
        literal: &'static [u8],
        expected: &'static str,
    ) -> Result<(), JsonLineError> {
        if self.bytes.get(self.pos..self.pos + literal.len()) == Some(literal) {
            self.pos += literal.len();
            return Ok(());
        }
        let mismatch = literal
            .iter()
            .zip(&self.bytes[self.pos..])
            .position(|(want, got)| want != got)
            .map_or(self.bytes.len(), |k| self.pos + k);
        Err(self.error_at(mismatch, expected))
    }
}

#[cfg(test)]
mod tests {
    //! The reference scanner's own tests (tests/protocol/json_line_simd.rs holds the fast kernels'
    //! agreement with it).
    use super::*;
    use std::borrow::Cow;
    use std::path::{Path, PathBuf};

    /// `json_line::to_compact_line` with the reference scanner and compactor.
    fn to_compact_line(input: &[u8]) -> Result<Cow<'_, [u8]>, JsonLineError> {
        match scan(input)? {
            Layout::Compact => Ok(Cow::Borrowed(input)),
            Layout::NeedsCompaction => {
                let mut out = Vec::new();
                compact_into(input, &mut out);
                Ok(Cow::Owned(out))
            }
        }
    }

    fn fixtures_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(fixtures_dir().join(name)).expect("fixture is readable")
    }

    fn accepted(input: &[u8]) -> bool {
        scan(input).is_ok()
    }

    /// `{"k":<value>}`, so value-level edge cases can be checked inside the required object.
    fn in_object(value: &[u8]) -> Vec<u8> {
        [b"{\"k\":".as_slice(), value, b"}"].concat()
    }

    fn in_string(body: &[u8]) -> Vec<u8> {
        in_object(&[b"\"".as_slice(), body, b"\""].concat())
    }

    #[test]
    fn compact_fixtures_are_compact() {
        for name in ["nova-instance-update.json", "small.json", "unicode.json"] {
            let input = fixture(name);
            assert_eq!(scan(&input), Ok(Layout::Compact), "{name}");
            assert!(
                matches!(to_compact_line(&input), Ok(Cow::Borrowed(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn pretty_fixture_compacts_to_the_compact_one() {
        let pretty = fixture("nova-instance-update.pretty.json");
        assert_eq!(scan(&pretty), Ok(Layout::NeedsCompaction));
        let line = to_compact_line(&pretty).unwrap();
        assert_eq!(&*line, fixture("nova-instance-update.json").as_slice());
    }

    #[test]
    fn every_fixture_is_accepted() {
        let mut count = 0;
        for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "json") {
                let input = std::fs::read(&path).unwrap();
                assert!(
                    scan(&input).is_ok(),
                    "{}: {:?}",
                    path.display(),
                    scan(&input)
                );
                count += 1;
            }
        }
        assert!(count >= 4);
    }

    #[test]
    fn every_invalid_fixture_is_rejected() {
        let mut count = 0;
        for entry in std::fs::read_dir(fixtures_dir().join("invalid")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "txt") {
                let input = std::fs::read(&path).unwrap();
                assert!(scan(&input).is_err(), "{} was accepted", path.display());
                count += 1;
            }
        }
        assert!(count >= 11);
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(scan(b""), Err(JsonLineError::Empty));
        assert_eq!(scan(b" \t\r\n "), Err(JsonLineError::Empty));
        assert_eq!(scan(b"[{}]"), Err(JsonLineError::NotAnObject));
        assert_eq!(scan(b" \"s\""), Err(JsonLineError::NotAnObject));
        assert_eq!(scan(b"12"), Err(JsonLineError::NotAnObject));
        assert_eq!(scan(b"null"), Err(JsonLineError::NotAnObject));
        assert_eq!(
            scan(b"x"),
            Err(JsonLineError::Syntax {
                offset: 0,
                expected: "'{'"
            })
        );
        let missing_colon = scan(b"{\"a\" 1}").unwrap_err();
        assert_eq!(
            missing_colon,
            JsonLineError::Syntax {
                offset: 5,
                expected: "':'"
            }
        );
        assert_eq!(
            missing_colon.to_string(),
            "not valid JSON at byte 5: expected ':'"
        );
        assert_eq!(
            scan(b"{\"a\":1 \"b\":2}"),
            Err(JsonLineError::Syntax {
                offset: 7,
                expected: "',' or '}'"
            })
        );
        assert_eq!(
            scan(b"{\"a\":1}x"),
            Err(JsonLineError::Syntax {
                offset: 7,
                expected: "end of input"
            })
        );
        assert_eq!(scan(b"{\"a\":[1,"), Err(JsonLineError::Truncated));
        assert_eq!(scan(b"{\"a\":tru"), Err(JsonLineError::Truncated));
        assert_eq!(scan(b"{\"a\":\"\\u12"), Err(JsonLineError::Truncated));
        assert_eq!(
            scan(b"{\"a\":\"\xff\"}"),
            Err(JsonLineError::NotUtf8 { offset: 6 })
        );
        for error in [
            JsonLineError::Empty,
            JsonLineError::NotUtf8 { offset: 3 },
            JsonLineError::NotAnObject,
            JsonLineError::TooDeep { offset: 9 },
            JsonLineError::Truncated,
        ] {
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn structure() {
        for ok in [
            &b"{}"[..],
            b" {} ",
            b"{\"a\":{},\"b\":[],\"c\":[{}],\"d\":[1,[2,[3]]]}",
            b"{\"a\":1,\"a\":2}",
            b"{\"\":\"\"}",
            b"{\"a\":[true,false,null]}",
        ] {
            assert!(accepted(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"{"[..],
            b"{,}",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{\"a\":1,}",
            b"{\"a\":[1,]}",
            b"{\"a\":[,1]}",
            b"{\"a\":[1 2]}",
            b"{\"a\":1]",
            b"{\"a\":[1}",
            b"{a:1}",
            b"{'a':1}",
            b"{\"a\":1}{}",
            b"{\"a\":1}/*c*/",
            b"{\"a\":1//c\n}",
            b"{\"a\":True}",
            b"{\"a\":nul}",
            b"{\"a\":NaN}",
            b"{\"a\":Infinity}",
            b"{\"a\":1}\x0c",
            b"\xef\xbb\xbf{}",
        ] {
            assert!(!accepted(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn numbers() {
        for ok in [
            "0",
            "-0",
            "1",
            "-1",
            "10",
            "0.5",
            "0.5e-3",
            "1E+2",
            "1e400",
            "-1.25e-400",
            "123456789012345678901234567890",
        ] {
            assert!(accepted(&in_object(ok.as_bytes())), "{ok}");
        }
        for bad in [
            "01", "-01", "1.", ".5", "1e", "1e+", "-", "+1", "1.e3", "0x1", "- 1", "1..2", "1ee2",
            "--1",
        ] {
            assert!(!accepted(&in_object(bad.as_bytes())), "{bad}");
        }
    }

    #[test]
    fn escapes() {
        for ok in [
            r#"\""#,
            r#"\\"#,
            r#"\/"#,
            r#"\b"#,
            r#"\f"#,
            r#"\n"#,
            r#"\r"#,
            r#"\t"#,
            r#"\u0000"#,
            r#"\u00e9"#,
            r#"\uFFFF"#,
            r#"\uD834\uDD1E"#,
            r#"\udbff\udfff"#,
            r#"\\\""#,
            r#"a\\"#,
            r#"\\"#,
        ] {
            assert!(accepted(&in_string(ok.as_bytes())), "{ok}");
        }
        for bad in [
            r#"\a"#,
            r#"\x41"#,
            r#"\'"#,
            r#"\u12"#,
            r#"\u12G4"#,
            r#"\U0041"#,
            r#"\uD800"#,
            r#"\uDC00"#,
            r#"\uDC00\uD800"#,
            r#"\uD800\uD800"#,
            r#"\uD800x"#,
            r#"\uD800\n"#,
            r#"\uD800\u0041"#,
            r#"\"#,
        ] {
            assert!(!accepted(&in_string(bad.as_bytes())), "{bad}");
        }
        // A backslash escaping a backslash must not escape the quote after it.
        assert!(!accepted(b"{\"k\":\"\\\\\"\"}"));
    }

    #[test]
    fn control_bytes_in_strings() {
        for byte in 0x00..0x20u8 {
            assert!(!accepted(&in_string(&[b'a', byte, b'b'])), "{byte:#04x}");
            // Placed after 8 plain bytes so the word-at-a-time path has to find it.
            assert!(!accepted(&in_string(
                &[b"abcdefghij".as_slice(), &[byte]].concat()
            )));
        }
        assert!(accepted(&in_string(b"\x7f")));
        assert!(accepted(&in_string(b"0123456789\x7f0123456789")));
    }

    #[test]
    fn utf8() {
        for ok in [
            "é",
            "€",
            "𝄞",
            "\u{7ff}",
            "\u{800}",
            "\u{d7ff}",
            "\u{e000}",
            "\u{ffff}",
            "\u{10000}",
            "\u{10ffff}",
            "mixed ascii and ünïcödé over more than eight bytes",
        ] {
            assert!(accepted(&in_string(ok.as_bytes())), "{ok}");
        }
        let bad: [&[u8]; 16] = [
            b"\xc0\xaf",         // overlong 2-byte
            b"\xc1\xbf",         // overlong 2-byte
            b"\xe0\x80\xaf",     // overlong 3-byte
            b"\xe0\x9f\xbf",     // overlong 3-byte
            b"\xf0\x80\x80\xaf", // overlong 4-byte
            b"\xf0\x8f\xbf\xbf", // overlong 4-byte
            b"\xed\xa0\x80",     // encoded surrogate U+D800
            b"\xed\xbf\xbf",     // encoded surrogate U+DFFF
            b"\xf4\x90\x80\x80", // U+110000
            b"\xf5\x80\x80\x80", // lead byte beyond U+10FFFF
            b"\xff",
            b"\x80",         // stray continuation byte
            b"a\xbfb",       // stray continuation byte
            b"\xc3",         // truncated before the quote
            b"\xe2\x82",     // truncated before the quote
            b"\xf0\x9f\x98", // truncated before the quote
        ];
        for bytes in bad {
            let input = in_string(bytes);
            assert!(
                matches!(scan(&input), Err(JsonLineError::NotUtf8 { offset: 6.. })),
                "{bytes:x?}"
            );
        }
        for truncated in [
            &b"{\"k\":\"\xc3"[..],
            b"{\"k\":\"\xe2\x82",
            b"{\"k\":\"\xf0\x9f\x98",
        ] {
            assert!(!accepted(truncated));
        }
        // Outside strings, invalid UTF-8 is reported as such.
        assert_eq!(scan(b"{\xff:1}"), Err(JsonLineError::NotUtf8 { offset: 1 }));
        assert_eq!(
            scan(b"{\"a\":1}\xc3"),
            Err(JsonLineError::NotUtf8 { offset: 7 })
        );
        assert_eq!(
            scan(b"\xed\xa0\x80"),
            Err(JsonLineError::NotUtf8 { offset: 0 })
        );
        assert!(matches!(
            scan("{\"a\":é}".as_bytes()),
            Err(JsonLineError::Syntax { offset: 5, .. })
        ));
    }

    fn nested(depth: usize, open: &str, close: &str) -> Vec<u8> {
        // The top-level object is level 1; `depth - 1` containers go inside it.
        let inner = depth - 1;
        format!("{{\"k\":{}0{}}}", open.repeat(inner), close.repeat(inner)).into_bytes()
    }

    #[test]
    fn depth_limit() {
        for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
            assert!(accepted(&nested(MAX_DEPTH, open, close)), "{open}");
            let too_deep = nested(MAX_DEPTH + 1, open, close);
            assert!(
                matches!(scan(&too_deep), Err(JsonLineError::TooDeep { .. })),
                "{open}"
            );
        }
        // Siblings do not add up: depth is about nesting only.
        let wide = format!("{{\"k\":[{}]}}", vec!["[[[]]]"; 1000].join(","));
        assert!(accepted(wide.as_bytes()));
        // The bit stack must forget an array level when an object reuses it.
        let reuse = format!(
            "{{\"a\":{}1{},\"b\":{{\"c\":1}}}}",
            "[".repeat(50),
            "]".repeat(50)
        );
        assert!(accepted(reuse.as_bytes()));
        assert!(!accepted(b"{\"a\":[{\"b\":1]}"));
    }

    #[test]
    fn compaction_keeps_strings_intact() {
        let input = b" {\n \"a b\" : \"x \\\" \\\\\" ,\t\"c\":[ 1 , \"\\\\\" , {} ],\"d\":\" \\n\\t \"\r\n} \n";
        assert_eq!(scan(input), Ok(Layout::NeedsCompaction));
        assert_eq!(
            &*to_compact_line(input).unwrap(),
            b"{\"a b\":\"x \\\" \\\\\",\"c\":[1,\"\\\\\",{}],\"d\":\" \\n\\t \"}"
        );
        for layout_case in [&b" {}"[..], b"{} ", b"{\"a\" :1}", b"{\"a\":[1 ]}", b"{\n}"] {
            assert_eq!(scan(layout_case), Ok(Layout::NeedsCompaction));
        }
        assert_eq!(scan(b"{\"a b\":\" \"}"), Ok(Layout::Compact));
    }

    #[test]
    fn compact_into_never_panics_on_garbage() {
        let mut out = Vec::new();
        for input in [&b"\""[..], b"\"\\", b"\\\"", b"{\"a\\", b" \" \\\" "] {
            compact_into(input, &mut out);
        }
    }

    #[test]
    fn next_quote_or_backslash_finds_the_first_one_at_every_alignment() {
        for len in 0..40 {
            for special_at in 0..=len {
                for special in [b'"', b'\\'] {
                    let mut bytes = vec![b'a'; len];
                    if special_at < len {
                        bytes[special_at] = special;
                        // A second one later must not be found first.
                        if special_at + 3 < len {
                            bytes[special_at + 3] = b'"';
                        }
                    }
                    for from in 0..=len + 2 {
                        let expected = if from <= special_at && special_at < len {
                            special_at
                        } else {
                            bytes
                                .get(from..)
                                .and_then(|r| r.iter().position(|&b| b == b'"' || b == b'\\'))
                                .map_or(len, |i| from + i)
                        };
                        assert_eq!(
                            next_quote_or_backslash(&bytes, from),
                            expected,
                            "len {len} at {special_at} from {from}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn swar_marks_the_first_special_byte_exactly() {
        let specials = [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff];
        for &special in &specials {
            for position in 0..8 {
                let mut word = *b"abcdefgh";
                word[position] = special;
                // A special byte later in the word must not disturb the first.
                if position < 7 {
                    word[7] = 0x00;
                }
                let marks = bytes_needing_attention(u64::from_le_bytes(word));
                assert_eq!(
                    marks.trailing_zeros() / 8,
                    position as u32,
                    "{special:#x} at {position}"
                );
            }
        }
        assert_eq!(
            bytes_needing_attention(u64::from_le_bytes(*b" ~!#[]\x7f/")),
            0
        );
    }

    /// Run by hand: `cargo test --release --lib -- --ignored --nocapture scan_speed_report`.
    #[test]
    #[ignore = "timing report, run by hand in release mode"]
    fn scan_speed_report() {
        use std::hint::black_box;
        use std::time::Instant;
        let input = fixture("nova-instance-update.json");
        let iterations = 1_000_000;
        let time = |label: &str, f: &dyn Fn(&[u8]) -> bool| {
            let start = Instant::now();
            for _ in 0..iterations {
                assert!(f(black_box(&input)));
            }
            let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
            println!("{label}: {ns:.1} ns/call for {} bytes", input.len());
        };
        time("json_line::scan", &|b| scan(b).is_ok());
        time("std::str::from_utf8", &|b| std::str::from_utf8(b).is_ok());
        time("serde_json::from_slice::<Value>", &|b| {
            serde_json::from_slice::<serde_json::Value>(b).is_ok()
        });
    }
}
