//! Compaction with a stage 1 kernel: the whitespace outside strings that stage 1 finds (the
//! same string extents `scan` relied on) is what it leaves out, and the kernel packs the
//! rest of each 64-byte block into the output (AVX2: a shuffle per eight bytes; SSE2: one
//! copy per run of kept bytes).

use super::stage1::{Simd, StringScanner};

/// Appends the compact form of `input` to `out` with kernel `S`: stage 1's whitespace outside
/// strings is what it leaves out.
///
/// # Safety
/// The CPU has `S`'s features.
#[inline(always)]
pub(super) unsafe fn compact_into<S: Simd>(input: &[u8], out: &mut Vec<u8>) {
    // Each block writes up to 64 bytes at the current end, which is never past the input
    // bytes consumed so far: input.len() + 64 bytes of room are enough.
    out.reserve(input.len() + 64);
    let start = out.len();
    let mut written = 0usize;
    let mut strings = StringScanner::default();
    let dst = out.as_mut_ptr();
    let mut blocks = input.chunks_exact(64);
    for block in blocks.by_ref() {
        // SAFETY: 64 readable bytes at block; the caller guarantees S's features.
        let masks = unsafe { S::classify(block.as_ptr()) };
        // SAFETY: S's features.
        let keep = !unsafe { strings.next::<S>(&masks) }.whitespace_outside;
        // SAFETY: dst + start + written has 64 writable bytes: written <= the bytes consumed
        // before this block, so start + written + 64 <= start + input.len() + 64 <= capacity.
        // The source is the input, which does not overlap `out`'s spare capacity.
        written += unsafe { S::compress(block.as_ptr(), keep, dst.add(start + written)) };
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut padded = [b' '; 64];
        padded[..tail.len()].copy_from_slice(tail);
        // SAFETY: as above.
        let masks = unsafe { S::classify(padded.as_ptr()) };
        // SAFETY: as above.
        let strings = unsafe { strings.next::<S>(&masks) };
        let keep = !strings.whitespace_outside & ((1u64 << tail.len()) - 1);
        // SAFETY: as above (a padded copy on the stack is the source).
        written += unsafe { S::compress(padded.as_ptr(), keep, dst.add(start + written)) };
    }
    debug_assert!(written <= input.len());
    // SAFETY: compress initialised the `written` bytes after `start`, all within capacity.
    unsafe { out.set_len(start + written) };
}
