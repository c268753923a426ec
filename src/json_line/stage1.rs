//! Stage 1, the part every kernel shares: from the bit masks a kernel computes for a 64-byte
//! block (`Masks`) to the escaped bytes, the string extents, the whitespace outside strings
//! and the structural positions, which it writes out for stage 2 in windows of bounded size.
//!
//! The structural positions are the operators `{ } [ ] : ,` outside strings, the opening
//! quote of every string, and the first byte of every run of other bytes outside strings (a
//! number, a literal, or garbage). Stage 2 checks each scalar run from its first byte to its
//! end, so a byte that belongs nowhere (a control byte, a non-ASCII byte or a backslash
//! outside strings) always lands in a run stage 2 rejects.
//!
//! Inside strings stage 1 checks everything itself: no control byte, every escape one of
//! `\" \\ \/ \b \f \n \r \t \uXXXX`, surrogate escapes in pairs, and (through the kernel)
//! UTF-8 over the whole input, which is what valid JSON is anyway.

use super::stage2::Stage2;
use super::Layout;
use std::mem::MaybeUninit;

/// One bit per byte of a 64-byte block (bit i for byte i), as a kernel classifies them.
#[derive(Clone, Copy)]
pub(super) struct Masks {
    pub quote: u64,
    pub backslash: u64,
    /// `{ } [ ] : ,`, and possibly a few control bytes (0x0C, 0x1A) that a lookup-based
    /// kernel cannot tell apart cheaply: stage 2 reads the byte itself and rejects them, and
    /// inside strings the control check does.
    pub op: u64,
    /// Space, tab, line feed, carriage return.
    pub whitespace: u64,
    /// Bytes below 0x20, the whitespace controls included.
    pub control: u64,
    /// Bytes from 0x80.
    pub non_ascii: u64,
}

/// What a stage 1 kernel provides: the classification of a block, a prefix XOR, UTF-8
/// checking, and packing the bytes a compaction keeps.
pub(super) trait Simd {
    /// UTF-8 checking state carried from block to block.
    type Utf8: Default;

    /// # Safety
    /// `block` points to 64 readable bytes, and the CPU has the kernel's features.
    unsafe fn classify(block: *const u8) -> Masks;

    /// Bit i of the result is the XOR of bits 0..=i of `bits`.
    ///
    /// # Safety
    /// The CPU has the kernel's features.
    unsafe fn prefix_xor(bits: u64) -> u64;

    /// Checks the next block's UTF-8 (`non_ascii` is its mask: a kernel may skip ASCII blocks).
    ///
    /// # Safety
    /// As for `classify`.
    unsafe fn utf8_block(state: &mut Self::Utf8, block: *const u8, non_ascii: u64);

    /// Whether every block given to `utf8_block` (all of `input`, in order) was valid UTF-8
    /// and the last did not end inside a sequence.
    ///
    /// # Safety
    /// The CPU has the kernel's features.
    unsafe fn utf8_is_valid(state: &Self::Utf8, input: &[u8]) -> bool;

    /// Writes the bytes of the 64-byte `block` whose bit is set in `keep`, in order, at `dst`,
    /// and returns how many. It may write up to 64 bytes at `dst` whatever `keep` says.
    ///
    /// # Safety
    /// `block` points to 64 readable bytes, `dst` to 64 writable ones, the two do not
    /// overlap, and the CPU has the kernel's features.
    unsafe fn compress(block: *const u8, keep: u64, dst: *mut u8) -> usize;
}

/// The bits of the bytes escaped by a backslash, given the block's backslashes. `carry` is 1
/// when the previous block's last byte was an escaping backslash, and is updated likewise.
/// (simdjson's escape scanner: a run of backslashes escapes the byte after it when it has an
/// odd length, counted from where it starts; the subtraction finds the ends of the runs.)
#[inline(always)]
pub(super) fn escaped_bytes(backslash: u64, carry: &mut u64) -> u64 {
    const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;
    if backslash == 0 {
        let escaped = *carry;
        *carry = 0;
        return escaped;
    }
    // A backslash escaped by the previous block's last one cannot escape anything.
    let potential_escape = backslash & !*carry;
    let maybe_escaped = potential_escape << 1;
    // Subtracting each run's starts from the odd bits (plus the bits after the starts)
    // leaves, at the byte after each run, a bit that says whether the run was odd.
    let maybe_escaped_and_odd_bits = maybe_escaped | ODD_BITS;
    let even_series_codes_and_odd_bits = maybe_escaped_and_odd_bits.wrapping_sub(potential_escape);
    let escape_and_terminal_code = even_series_codes_and_odd_bits ^ ODD_BITS;
    let escaped = escape_and_terminal_code ^ (backslash | *carry);
    let escape = escape_and_terminal_code & backslash;
    *carry = escape >> 63;
    escaped
}

