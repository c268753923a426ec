//! Stage 1 with AVX2: a 64-byte block is two 32-byte vectors. Operators and whitespace are
//! classified by shuffle lookups on the low nibble, the string extents come from a
//! carry-less multiply (PCLMULQDQ) as the prefix XOR of the quotes, UTF-8 is checked with
//! lookup tables (Keiser and Lemire, "Validating UTF-8 in less than one instruction per
//! byte", as in simdjson), and compaction packs the bytes it keeps eight at a time with a
//! shuffle.
//!
//! Every function here is compiled for AVX2, PCLMULQDQ, BMI1 and POPCNT and may only run
//! where `is_available()` said so.

use super::compact;
use super::stage1::{self, Masks, Simd};
use super::Layout;
use std::arch::x86_64::*;

/// Whether this CPU has every feature the kernel is compiled for (cached by std).
#[inline]
pub(super) fn is_available() -> bool {
    is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("pclmulqdq")
        && is_x86_feature_detected!("bmi1")
        && is_x86_feature_detected!("popcnt")
}

/// # Safety
/// The CPU has AVX2, PCLMULQDQ, BMI1 and POPCNT (`is_available()`).
#[target_feature(enable = "avx2,pclmulqdq,bmi1,popcnt")]
pub(super) unsafe fn validate(input: &[u8]) -> Option<Layout> {
    // SAFETY: this function's features are Avx2's.
    unsafe { stage1::validate::<Avx2>(input) }
}

/// # Safety
/// As for `validate`.
#[target_feature(enable = "avx2,pclmulqdq,bmi1,popcnt")]
pub(super) unsafe fn compact_into(input: &[u8], out: &mut Vec<u8>) {
    // SAFETY: this function's features are Avx2's.
    unsafe { compact::compact_into::<Avx2>(input, out) }
}

pub(super) struct Avx2;

/// The UTF-8 state between blocks: the last non-ASCII block's second vector (its last
/// three bytes may begin a sequence that continues in the next block), the errors so far,
/// and whether that vector ended in the middle of a sequence.
///
/// An ASCII block is skipped: an open sequence before it is an error, and otherwise the
/// stale `previous` behaves for the next block as ASCII would (its last bytes end complete
/// sequences, which require nothing of the bytes after them).
pub(super) struct Utf8State {
    previous: __m256i,
    error: __m256i,
    previous_incomplete: bool,
    incomplete_before_ascii: bool,
}

impl Default for Utf8State {
    #[inline(always)]
    fn default() -> Self {
        // SAFETY: __m256i is plain bits, for which all zeros is a valid value; building it
        // this way needs no CPU feature (the state is only used by the AVX2 kernel).
        let zero: __m256i = unsafe { std::mem::zeroed() };
        Utf8State {
            previous: zero,
            error: zero,
            previous_incomplete: false,
            incomplete_before_ascii: false,
        }
    }
}

#[inline(always)]
unsafe fn mask64(low: __m256i, high: __m256i) -> u64 {
    u64::from(_mm256_movemask_epi8(low) as u32)
        | (u64::from(_mm256_movemask_epi8(high) as u32) << 32)
}

/// The same 16 bytes in both 128-bit lanes, for `_mm256_shuffle_epi8` lookups (which look up
/// within each lane).
#[inline(always)]
unsafe fn table(bytes: [u8; 16]) -> __m256i {
    let lane = _mm_loadu_si128(bytes.as_ptr().cast());
    _mm256_broadcastsi128_si256(lane)
}

impl Simd for Avx2 {
    type Utf8 = Utf8State;

    #[inline(always)]
    unsafe fn classify(block: *const u8) -> Masks {
        // SAFETY (for the whole function): the caller guarantees 64 readable bytes at
        // `block` and the features; the loads are unaligned loads.
        unsafe {
            let low = _mm256_loadu_si256(block.cast());
            let high = _mm256_loadu_si256(block.add(32).cast());
            // `x | 0x20` equals the entry for x's low nibble only for { } [ ] : , (and the
            // control bytes 0x0C and 0x1A, see Masks::op). Bytes from 0x80 look up 0.
            let op_table = table([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b':', b'{', b',', b'}', 0, 0]);
            // Only the four whitespace bytes equal the entry for their low nibble; 0xFF
            // matches no ASCII byte, and bytes from 0x80 look up 0.
            let whitespace_table = table([
                b' ', 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, b'\t', b'\n', 0xFF, 0xFF,
                b'\r', 0xFF, 0xFF,
            ]);
            let x20 = _mm256_set1_epi8(0x20);
            let quote = _mm256_set1_epi8(b'"' as i8);
            let backslash = _mm256_set1_epi8(b'\\' as i8);
            let backslash_low = _mm256_cmpeq_epi8(low, backslash);
            let backslash_high = _mm256_cmpeq_epi8(high, backslash);
            // Signed: bytes below 0x20 and bytes from 0x80 (negative).
            let below_x20_low = _mm256_cmpgt_epi8(x20, low);
            let below_x20_high = _mm256_cmpgt_epi8(x20, high);
            // Most blocks of a compact message have no backslash, control or non-ASCII byte:
            // one test instead of three masks.
            let rare = _mm256_or_si256(
                _mm256_or_si256(backslash_low, backslash_high),
                _mm256_or_si256(below_x20_low, below_x20_high),
            );
            let (backslash, control, non_ascii) = if _mm256_testz_si256(rare, rare) == 1 {
                (0, 0, 0)
            } else {
                let non_ascii = mask64(low, high);
                (
                    mask64(backslash_low, backslash_high),
                    mask64(below_x20_low, below_x20_high) & !non_ascii,
                    non_ascii,
                )
            };
            Masks {
                quote: mask64(
                    _mm256_cmpeq_epi8(low, quote),
                    _mm256_cmpeq_epi8(high, quote),
                ),
                backslash,
                op: mask64(
                    _mm256_cmpeq_epi8(
                        _mm256_or_si256(low, x20),
                        _mm256_shuffle_epi8(op_table, low),
                    ),
                    _mm256_cmpeq_epi8(
                        _mm256_or_si256(high, x20),
                        _mm256_shuffle_epi8(op_table, high),
                    ),
                ),
                whitespace: mask64(
                    _mm256_cmpeq_epi8(low, _mm256_shuffle_epi8(whitespace_table, low)),
                    _mm256_cmpeq_epi8(high, _mm256_shuffle_epi8(whitespace_table, high)),
                ),
                control,
                non_ascii,
            }
        }
    }

