//! Stage 2: the grammar walk over the structural positions stage 1 wrote out. It reads the
//! byte at each position, checks that it may come next, and checks numbers and literals from
//! their first byte to the end of their run. Strings were checked by stage 1. The walk can
//! stop at the end of one window of positions and go on with the next; its nesting stack is
//! one bit per level in a `u128` (set for an object), as in the reference, so it never
//! allocates.

use super::MAX_DEPTH;

const _: () = assert!(MAX_DEPTH < 128, "the nesting stack is a u128");

/// What the next structural may be.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// The top-level `{`.
    Root,
    /// Just after `{`: a key or `}`.
    FirstKey,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After `:` or `,` in an array: a value.
    Value,
    /// Just after `[`: a value or `]`.
    FirstValue,
    /// After a value: `,` or the container's closing bracket.
    AfterValue,
    /// After the top-level object's `}`: nothing.
    End,
}

pub(super) struct Stage2 {
    expect: Expect,
    depth: usize,
    object_levels: u128,
}

impl Stage2 {
    #[inline(always)]
    pub fn new() -> Self {
        Stage2 {
            expect: Expect::Root,
            depth: 0,
            object_levels: 0,
        }
    }

    /// Whether the walk so far is one complete object.
    #[inline(always)]
    pub fn is_done(&self) -> bool {
        self.expect == Expect::End
    }

    /// Walks the next `positions` (ascending offsets of `input`). False when the input is not
    /// valid; the walk cannot go on after that.
    #[inline(always)]
    pub fn walk(&mut self, input: &[u8], positions: &[u32]) -> bool {
        let mut expect = self.expect;
        let mut depth = self.depth;
        let mut object_levels = self.object_levels;
        for &position in positions {
            let at = position as usize;
            let Some(&byte) = input.get(at) else {
                return false;
            };
            expect = match expect {
                Expect::Root => {
                    if byte != b'{' {
                        return false;
                    }
                    object_levels = 1;
                    depth = 1;
                    Expect::FirstKey
                }
                Expect::FirstKey | Expect::Key => match byte {
                    b'"' => Expect::Colon,
                    b'}' if expect == Expect::FirstKey => {
                        depth -= 1;
                        if depth == 0 {
                            Expect::End
                        } else {
                            Expect::AfterValue
                        }
                    }
                    _ => return false,
                },
                Expect::Colon => {
                    if byte != b':' {
                        return false;
                    }
                    Expect::Value
                }
                Expect::FirstValue if byte == b']' => {
                    depth -= 1;
                    if depth == 0 {
                        Expect::End
                    } else {
                        Expect::AfterValue
                    }
                }
                Expect::Value | Expect::FirstValue => match byte {
                    b'"' => Expect::AfterValue,
                    b'{' | b'[' => {
                        if depth == MAX_DEPTH {
                            return false;
                        }
                        let is_object = byte == b'{';
                        object_levels =
                            (object_levels & !(1 << depth)) | (u128::from(is_object) << depth);
                        depth += 1;
                        if is_object {
                            Expect::FirstKey
                        } else {
                            Expect::FirstValue
                        }
                    }
                    b't' if literal(input, at, b"true") => Expect::AfterValue,
                    b'f' if literal(input, at, b"false") => Expect::AfterValue,
                    b'n' if literal(input, at, b"null") => Expect::AfterValue,
                    b'-' | b'0'..=b'9' if number(input, at) => Expect::AfterValue,
                    _ => return false,
                },
                Expect::AfterValue => {
                    let in_object = (object_levels >> (depth - 1)) & 1 == 1;
                    match (byte, in_object) {
                        (b',', true) => Expect::Key,
                        (b',', false) => Expect::Value,
                        (b'}', true) | (b']', false) => {
                            depth -= 1;
                            if depth == 0 {
                                Expect::End
                            } else {
                                Expect::AfterValue
                            }
                        }
                        _ => return false,
                    }
                }
                Expect::End => return false,
            };
        }
        self.expect = expect;
        self.depth = depth;
        self.object_levels = object_levels;
        true
    }
}

/// Whether the byte at `at` (or the end) ends a scalar's run: whitespace, an operator or a
/// quote. A scalar followed by anything else is not one token.
#[inline(always)]
fn ends_scalar(input: &[u8], at: usize) -> bool {
    matches!(
        input.get(at),
        None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b'}' | b']' | b':' | b'{' | b'[' | b'"')
    )
}

/// Whether `literal` is at `at`, whole.
#[inline(always)]
fn literal(input: &[u8], at: usize, literal: &[u8]) -> bool {
    input.get(at..at + literal.len()) == Some(literal) && ends_scalar(input, at + literal.len())
}

/// Whether a whole number `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
/// is at `at`.
#[inline(always)]
fn number(input: &[u8], at: usize) -> bool {
    let digit = |i: usize| input.get(i).is_some_and(u8::is_ascii_digit);
    let mut i = at;
    if input.get(i) == Some(&b'-') {
        i += 1;
    }
    match input.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            i += 1;
            while digit(i) {
                i += 1;
            }
        }
        _ => return false,
    }
    if input.get(i) == Some(&b'.') {
        i += 1;
        if !digit(i) {
            return false;
        }
        while digit(i) {
            i += 1;
        }
    }
    if let Some(b'e' | b'E') = input.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = input.get(i) {
            i += 1;
        }
        if !digit(i) {
            return false;
        }
        while digit(i) {
            i += 1;
        }
    }
    ends_scalar(input, i)
}
