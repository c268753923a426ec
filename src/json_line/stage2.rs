//! Stage 2: the grammar walk over the structural positions stage 1 wrote out. It reads the
//! byte at each position, checks that it may come next, and checks numbers and literals from
//! their first byte to the end of their run. Strings were checked by stage 1. The walk can
//! stop at the end of one window of positions and go on with the next, and it never
//! allocates: its nesting stack is 128 bytes inside it.

use super::MAX_DEPTH;

const _: () = assert!(MAX_DEPTH < 128, "the nesting stack has 128 places");

/// What the next structural may be. The container a value is in is part of the state, so
/// that a `,` or a closing bracket after a value needs no look at the stack.
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
    /// After `:`: a member's value.
    ObjectValue,
    /// Just after `[`: a value or `]`.
    FirstArrayValue,
    /// After `,` in an array: a value.
    ArrayValue,
    /// After a member's value: `,` or `}`.
    AfterObjectValue,
    /// After an array's value: `,` or `]`.
    AfterArrayValue,
    /// After the top-level object's `}`: nothing.
    End,
}

pub(super) struct Stage2 {
    expect: Expect,
    depth: usize,
    /// `is_object[d]` is 1 when the container at depth `d` (0 is the top level) is an
    /// object. Indexed with `& 127`, which keeps every index in bounds without a check
    /// (depth never exceeds MAX_DEPTH = 127).
    is_object: [u8; 128],
}

impl Stage2 {
    #[inline(always)]
    pub fn new() -> Self {
        Stage2 {
            expect: Expect::Root,
            depth: 0,
            is_object: [0; 128],
        }
    }

    /// Whether the walk so far is one complete object.
    #[inline(always)]
    pub fn is_done(&self) -> bool {
        self.expect == Expect::End
    }