    #[inline(always)]
    unsafe fn prefix_xor(bits: u64) -> u64 {
        // SAFETY: PCLMULQDQ and SSE2 are guaranteed by the caller. Multiplying by all ones
        // without carries XORs every bit into all the bits above it.
        unsafe {
            let product =
                _mm_clmulepi64_si128(_mm_set_epi64x(0, bits as i64), _mm_set1_epi8(-1), 0);
            _mm_cvtsi128_si64(product) as u64
        }
    }

    #[inline(always)]
    unsafe fn utf8_block(state: &mut Utf8State, block: *const u8, non_ascii: u64) {
        // SAFETY (for the whole function): 64 readable bytes and AVX2, from the caller.
        unsafe {
            if non_ascii == 0 {
                // An ASCII block: a sequence the previous one left open is an error.
                state.incomplete_before_ascii |= state.previous_incomplete;
                return;
            }
            let low = _mm256_loadu_si256(block.cast());
            let high = _mm256_loadu_si256(block.add(32).cast());
            let e1 = utf8_errors(low, state.previous);
            let e2 = utf8_errors(high, low);
            state.error = _mm256_or_si256(state.error, _mm256_or_si256(e1, e2));
            let incomplete = is_incomplete(high);
            state.previous_incomplete = _mm256_testz_si256(incomplete, incomplete) == 0;
            state.previous = high;
        }
    }

    #[inline(always)]
    unsafe fn utf8_is_valid(state: &Utf8State, _input: &[u8]) -> bool {
        // SAFETY: AVX from the caller.
        unsafe {
            _mm256_testz_si256(state.error, state.error) == 1
                && !state.previous_incomplete
                && !state.incomplete_before_ascii
        }
    }

    #[inline(always)]
    unsafe fn compress(block: *const u8, keep: u64, dst: *mut u8) -> usize {
        // SAFETY (for the whole function): 64 readable bytes at block, 64 writable at dst,
        // not overlapping, and the features, from the caller. Group g writes 8 bytes at
        // dst + w where w <= 8 * g, so within dst's 64 bytes.
        unsafe {
            if keep == u64::MAX {
                _mm256_storeu_si256(dst.cast(), _mm256_loadu_si256(block.cast()));
                _mm256_storeu_si256(dst.add(32).cast(), _mm256_loadu_si256(block.add(32).cast()));
                return 64;
            }
            let mut written = 0usize;
            for group in 0..8 {
                let bits = ((keep >> (group * 8)) & 0xFF) as usize;
                let bytes = _mm_loadl_epi64(block.add(group * 8).cast());
                let shuffle = _mm_loadl_epi64(PACK_SHUFFLES[bits].as_ptr().cast());
                _mm_storel_epi64(dst.add(written).cast(), _mm_shuffle_epi8(bytes, shuffle));
                written += bits.count_ones() as usize;
            }
            written
        }
    }
}

/// For each 8-bit keep mask, the shuffle that moves the kept bytes of 8 to the front.
static PACK_SHUFFLES: [[u8; 8]; 256] = pack_shuffles();

