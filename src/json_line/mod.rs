//! Checks that a message is exactly one JSON object and turns it into one compact line.
//!
//! Every message a caller emits goes through [`scan`] on the caller's thread, so this is a
//! dedicated validator rather than a parser building a tree, and it never allocates. It has
//! two implementations of one contract (one object, RFC 8259 strict, UTF-8 valid everywhere
//! including strings, `\u` escapes and surrogate pairs checked, nesting at most
//! [`MAX_DEPTH`], "compact or not" reported):
//!
//! - a simdjson-style fast path on x86-64 (the kernel is chosen once, at the first call):
//!   stage 1 (`stage1.rs`) classifies 64-byte blocks with AVX2 (`stage1_avx2.rs`) or SSE2
//!   (`stage1_sse2.rs`) into bit masks (quotes, backslashes, operators, whitespace,
//!   control and non-ASCII bytes), finds the escaped bytes and the string extents, checks
//!   UTF-8 and escapes, and writes out the positions of the structural bytes; stage 2
//!   (`stage2.rs`) walks those positions through the grammar. The positions live in a
//!   bounded buffer on the stack (stage 1 fills it a window of blocks at a time) and the
//!   nesting stack is 128 bytes: nothing is allocated. Compaction (`compact.rs`) leaves
//!   out the whitespace outside strings that stage 1 finds;
//! - the scalar reference scanner (`reference.rs`), which defined the contract. It runs on
//!   other machines, and whenever the fast path rejects an input, to produce the exact
//!   error (offset and what was expected): the fast path only says "valid, compact or not"
//!   or "not valid", and its rejection is never reported without the reference's (were
//!   the fast path ever to reject a valid input, the reference would accept it).
//!
//! `NOTIF_SIMD=avx2|sse2|scalar` in the environment (read once) forces a kernel, for tests
//! and CI; a kernel the CPU lacks falls back to the best one it has.

use std::borrow::Cow;
use std::fmt;

// The fast path exists on x86-64 only; elsewhere the reference scanner does everything.
#[cfg(target_arch = "x86_64")]
mod compact;
mod reference;
#[cfg(target_arch = "x86_64")]
mod stage1;
#[cfg(target_arch = "x86_64")]
mod stage1_avx2;
#[cfg(target_arch = "x86_64")]
mod stage1_sse2;
#[cfg(target_arch = "x86_64")]
mod stage2;

pub(crate) use reference::next_quote_or_backslash;

/// Why an input is not exactly one JSON object. `offset` is the byte offset where the problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonLineError {
    /// Nothing but whitespace.
    Empty,
    /// The bytes at `offset` are not valid UTF-8.
    NotUtf8 { offset: usize },
    /// The top-level value starts like an array, string, number or literal instead of an object.
    NotAnObject,
    /// The byte at `offset` cannot appear there; `expected` says what could.
    Syntax {
        offset: usize,
        expected: &'static str,
    },
    /// The object or array opened at `offset` nests deeper than [`MAX_DEPTH`].
    TooDeep { offset: usize },
    /// The input ended inside the object.
    Truncated,
}

impl fmt::Display for JsonLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            JsonLineError::Empty => {
                f.write_str("empty message: expected one JSON object, got only whitespace")
            }
            JsonLineError::NotUtf8 { offset } => write!(f, "not valid UTF-8 at byte {offset}"),
            JsonLineError::NotAnObject => f.write_str(
                "not a JSON object: a message must be one object {...}, \
                 not an array, string, number, true, false or null",
            ),
            JsonLineError::Syntax { offset, expected } => {
                write!(f, "not valid JSON at byte {offset}: expected {expected}")
            }
            JsonLineError::TooDeep { offset } => write!(
                f,
                "JSON nested too deeply at byte {offset}: \
                 at most {MAX_DEPTH} levels of objects and arrays are allowed"
            ),
            JsonLineError::Truncated => {
                f.write_str("truncated JSON: the input ended before the object was complete")
            }
        }
    }
}

impl std::error::Error for JsonLineError {}

/// The deepest nesting of objects and arrays accepted, the top-level object counting as one.
///
/// serde_json documents a recursion limit of 128, but its counter rejects the 128th level
/// (it decrements before checking for zero), so the deepest document it accepts nests 127
/// levels. This is that number, so that a message we accept is one serde_json can read.
pub const MAX_DEPTH: usize = 127;

