//! Stage 1 with SSE2 only, which every x86-64 CPU has: the fallback when AVX2 (or
//! PCLMULQDQ) is missing. A 64-byte block is four 16-byte vectors classified by comparisons
//! (SSE2 has no byte shuffle to look up with), the prefix XOR is six shifts, and UTF-8 is
//! left to `std::str::from_utf8` over the whole input, once, when some block had a byte from
//! 0x80 (none of notif's usual messages has one).

use super::compact;
use super::stage1::{self, Masks, Simd};
use super::Layout;
use std::arch::x86_64::*;

pub(super) fn validate(input: &[u8]) -> Option<Layout> {
    // SAFETY: SSE2 is part of x86-64, so every x86-64 CPU has Sse2's features.
    unsafe { stage1::validate::<Sse2>(input) }
}

pub(super) fn compact_into(input: &[u8], out: &mut Vec<u8>) {
    // SAFETY: as in validate.
    unsafe { compact::compact_into::<Sse2>(input, out) }
}

pub(super) struct Sse2;

/// Whether some block had a byte from 0x80.
#[derive(Default)]
pub(super) struct SawNonAscii(bool);

#[inline(always)]
fn mask64(v: [__m128i; 4]) -> u64 {
    // SAFETY: SSE2 is part of x86-64; movemask only reads a register.
    unsafe {
        u64::from(_mm_movemask_epi8(v[0]) as u16)
            | u64::from(_mm_movemask_epi8(v[1]) as u16) << 16
            | u64::from(_mm_movemask_epi8(v[2]) as u16) << 32
            | u64::from(_mm_movemask_epi8(v[3]) as u16) << 48
    }
}

#[inline(always)]
fn each(v: &[__m128i; 4], f: impl Fn(__m128i) -> __m128i) -> [__m128i; 4] {
    [f(v[0]), f(v[1]), f(v[2]), f(v[3])]
}

impl Simd for Sse2 {
    type Utf8 = SawNonAscii;

    #[inline(always)]
    unsafe fn classify(block: *const u8) -> Masks {
        // SAFETY (for the whole function): 64 readable bytes at block, from the caller; the
        // loads are unaligned; SSE2 is part of x86-64 (so the closures, which do not inherit
        // target features, need none).
        unsafe {
            let v = [
                _mm_loadu_si128(block.cast()),
                _mm_loadu_si128(block.add(16).cast()),
                _mm_loadu_si128(block.add(32).cast()),
                _mm_loadu_si128(block.add(48).cast()),
            ];
            let splat = |b: u8| _mm_set1_epi8(b as i8);
            let eq = |x, b: u8| _mm_cmpeq_epi8(x, splat(b));
            let backslash = each(&v, |x| eq(x, b'\\'));
            // Signed: bytes below 0x20 and bytes from 0x80 (negative).
            let below_x20 = each(&v, |x| _mm_cmpgt_epi8(splat(0x20), x));
            // Most blocks of a compact message have no backslash, control or non-ASCII byte:
            // one test instead of three masks.
            let rare = _mm_or_si128(
                _mm_or_si128(
                    _mm_or_si128(backslash[0], backslash[1]),
                    _mm_or_si128(backslash[2], backslash[3]),
                ),
                _mm_or_si128(
                    _mm_or_si128(below_x20[0], below_x20[1]),
                    _mm_or_si128(below_x20[2], below_x20[3]),
                ),
            );
            let (backslash, control, non_ascii) = if _mm_movemask_epi8(rare) == 0 {
                (0, 0, 0)
            } else {
                let non_ascii = mask64(v);
                (mask64(backslash), mask64(below_x20) & !non_ascii, non_ascii)
            };
            Masks {
                quote: mask64(each(&v, |x| eq(x, b'"'))),
                backslash,
                // `x | 0x20` is `{` for `[` and `{`, `}` for `]` and `}`.
                op: mask64(each(&v, |x| {
                    let folded = _mm_or_si128(x, splat(0x20));
                    _mm_or_si128(
                        _mm_or_si128(eq(folded, b'{'), eq(folded, b'}')),
                        _mm_or_si128(eq(x, b':'), eq(x, b',')),
                    )
                })),
                whitespace: mask64(each(&v, |x| {
                    _mm_or_si128(
                        _mm_or_si128(eq(x, b' '), eq(x, b'\t')),
                        _mm_or_si128(eq(x, b'\n'), eq(x, b'\r')),
                    )
                })),
                control,
                non_ascii,
            }
        }
    }

    #[inline(always)]
    unsafe fn prefix_xor(mut bits: u64) -> u64 {
        bits ^= bits << 1;
        bits ^= bits << 2;
        bits ^= bits << 4;
        bits ^= bits << 8;
        bits ^= bits << 16;
        bits ^= bits << 32;
        bits
    }

    #[inline(always)]
    unsafe fn utf8_block(state: &mut SawNonAscii, _block: *const u8, non_ascii: u64) {
        state.0 |= non_ascii != 0;
    }

    #[inline(always)]
    unsafe fn utf8_is_valid(state: &SawNonAscii, input: &[u8]) -> bool {
        !state.0 || std::str::from_utf8(input).is_ok()
    }

    #[inline(always)]
    unsafe fn compress(block: *const u8, keep: u64, dst: *mut u8) -> usize {
        let mut written = 0usize;
        let mut rest = keep;
        while rest != 0 {
            let start = rest.trailing_zeros() as usize;
            // The run of kept bytes from `start` (to the block's end at most).
            let run = (!(rest >> start)).trailing_zeros() as usize;
            // SAFETY: start + run <= 64, so the source is within the block's 64 readable
            // bytes, and written + run <= 64 within dst's 64 writable ones; they do not
            // overlap (the caller's promise).
            unsafe { std::ptr::copy_nonoverlapping(block.add(start), dst.add(written), run) };
            written += run;
            rest = if start + run >= 64 {
                0
            } else {
                rest & (u64::MAX << (start + run))
            };
        }
        written
    }
}