const fn pack_shuffles() -> [[u8; 8]; 256] {
    let mut tables = [[0u8; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let mut out = 0;
        let mut bit = 0;
        while bit < 8 {
            if mask & (1 << bit) != 0 {
                tables[mask][out] = bit as u8;
                out += 1;
            }
            bit += 1;
        }
        mask += 1;
    }
    tables
}

// The UTF-8 error classes of Keiser and Lemire's lookup (simdjson's names). Each lookup gives
// the classes a byte pair could be in; their AND is non-zero only for an invalid pair.
const TOO_SHORT: u8 = 1 << 0; // 11______ 0_______ or 11______ 11______
const TOO_LONG: u8 = 1 << 1; // 0_______ 10______
const OVERLONG_3: u8 = 1 << 2; // 11100000 100_____
const TOO_LARGE: u8 = 1 << 3; // 11110100 1001____, 11110100 101_____, 11110101+ 10______
const SURROGATE: u8 = 1 << 4; // 11101101 101_____
const OVERLONG_2: u8 = 1 << 5; // 1100000_ 10______
const TOO_LARGE_1000: u8 = 1 << 6; // 11110101+ 1000____
const OVERLONG_4: u8 = 1 << 6; // 11110000 1000____
const TWO_CONTS: u8 = 1 << 7; // 10______ 10______ (an error unless a 3rd or 4th byte)
const CARRY: u8 = TOO_SHORT | TOO_LONG | TWO_CONTS;

const BYTE_1_HIGH: [u8; 16] = [
    // 0_______: ASCII first
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    // 10______: a continuation first
    TWO_CONTS,
    TWO_CONTS,
    TWO_CONTS,
    TWO_CONTS,
    // 1100____
    TOO_SHORT | OVERLONG_2,
    // 1101____
    TOO_SHORT,
    // 1110____
    TOO_SHORT | OVERLONG_3 | SURROGATE,
    // 1111____
    TOO_SHORT | TOO_LARGE | TOO_LARGE_1000 | OVERLONG_4,
];

const BYTE_1_LOW: [u8; 16] = [
    // ____0000
    CARRY | OVERLONG_3 | OVERLONG_2 | OVERLONG_4,
    // ____0001
    CARRY | OVERLONG_2,
    // ____001_
    CARRY,
    CARRY,
    // ____0100
    CARRY | TOO_LARGE,
    // ____0101
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    // ____011_
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    // ____1___
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    // ____1101
    CARRY | TOO_LARGE | TOO_LARGE_1000 | SURROGATE,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
];

const BYTE_2_HIGH: [u8; 16] = [
    // ________ 0_______
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    // ________ 1000____
    TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE_1000 | OVERLONG_4,
    // ________ 1001____
    TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE,
    // ________ 101_____
    TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE,
    TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE,
    // ________ 11______
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
];

/// `input` shifted by N bytes towards the end, the first N bytes from the end of `previous`.
macro_rules! prev {
    ($input:expr, $previous:expr, $n:literal) => {
        _mm256_alignr_epi8::<{ 16 - $n }>(
            $input,
            _mm256_permute2x128_si256::<0x21>($previous, $input),
        )
    };
}

/// Non-zero bytes where `input` (after `previous`) is not valid UTF-8, except a sequence
/// left open at its end (`is_incomplete`).
#[inline(always)]
unsafe fn utf8_errors(input: __m256i, previous: __m256i) -> __m256i {
    // SAFETY: AVX2, from the caller; these intrinsics only compute on registers.
    unsafe {
        let nibble = _mm256_set1_epi8(0x0F);
        let prev1 = prev!(input, previous, 1);
        let byte_1_high = _mm256_shuffle_epi8(
            table(BYTE_1_HIGH),
            _mm256_and_si256(_mm256_srli_epi16::<4>(prev1), nibble),
        );
        let byte_1_low = _mm256_shuffle_epi8(table(BYTE_1_LOW), _mm256_and_si256(prev1, nibble));
        let byte_2_high = _mm256_shuffle_epi8(
            table(BYTE_2_HIGH),
            _mm256_and_si256(_mm256_srli_epi16::<4>(input), nibble),
        );
        let special_cases =
            _mm256_and_si256(_mm256_and_si256(byte_1_high, byte_1_low), byte_2_high);
        // A third or fourth byte must be a continuation: 0x80 where one is required.
        let prev2 = prev!(input, previous, 2);
        let prev3 = prev!(input, previous, 3);
        let is_third = _mm256_subs_epu8(prev2, _mm256_set1_epi8((0xE0u8 - 0x80) as i8));
        let is_fourth = _mm256_subs_epu8(prev3, _mm256_set1_epi8((0xF0u8 - 0x80) as i8));
        let must_be_continuation = _mm256_and_si256(
            _mm256_or_si256(is_third, is_fourth),
            _mm256_set1_epi8(0x80u8 as i8),
        );
        _mm256_xor_si256(must_be_continuation, special_cases)
    }
}

/// Non-zero when the vector ends inside a sequence: a lead byte in one of the last three
/// places with too few places after it.
#[inline(always)]
unsafe fn is_incomplete(input: __m256i) -> __m256i {
    // SAFETY: AVX2, from the caller.
    unsafe { _mm256_subs_epu8(input, _mm256_loadu_si256(INCOMPLETE_MAX.as_ptr().cast())) }
}

/// The largest byte that does not begin a sequence too long for the place it is in.
static INCOMPLETE_MAX: [u8; 32] = {
    let mut max = [0xFFu8; 32];
    max[29] = 0xF0 - 1;
    max[30] = 0xE0 - 1;
    max[31] = 0xC0 - 1;
    max
};