/// Whether a valid input can be sent byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// No whitespace outside strings: the input is its own compact form.
    Compact,
    /// Valid, but whitespace outside strings has to be removed first.
    NeedsCompaction,
}

/// Checks that `input` is exactly one JSON object, optionally surrounded by whitespace (space, \t, \n, \r).
/// Compact means: no whitespace byte outside strings anywhere (leading/trailing included), so the input is already its own compact form.
///
/// Runs the fast kernel when the CPU has one; when it rejects (or there is none), the
/// reference scanner gives the verdict and the error.
///
/// # Errors
/// The first problem found, scanning from the start; see [`JsonLineError`].
#[inline]
pub fn scan(input: &[u8]) -> Result<Layout, JsonLineError> {
    match validate_with(kernel(), input) {
        Some(layout) => Ok(layout),
        None => reference::scan(input),
    }
}

/// Appends the compact form of `input` (whitespace outside strings removed) to `out`.
///
/// Precondition: `scan(input)` returned `Ok`. On any other input this still returns without
/// panicking and appends at most `input.len()` bytes, but what it appends is unspecified.
#[inline]
pub fn compact_into(input: &[u8], out: &mut Vec<u8>) {
    compact_with(kernel(), input, out);
}

/// Convenience: scan, then return `Cow::Borrowed(input)` when compact or `Cow::Owned(compacted)` otherwise.
///
/// # Errors
/// Whatever [`scan`] reports.
pub fn to_compact_line(input: &[u8]) -> Result<Cow<'_, [u8]>, JsonLineError> {
    match scan(input)? {
        Layout::Compact => Ok(Cow::Borrowed(input)),
        Layout::NeedsCompaction => {
            let mut out = Vec::with_capacity(input.len());
            compact_into(input, &mut out);
            Ok(Cow::Owned(out))
        }
    }
}

/// An implementation of the validator. Test and measurement hook: not part of the API.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Stage 1 with AVX2 (and PCLMULQDQ, BMI1, POPCNT), x86-64 only.
    Avx2,
    /// Stage 1 with SSE2, which every x86-64 CPU has.
    Sse2,
    /// The scalar reference scanner.
    Reference,
}

impl Kernel {
    /// The kernel's name, as `NOTIF_SIMD` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx2 => "avx2",
            Kernel::Sse2 => "sse2",
            Kernel::Reference => "scalar",
        }
    }

    /// Whether this CPU can run it.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => stage1_avx2::is_available(),
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => true,
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::Sse2 => false,
            Kernel::Reference => true,
        }
    }
}

/// Every kernel this CPU can run, fastest first (the reference last). Test hook.
#[doc(hidden)]
pub fn available_kernels() -> Vec<Kernel> {
    [Kernel::Avx2, Kernel::Sse2, Kernel::Reference]
        .into_iter()
        .filter(|k| k.is_available())
        .collect()
}

/// The kernel [`scan`] and [`compact_into`] use: the best one available, unless `NOTIF_SIMD`
/// named another that is available. Decided at the first call, then one relaxed load.
#[doc(hidden)]
#[inline]
pub fn kernel() -> Kernel {
    use std::sync::atomic::{AtomicU8, Ordering};
    static CHOSEN: AtomicU8 = AtomicU8::new(0);
    match CHOSEN.load(Ordering::Relaxed) {
        1 => Kernel::Avx2,
        2 => Kernel::Sse2,
        3 => Kernel::Reference,
        _ => {
            let chosen = choose_kernel(std::env::var("NOTIF_SIMD").ok().as_deref());
            let code = match chosen {
                Kernel::Avx2 => 1,
                Kernel::Sse2 => 2,
                Kernel::Reference => 3,
            };
            // Every thread that races here computes the same answer.
            CHOSEN.store(code, Ordering::Relaxed);
            chosen
        }
    }
}

/// The kernel for a `NOTIF_SIMD` value: the named one if the CPU has it, else the best.
#[cold]
fn choose_kernel(forced: Option<&str>) -> Kernel {
    let best = available_kernels()[0];
    let wanted = match forced.map(str::trim) {
        Some("avx2") => Kernel::Avx2,
        Some("sse2") => Kernel::Sse2,
        Some("scalar" | "reference") => Kernel::Reference,
        _ => best,
    };
    if wanted.is_available() {
        wanted
    } else {
        best
    }
}