/// What stage 1 knows about a block once strings are found.
#[derive(Clone, Copy)]
pub(super) struct Strings {
    /// Structural positions (see the module's documentation).
    pub structurals: u64,
    /// Whitespace outside strings.
    pub whitespace_outside: u64,
    /// String bodies with their opening quote (not the closing one).
    pub in_string: u64,
    /// Bytes escaped by a backslash.
    pub escaped: u64,
}

/// The state stage 1 carries from one block to the next.
#[derive(Default)]
pub(super) struct StringScanner {
    /// 1 when the previous block ended with an escaping backslash.
    escape_carry: u64,
    /// All ones when the previous block ended inside a string.
    in_string_carry: u64,
    /// 1 when the previous block ended with a scalar byte (a run continues).
    scalar_carry: u64,
}

impl StringScanner {
    /// # Safety
    /// The CPU has `S`'s features.
    #[inline(always)]
    pub unsafe fn next<S: Simd>(&mut self, m: &Masks) -> Strings {
        let escaped = escaped_bytes(m.backslash, &mut self.escape_carry);
        let quote = m.quote & !escaped;
        // SAFETY: the caller guarantees S's features.
        let in_string = unsafe { S::prefix_xor(quote) } ^ self.in_string_carry;
        self.in_string_carry = ((in_string as i64) >> 63) as u64;
        let outside = !(in_string | quote);
        let scalar = outside & !(m.op | m.whitespace);
        let scalar_starts = scalar & !((scalar << 1) | self.scalar_carry);
        self.scalar_carry = scalar >> 63;
        Strings {
            structurals: (m.op & outside) | scalar_starts | (quote & in_string),
            whitespace_outside: m.whitespace & outside,
            in_string,
            escaped,
        }
    }

    /// Whether the input so far ends inside a string.
    #[inline(always)]
    pub fn ends_in_string(&self) -> bool {
        self.in_string_carry != 0
    }
}

/// Structural positions of one window of blocks, written out for stage 2. A window is at
/// most `WINDOW` positions (plus one block's), so the buffer is bounded whatever the input.
const WINDOW: usize = 1024;
/// One block adds at most 64 positions, written four at a time.
const INDEX_CAPACITY: usize = WINDOW + 64;

struct Index {
    positions: [MaybeUninit<u32>; INDEX_CAPACITY],
    len: usize,
}

impl Index {
    #[inline(always)]
    fn new() -> Self {
        Index {
            // Left uninitialised: only the first `len` entries, written first, are read.
            positions: [const { MaybeUninit::uninit() }; INDEX_CAPACITY],
            len: 0,
        }
    }

    /// Appends the positions of the bits of `bits`, offset by `base`.
    #[inline(always)]
    fn push_block(&mut self, mut bits: u64, base: u32) {
        assert!(self.len <= WINDOW);
        let count = bits.count_ones() as usize;
        // Four at a time without looking at `count`, like simdjson's flattening: the extra
        // entries (at most three, past `count`) are garbage that the next block overwrites.
        let mut dst = self.positions[self.len..].as_mut_ptr().cast::<u32>();
        let end = dst.wrapping_add(count);
        while dst < end {
            for k in 0..4 {
                // SAFETY: dst + k is within `positions`: dst starts at `len <= WINDOW`,
                // advances by 4 while below len + count, so at most to len + 60 + 3
                // < WINDOW + 64 = INDEX_CAPACITY (count <= 64). MaybeUninit<u32> has u32's
                // layout, and writing through the pointer initialises the entry.
                unsafe { dst.add(k).write(base.wrapping_add(bits.trailing_zeros())) };
                bits &= bits.wrapping_sub(1);
            }
            dst = dst.wrapping_add(4);
        }
        self.len += count;
    }

