//! Every fast kernel this CPU has (AVX2, SSE2) must give exactly the reference scanner's
//! verdict (valid or not, compact or not) and its compaction, on JSONTestSuite's files (as is,
//! wrapped in an object, truncated, mutated), on the fixtures, on generated documents, and
//! on tokens placed across every 64-byte block boundary. `json_line::scan` itself must give
//! the reference's exact result (errors included) whatever the kernel.
//!
//! The kernels are forced in turn through `json_line::validate_with`; `NOTIF_SIMD` forces the
//! one `scan` uses (checked in a child process below).

use notif::json_line::{
    available_kernels, compact_reference, compact_with, scan, scan_reference, validate_with,
    Kernel, Layout,
};
use std::path::Path;

use crate::common::{json_fixtures, libtest_name, Rng};

fn fast_kernels() -> Vec<Kernel> {
    available_kernels()
        .into_iter()
        .filter(|&k| k != Kernel::Reference)
        .collect()
}

/// Checks every fast kernel against the reference on `input`; returns whether it is valid.
fn check(input: &[u8], origin: &dyn Fn() -> String) -> bool {
    let reference = scan_reference(input);
    assert_eq!(scan(input), reference, "scan vs reference on {}", origin());
    let mut reference_line = Vec::new();
    if reference == Ok(Layout::NeedsCompaction) {
        compact_reference(input, &mut reference_line);
    }
    for kernel in fast_kernels() {
        let verdict = validate_with(kernel, input);
        assert_eq!(
            verdict,
            reference.ok(),
            "{kernel:?} disagrees with the reference ({reference:?}) on {}: {}",
            origin(),
            input.escape_ascii()
        );
        let mut line = b"prefix".to_vec();
        compact_with(kernel, input, &mut line);
        assert!(line.len() <= input.len() + 6, "{kernel:?} compaction grew");
        match reference {
            Ok(Layout::Compact) => assert_eq!(&line[6..], input, "{kernel:?} on {}", origin()),
            Ok(Layout::NeedsCompaction) => assert_eq!(
                line[6..].escape_ascii().to_string(),
                reference_line.escape_ascii().to_string(),
                "{kernel:?} compaction of {}",
                origin()
            ),
            Err(_) => {}
        }
    }
    reference.is_ok()
}

fn suite() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/JSONTestSuite");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/fixtures/JSONTestSuite")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn wrap(value: &[u8]) -> Vec<u8> {
    [b"{\"k\":".as_slice(), value, b"}"].concat()
}

/// The lengths to truncate at: all of them for small inputs; for the two huge files (100 KB
/// and 250 KB of brackets) the first 300, 30 spread over the rest and the last 3.
fn truncation_lengths(len: usize) -> Vec<usize> {
    if len <= 4096 {
        (0..=len).collect()
    } else {
        (0..300)
            .chain((1..30).map(|k| 300 + (len - 300) * k / 30))
            .chain(len - 3..=len)
            .collect()
    }
}

const MUTATION_BYTES: &[u8] = &[
    b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b' ', b'\n', b'\t', 0x00, 0x0C, 0x1A, 0x1F,
    0x7F, 0x80, 0xBF, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xFF, b'u', b'e', b'-', b'.', b'0', b'a',
];

#[test]
fn the_fast_kernels_this_cpu_has_are_tested() {
    let kernels = fast_kernels();
    #[cfg(target_arch = "x86_64")]
    {
        assert!(kernels.contains(&Kernel::Sse2));
        assert_eq!(
            kernels.contains(&Kernel::Avx2),
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("pclmulqdq"),
        );
    }
    println!("fast kernels: {kernels:?}");
}

#[test]
fn json_test_suite_as_is_and_wrapped() {
    let (mut count, mut valid) = (0, 0);
    for (name, bytes) in suite() {
        valid += usize::from(check(&bytes, &|| name.clone()));
        valid += usize::from(check(&wrap(&bytes), &|| format!("{{\"k\":{name}}}")));
        // Pretty forms of the wrapped file: whitespace before and after.
        let spaced = [b"\n{ \"k\" :\t".as_slice(), &bytes, b" }\r\n"].concat();
        valid += usize::from(check(&spaced, &|| format!("spaced {name}")));
        count += 3;
    }
    println!("{count} inputs, {valid} valid");
    assert!(count >= 900, "JSONTestSuite has 318 files");
    assert!(valid >= 200);
}