/// The fast path's own verdict with `kernel`: `Some(layout)` when the input is valid, `None`
/// when not (the reference then says why). `Kernel::Reference`, and a kernel the CPU lacks,
/// give the reference's verdict. Test hook: compare kernels with it.
#[doc(hidden)]
#[inline]
pub fn validate_with(kernel: Kernel, input: &[u8]) -> Option<Layout> {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if stage1_avx2::is_available() => {
            // SAFETY: is_available() checked that the CPU has every feature the AVX2
            // kernel is compiled for.
            unsafe { stage1_avx2::validate(input) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Sse2 => stage1_sse2::validate(input),
        _ => reference::scan(input).ok(),
    }
}

/// [`compact_into`] with `kernel`. Test hook.
#[doc(hidden)]
#[inline]
pub fn compact_with(kernel: Kernel, input: &[u8], out: &mut Vec<u8>) {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if stage1_avx2::is_available() => {
            // SAFETY: as in validate_with.
            unsafe { stage1_avx2::compact_into(input, out) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Sse2 => stage1_sse2::compact_into(input, out),
        _ => reference::compact_into(input, out),
    }
}

/// The reference scanner's verdict and error, whatever the kernel. Test hook.
#[doc(hidden)]
pub fn scan_reference(input: &[u8]) -> Result<Layout, JsonLineError> {
    reference::scan(input)
}

/// The reference compactor. Test hook.
#[doc(hidden)]
pub fn compact_reference(input: &[u8], out: &mut Vec<u8>) {
    reference::compact_into(input, out)
}

#[cfg(test)]
mod tests {
    //! The fast kernels on a few inputs, small enough for Miri (`make miri`), which checks the
    //! unsafe code they run: the uninitialised index, the unchecked reads of stage 2, the
    //! padded tail, and compaction's writes into spare capacity. (Miri sees no AVX2, so it
    //! covers the SSE2 kernel; tests/protocol/json_line_simd.rs checks every kernel at length.)
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        std::fs::read(dir.join(name)).expect("fixture is readable")
    }

    fn agree(input: &[u8]) {
        let reference = reference::scan(input);
        assert_eq!(scan(input), reference, "{}", input.escape_ascii());
        let mut expected = Vec::new();
        reference::compact_into(input, &mut expected);
        for kernel in available_kernels() {
            assert_eq!(
                validate_with(kernel, input),
                reference.ok(),
                "{kernel:?} on {}",
                input.escape_ascii()
            );
            let mut line = b"prefix".to_vec();
            compact_with(kernel, input, &mut line);
            if reference.is_ok() {
                assert_eq!(&line[6..], &expected[..], "{kernel:?} compacting");
            }
        }
    }

    #[test]
    fn kernels_agree_on_the_fixtures() {
        for name in [
            "nova-instance-update.json",
            "nova-instance-update.pretty.json",
            "small.json",
            "unicode.json",
        ] {
            agree(&fixture(name));
        }
    }

    #[test]
    fn kernels_agree_on_edge_cases() {
        let long_key = format!("{{\"{}\":1}}", "k".repeat(60));
        for input in [
            &b""[..],
            b" ",
            b"{}",
            b" {} ",
            b"{",
            b"[]",
            b"{\"a\":[1,{\"b\":null}],\"c\":\"\\u00e9\\uD834\\uDD1E\\\\\"}",
            b"{\"a\":\"\\uDD1E\"}",
            b"{\"a\":\"\xed\xa0\x80\"}",
            b"{\"a\":1e400,\"b\":-0.5E-3,\"c\":true,\"d\":false}",
            b"{\"a\":01}",
            b"{\"a\":tru}",
            b"{\"a\":\"\t\"}",
            b"{\"a\" : [ 1 , 2 ] }\n",
            long_key.as_bytes(),
        ] {
            agree(input);
        }
    }

    #[test]
    fn kernel_names_round_trip_through_notif_simd() {
        for kernel in available_kernels() {
            assert_eq!(choose_kernel(Some(kernel.name())), kernel);
        }
        assert_eq!(choose_kernel(Some("bogus")), available_kernels()[0]);
        assert_eq!(choose_kernel(None), available_kernels()[0]);
    }
}