    #[inline(always)]
    fn is_full(&self) -> bool {
        self.len > WINDOW - 64
    }

    #[inline(always)]
    fn as_slice(&self) -> &[u32] {
        // SAFETY: entries 0..len were all written by push_block (each block writes its
        // `count` entries at `len..len + count` before `len` grows by `count`), and
        // MaybeUninit<u32> has u32's layout.
        unsafe { std::slice::from_raw_parts(self.positions.as_ptr().cast::<u32>(), self.len) }
    }
}

/// The fast verdict on `input` with kernel `S`: `Some(layout)` if it is exactly one valid
/// object, `None` otherwise.
///
/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
pub(super) unsafe fn validate<S: Simd>(input: &[u8]) -> Option<Layout> {
    if input.len() > u32::MAX as usize - 64 {
        // Positions are u32. No message is this large (max_message is far below), but the
        // reference has no such limit.
        return super::reference::scan(input).ok();
    }
    let mut v = Validator::<S> {
        strings: StringScanner::default(),
        utf8: S::Utf8::default(),
        stage2: Stage2::new(),
        index: Index::new(),
        whitespace_outside: 0,
        control_in_strings: 0,
        next_low_surrogate: usize::MAX,
    };
    let mut blocks = input.chunks_exact(64);
    let mut offset = 0u32;
    for block in blocks.by_ref() {
        // SAFETY: the block has 64 bytes; the caller guarantees S's features.
        if !unsafe { v.block(input, block.as_ptr(), offset, u64::MAX) } {
            return None;
        }
        offset += 64;
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        // Spaces after the end: whitespace ends a scalar run and is not structural; their
        // bits are left out of the layout.
        let mut padded = [b' '; 64];
        padded[..tail.len()].copy_from_slice(tail);
        let valid = (1u64 << tail.len()) - 1;
        // SAFETY: `padded` has 64 bytes; S's features as above.
        if !unsafe { v.block(input, padded.as_ptr(), offset, valid) } {
            return None;
        }
    }
    // SAFETY: the index holds positions of input bytes only (see Validator::block).
    if !unsafe { v.stage2.walk(input, v.index.as_slice()) } || !v.stage2.is_done() {
        return None;
    }
    // SAFETY: S's features as above.
    let utf8_ok = unsafe { S::utf8_is_valid(&v.utf8, input) };
    if v.strings.ends_in_string() || v.control_in_strings != 0 || !utf8_ok {
        return None;
    }
    Some(if v.whitespace_outside == 0 {
        Layout::Compact
    } else {
        Layout::NeedsCompaction
    })
}

struct Validator<S: Simd> {
    strings: StringScanner,
    utf8: S::Utf8,
    stage2: Stage2,
    index: Index,
    whitespace_outside: u64,
    control_in_strings: u64,
    /// Position of the `u` of the low-surrogate escape that the last high surrogate checked.
    next_low_surrogate: usize,
}

impl<S: Simd> Validator<S> {
    /// Stage 1 for the block at `offset` (whose bytes are at `block`: the input's, or a
    /// padded copy of its tail whose real bytes are the bits of `valid`). False when the
    /// input is certainly invalid.
    ///
    /// # Safety
    /// `block` points to 64 readable bytes; the CPU has S's features.
    #[inline(always)]
    unsafe fn block(&mut self, input: &[u8], block: *const u8, offset: u32, valid: u64) -> bool {
        // SAFETY: forwarded from the caller.
        let masks = unsafe { S::classify(block) };
        // SAFETY: forwarded from the caller.
        unsafe { S::utf8_block(&mut self.utf8, block, masks.non_ascii) };
        // SAFETY: forwarded from the caller.
        let strings = unsafe { self.strings.next::<S>(&masks) };
        self.whitespace_outside |= strings.whitespace_outside & valid;
        self.control_in_strings |= masks.control & strings.in_string;
        let escapes = strings.escaped & strings.in_string;
        if escapes != 0
            && !check_escapes(
                input,
                offset as usize,
                escapes,
                &mut self.next_low_surrogate,
            )
        {
            return false;
        }
        // `& valid`: the positions written are those of input bytes only, offset + bit <
        // input.len() (stage 2 relies on it). Padding spaces are never structural anyway.
        self.index.push_block(strings.structurals & valid, offset);
        if self.index.is_full() {
            // SAFETY: every position in the index is below input.len(): see push_block above.
            if !unsafe { self.stage2.walk(input, self.index.as_slice()) } {
                return false;
            }
            self.index.len = 0;
        }
        true
    }
}