#[test]
fn json_test_suite_truncated() {
    let mut count = 0;
    for (name, bytes) in suite() {
        let wrapped = wrap(&bytes);
        for input in [&bytes, &wrapped] {
            for end in truncation_lengths(input.len()) {
                check(&input[..end], &|| format!("{name} cut at {end}"));
                count += 1;
            }
        }
    }
    println!("{count} truncations agree");
}

#[test]
fn json_test_suite_mutated() {
    let mut count = 0;
    for (name, bytes) in suite() {
        let wrapped = wrap(&bytes);
        if wrapped.len() > 4096 {
            continue; // the huge bracket files: covered by the truncations
        }
        for at in 0..wrapped.len() {
            for &byte in MUTATION_BYTES {
                if wrapped[at] == byte {
                    continue;
                }
                let mut mutant = wrapped.clone();
                mutant[at] = byte;
                check(&mutant, &|| {
                    format!("{name} wrapped, byte {at} = {byte:#04x}")
                });
                count += 1;
            }
            let mut deleted = wrapped.clone();
            deleted.remove(at);
            check(&deleted, &|| format!("{name} wrapped, byte {at} deleted"));
            count += 1;
        }
    }
    println!("{count} mutations agree");
    assert!(count >= 100_000);
}

#[test]
fn fixtures_truncated_and_mutated() {
    let mut rng = Rng(0x005E_ED0F_514D);
    let mut count = 0;
    for (name, bytes) in json_fixtures() {
        for end in 0..=bytes.len() {
            check(&bytes[..end], &|| format!("{name} cut at {end}"));
            count += 1;
        }
        for at in 0..bytes.len() {
            for _ in 0..4 {
                let byte = *rng.pick(MUTATION_BYTES);
                let mut mutant = bytes.clone();
                mutant[at] = byte;
                check(&mutant, &|| format!("{name}, byte {at} = {byte:#04x}"));
                count += 1;
            }
        }
    }
    println!("{count} inputs agree");
}

/// Tokens that carry state from one block to the next (escapes, strings, UTF-8 sequences,
/// numbers, literals), placed at every offset around the first two block boundaries.
#[test]
fn tokens_across_block_boundaries() {
    let tokens: &[&[u8]] = &[
        b"\"a\\\\\"",
        b"\"\\\\\\\"\"",
        b"\"\\\\\\\\\\\\\\\\\"",
        b"\"\\\"\"",
        b"\"\\u00e9\"",
        b"\"\\uD834\\uDD1E\"",
        b"\"\\uD834\\u0041\"",
        b"\"\\uDD1E\"",
        b"\"\\uD834\"",
        b"\"\\u12G4\"",
        b"\"\\x\"",
        "\"é€𝄞\"".as_bytes(),
        b"\"\xe2\x82\"",
        b"\"\xf0\x9f\x98\x80\xf0\x9f\x98\"",
        b"\"\xed\xa0\x80\"",
        b"\"\xc0\xaf\"",
        b"\"tab\there\"",
        b"-12.5e+30",
        b"1e400",
        b"01",
        b"1.",
        b"truex",
        b"true",
        b"nul",
        b"[[[]],{}]",
        b"{\"a\":[1,2,{\"b\":null}]}",
        b"[1 2]",
        b"\"a\" \"b\"",
        b"\"\\\\",
    ];
    let mut count = 0;
    for token in tokens {
        for pad in 0..140 {
            // Padding inside a key (a string body) and as whitespace.
            let in_key = [b"{\"".as_slice(), &vec![b'p'; pad], b"\":", token, b"}"].concat();
            check(&in_key, &|| {
                format!("token {} after a {pad}-byte key", token.escape_ascii())
            });
            let spaced = [b"{\"k\":".as_slice(), &vec![b' '; pad], token, b"}"].concat();
            check(&spaced, &|| {
                format!("token {} after {pad} spaces", token.escape_ascii())
            });
            // The token at the very end, truncated at every length.
            for end in 0..in_key.len().min(pad + 4 + token.len()) {
                check(&in_key[..end], &|| {
                    format!("{} cut at {end}", in_key.escape_ascii())
                });
            }
            count += 2;
        }
    }
    println!("{count} placements agree");
}