    /// Walks the next `positions` (ascending offsets of `input`). False when the input is not
    /// valid; the walk cannot go on after that.
    ///
    /// # Safety
    /// Every position is below `input.len()` (stage 1 only writes positions of bytes of the
    /// input). The walk reads the bytes there without a bounds check: it is the hottest loop
    /// of the fast path, and the checks were an eighth of its instructions.
    ///
    /// Not inlined: it needs no target feature, and on its own it keeps its state in
    /// registers. The common runs (a member's `, "key" :` after a string or scalar value,
    /// an array's `,` after one) are taken without going back to the state dispatch.
    #[inline(never)]
    pub unsafe fn walk(&mut self, input: &[u8], positions: &[u32]) -> bool {
        debug_assert!(positions.iter().all(|&at| (at as usize) < input.len()));
        let mut expect = self.expect;
        let mut depth = self.depth;
        let is_object = &mut self.is_object;
        let n = positions.len();
        // The byte at the i-th position; 0 (which no state accepts) past the last position.
        let byte_at = |i: usize| -> u8 {
            match positions.get(i) {
                // SAFETY: the caller guarantees that every position is within `input`.
                Some(&at) => unsafe { *input.get_unchecked(at as usize) },
                None => 0,
            }
        };
        // The state after a container closes: what the one around it expects, or the end.
        macro_rules! close {
            () => {{
                depth -= 1;
                if depth == 0 {
                    Expect::End
                } else if is_object[(depth - 1) & 127] == 1 {
                    Expect::AfterObjectValue
                } else {
                    Expect::AfterArrayValue
                }
            }};
        }
        // Opens the container `byte` starts (`{` or `[`), leaving the walk's loop with the
        // state inside it.
        macro_rules! open {
            ($byte:expr) => {{
                if depth == MAX_DEPTH {
                    return false;
                }
                let object = $byte == b'{';
                is_object[depth & 127] = u8::from(object);
                depth += 1;
                if object {
                    Expect::FirstKey
                } else {
                    Expect::FirstArrayValue
                }
            }};
        }
        // Checks a value that does not open a container (a string, checked by stage 1, or a
        // scalar, checked here); returns false from the walk when it is not one.
        macro_rules! primitive {
            ($byte:expr, $at:expr) => {
                match $byte {
                    b'"' => {}
                    b't' if literal(input, $at, b"true") => {}
                    b'f' if literal(input, $at, b"false") => {}
                    b'n' if literal(input, $at, b"null") => {}
                    b'-' | b'0'..=b'9' if number(input, $at) => {}
                    _ => return false,
                }
            };
        }
        let mut i = 0;
        while i < n {
            let mut at = positions[i] as usize;
            let mut byte = byte_at(i);
            i += 1;
            expect = match expect {
                Expect::ObjectValue => loop {
                    if byte == b'{' {
                        // An object as a member's value: `{ "key" :` and its first value
                        // without leaving the loop, when the window has them.
                        if depth < MAX_DEPTH
                            && i + 2 < n
                            && byte_at(i) == b'"'
                            && byte_at(i + 1) == b':'
                        {
                            is_object[depth & 127] = 1;
                            depth += 1;
                            at = positions[i + 2] as usize;
                            byte = byte_at(i + 2);
                            i += 3;
                            continue;
                        }
                        break open!(byte);
                    }
                    if byte == b'[' {
                        break open!(byte);
                    }
                    primitive!(byte, at);
                    // `, "key" :` and the next member's value, when this window has them.
                    if i + 3 < n {
                        // SAFETY: i + 3 < n, so the four positions exist, and the caller
                        // guarantees that they are within `input`.
                        let (comma, key, colon, next) = unsafe {
                            let p = positions.as_ptr().add(i);
                            let next = *p.add(3) as usize;
                            (
                                *input.get_unchecked(*p as usize),
                                *input.get_unchecked(*p.add(1) as usize),
                                *input.get_unchecked(*p.add(2) as usize),
                                next,
                            )
                        };
                        if comma == b',' {
                            if key != b'"' || colon != b':' {
                                return false;
                            }
                            at = next;
                            // SAFETY: as above.
                            byte = unsafe { *input.get_unchecked(next) };
                            i += 4;
                            continue;
                        }
                    }
                    break Expect::AfterObjectValue;
                },
                Expect::ArrayValue | Expect::FirstArrayValue => {
                    if byte == b']' && expect == Expect::FirstArrayValue {
                        close!()
                    } else {
                        loop {
                            if let b'{' | b'[' = byte {
                                break open!(byte);
                            }
                            primitive!(byte, at);
                            // `,` and the next value, when this window has them.
                            if i + 1 < n && byte_at(i) == b',' {
                                at = positions[i + 1] as usize;
                                byte = byte_at(i + 1);
                                i += 2;
                                continue;
                            }
                            break Expect::AfterArrayValue;
                        }
                    }
                }
                Expect::AfterObjectValue => match byte {
                    // `"key" :` after the comma, when the window has them.
                    b',' if i + 1 < n && byte_at(i) == b'"' && byte_at(i + 1) == b':' => {
                        i += 2;
                        Expect::ObjectValue
                    }
                    b',' => Expect::Key,
                    b'}' => close!(),
                    _ => return false,
                },
                Expect::AfterArrayValue => match byte {
                    b',' => Expect::ArrayValue,
                    b']' => close!(),
                    _ => return false,
                },
                Expect::FirstKey | Expect::Key => match byte {
                    b'"' => {
                        if i < n && byte_at(i) == b':' {
                            i += 1;
                            Expect::ObjectValue
                        } else {
                            Expect::Colon
                        }
                    }
                    b'}' if expect == Expect::FirstKey => close!(),
                    _ => return false,
                },
                Expect::Colon => {
                    if byte != b':' {
                        return false;
                    }
                    Expect::ObjectValue
                }
                Expect::Root => {
                    if byte != b'{' {
                        return false;
                    }
                    is_object[0] = 1;
                    depth = 1;
                    Expect::FirstKey
                }
                Expect::End => return false,
            };
        }
        self.expect = expect;
        self.depth = depth;
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