/// Checks the escape sequences whose escaped byte (the one after the backslash) is at a bit
/// of `bits`, in the block at `offset`.
#[inline(never)]
fn check_escapes(
    input: &[u8],
    offset: usize,
    mut bits: u64,
    next_low_surrogate: &mut usize,
) -> bool {
    while bits != 0 {
        let at = offset + bits.trailing_zeros() as usize;
        bits &= bits - 1;
        match input.get(at) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
            Some(b'u') => {
                if at == *next_low_surrogate {
                    continue; // checked with its high surrogate
                }
                match hex_code_unit(input, at + 1) {
                    Some(0xD800..=0xDBFF) => {
                        // A high surrogate must be followed at once by `\u` and a low one.
                        if input.get(at + 5) != Some(&b'\\') || input.get(at + 6) != Some(&b'u') {
                            return false;
                        }
                        match hex_code_unit(input, at + 7) {
                            Some(0xDC00..=0xDFFF) => *next_low_surrogate = at + 6,
                            _ => return false,
                        }
                    }
                    Some(0xDC00..=0xDFFF) | None => return false,
                    Some(_) => {}
                }
            }
            _ => return false,
        }
    }
    true
}

/// The four hex digits at `start` as a UTF-16 code unit, if they are four hex digits.
#[inline(always)]
fn hex_code_unit(input: &[u8], start: usize) -> Option<u16> {
    let digits = input.get(start..start + 4)?;
    let mut unit = 0u16;
    for &byte in digits {
        let digit = match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            b'A'..=b'F' => byte - b'A' + 10,
            _ => return None,
        };
        unit = unit << 4 | u16::from(digit);
    }
    Some(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The escaped bytes by the definition: left to right, an unescaped backslash escapes
    /// the next byte.
    fn escaped_model(bits: &[bool]) -> Vec<bool> {
        let mut escaped = vec![false; bits.len() + 1];
        let mut i = 0;
        while i < bits.len() {
            if bits[i] && !escaped[i] {
                escaped[i + 1] = true;
            }
            i += 1;
        }
        escaped
    }

    #[test]
    fn escaped_bytes_follow_the_definition_across_blocks() {
        let mut seed = 0x1234_5678_9abc_def1u64;
        // Fewer under Miri, which is about a thousand times slower.
        let rounds = if cfg!(miri) { 300 } else { 20_000 };
        for round in 0..rounds {
            let blocks = 1 + round % 4;
            let mut bits = Vec::new();
            for _ in 0..blocks * 64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Dense runs of backslashes, and blocks of them only.
                let density = [2, 3, 8, 64][round % 4];
                bits.push(seed % density != 0 || round % 97 == 0);
            }
            let model = escaped_model(&bits);
            let mut carry = 0;
            for b in 0..blocks {
                let mut mask = 0u64;
                for i in 0..64 {
                    mask |= u64::from(bits[b * 64 + i]) << i;
                }
                let escaped = escaped_bytes(mask, &mut carry);
                for i in 0..64 {
                    assert_eq!(escaped >> i & 1 == 1, model[b * 64 + i], "round {round}");
                }
            }
            assert_eq!(carry == 1, model[blocks * 64], "round {round}");
        }
    }

    #[test]
    fn hex_code_units() {
        assert_eq!(hex_code_unit(b"u00e9", 1), Some(0xe9));
        assert_eq!(hex_code_unit(b"uDbFf", 1), Some(0xdbff));
        assert_eq!(hex_code_unit(b"u00e", 1), None);
        assert_eq!(hex_code_unit(b"u00eg", 1), None);
    }
}