/// Every two-byte sequence and a spread of three- and four-byte ones inside a string, at
/// offsets that put them across a block boundary, against the reference's UTF-8 rules.
#[test]
fn utf8_sequences_across_block_boundaries() {
    let mut count = 0;
    let probe = |bytes: &[u8], count: &mut usize| {
        // The string's body starts at byte 6: these put the sequence inside the first
        // block, then across the boundary after its first 3, 2 and 1 bytes, then just after.
        for pad in [0usize, 55, 56, 57, 58] {
            let input = [b"{\"k\":\"".as_slice(), &vec![b'x'; pad], bytes, b"\"}"].concat();
            check(&input, &|| format!("{bytes:x?} after {pad} bytes"));
            *count += 1;
        }
    };
    for a in 0x80..=0xFFu8 {
        for b in 0..=0xFFu8 {
            if b != b'"' && b != b'\\' && b >= 0x20 {
                probe(&[a, b], &mut count);
            }
        }
    }
    for a in [
        0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF,
    ] {
        for b in (0x70..=0xFFu8).step_by(3) {
            for c in [0x41, 0x7F, 0x80, 0x9F, 0xA0, 0xBF, 0xC0] {
                probe(&[a, b, c], &mut count);
                probe(&[a, b, c, 0x80], &mut count);
                probe(&[a, b, c, 0xBF, b'a'], &mut count);
            }
        }
    }
    println!("{count} UTF-8 probes agree");
}

fn generated(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
    const STRINGS: &[&str] = &[
        "\"\"",
        "\"a\"",
        "\"plain ascii text that is long enough to cross a block or two of sixty-four bytes\"",
        "\"\\\\\"",
        "\"\\\"\"",
        "\"\\\\\\\"\\\\\"",
        "\"\\u00e9\\uD834\\uDD1E\\n\\t\\/\"",
        "\"é€𝄞 ünïcödé\"",
        "\"{[:,]}\"",
        "\" spaces \"",
    ];
    let ws = |rng: &mut Rng, out: &mut Vec<u8>| {
        if rng.below(3) == 0 {
            for _ in 0..rng.below(6) {
                out.push(*rng.pick(b" \t\n\r"));
            }
        }
    };
    match rng.below(if depth > 20 { 3 } else { 6 }) {
        0 => out.extend_from_slice(rng.pick(STRINGS).as_bytes()),
        1 => out.extend_from_slice(
            rng.pick(&[
                "0",
                "-1",
                "12.5e-3",
                "1e400",
                "123456789012345678901234567890",
            ])
            .as_bytes(),
        ),
        2 => out.extend_from_slice(rng.pick(&["true", "false", "null"]).as_bytes()),
        3 | 4 => {
            out.push(b'{');
            for i in 0..rng.below(5) {
                if i > 0 {
                    out.push(b',');
                }
                ws(rng, out);
                out.extend_from_slice(rng.pick(STRINGS).as_bytes());
                ws(rng, out);
                out.push(b':');
                ws(rng, out);
                generated(rng, depth + 1, out);
                ws(rng, out);
            }
            out.push(b'}');
        }
        _ => {
            out.push(b'[');
            for i in 0..rng.below(5) {
                if i > 0 {
                    out.push(b',');
                }
                ws(rng, out);
                generated(rng, depth + 1, out);
                ws(rng, out);
            }
            out.push(b']');
        }
    }
}

#[test]
fn generated_documents_and_their_mutations() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut count, mut valid) = (0, 0);
    for n in 0..6_000 {
        let mut doc = b"{\"k\":".to_vec();
        generated(&mut rng, 1, &mut doc);
        doc.push(b'}');
        valid += usize::from(check(&doc, &|| format!("document {n}")));
        count += 1;
        for m in 0..8 {
            let mut mutant = doc.clone();
            let at = rng.below(mutant.len());
            mutant[at] = *rng.pick(MUTATION_BYTES);
            valid += usize::from(check(&mutant, &|| format!("mutation {m} of document {n}")));
            count += 1;
        }
    }
    println!("{count} inputs, {valid} valid");
    assert!(valid > count / 10 && valid < count * 9 / 10);
}

#[test]
fn the_depth_limit_at_block_boundaries() {
    for depth in [126usize, 127, 128, 129] {
        for pad in [0usize, 1, 63, 64] {
            let arrays = format!(
                "{{\"{}\":{}{}}}",
                "p".repeat(pad),
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            );
            check(arrays.as_bytes(), &|| {
                format!("{depth} levels of arrays, pad {pad}")
            });
            let objects = format!("{}1{}", "{\"k\":".repeat(depth), "}".repeat(depth));
            check(objects.as_bytes(), &|| format!("{depth} levels of objects"));
        }
    }
}

/// A long document: several windows of structural positions (stage 2 resumes between them).
#[test]
fn long_documents_span_several_windows() {
    let items: Vec<String> = (0..3000)
        .map(|i| format!("[{i},{{\"a\":\"b\"}}]"))
        .collect();
    let doc = format!("{{\"k\":[{}]}}", items.join(","));
    assert!(check(doc.as_bytes(), &|| "3000 items".into()));
    let pretty = format!("{{ \"k\" : [ {} ] }}", items.join(" ,\n "));
    assert!(check(pretty.as_bytes(), &|| "3000 items, pretty".into()));
    let broken = doc.replacen("[2999,", "[2999,,", 1);
    assert!(!check(broken.as_bytes(), &|| {
        "3000 items, broken at the end".into()
    }));
    // Shifted by one structural at a time, so that every place in the grammar (after a
    // key, a colon, a comma, an opening or closing bracket) falls on a window's end.
    let members: Vec<String> = (0..400)
        .map(|i| format!("\"m{i}\":{{\"a\":[1,{{\"b\":\"c\"}},[]],\"d\":{{}}}}"))
        .collect();
    for shift in 0..16 {
        let doc = format!(
            "{{\"pad\":[{}],{}}}",
            vec!["0"; shift].join(","),
            members.join(",")
        );
        assert!(check(doc.as_bytes(), &|| format!(
            "members shifted by {shift}"
        )));
        let broken = doc.replace("\"d\":{}}", "\"d\":{}]");
        assert!(!check(broken.as_bytes(), &|| format!(
            "broken, shifted by {shift}"
        )));
    }
}

/// `NOTIF_SIMD` forces the kernel `scan` uses: a child process of this test binary runs
/// `reports_the_kernel_in_use` with each value and prints what it got.
#[test]
fn notif_simd_forces_the_kernel() {
    let exe = std::env::current_exe().unwrap();
    for (value, expected) in [
        ("sse2", Kernel::Sse2),
        ("scalar", Kernel::Reference),
        ("avx2", Kernel::Avx2),
        ("nonsense", available_kernels()[0]),
    ] {
        let expected = if expected.is_available() {
            expected
        } else {
            available_kernels()[0]
        };
        let output = std::process::Command::new(&exe)
            .args([
                "--exact",
                libtest_name(concat!(module_path!(), "::reports_the_kernel_in_use")),
                "--nocapture",
                "--include-ignored",
            ])
            .env("NOTIF_SIMD", value)
            .env("NOTIF_SIMD_TEST_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}");
        assert!(
            stdout.contains(&format!("kernel in use: {}", expected.name())),
            "NOTIF_SIMD={value}: {stdout}"
        );
    }
}

#[test]
#[ignore = "run by notif_simd_forces_the_kernel in a child process"]
fn reports_the_kernel_in_use() {
    if std::env::var_os("NOTIF_SIMD_TEST_CHILD").is_none() {
        return;
    }
    let nova = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nova-instance-update.json"),
    )
    .unwrap();
    assert_eq!(scan(&nova), Ok(Layout::Compact));
    println!("kernel in use: {}", notif::json_line::kernel().name());
}
