//! Cursors: where a subscriber is in a publisher's numbering.

/// Names one notification of one open of a publisher: its epoch (drawn at
/// random when the publisher opened) and its sequence number. Written
/// `EPOCH-SEQ`: 16 lowercase hex digits, a dash, the number in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub epoch: u64,
    pub seq: u64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{}", self.epoch, self.seq)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(text: &str) -> Result<Cursor, String> {
        let bad = || {
            format!("{text:?} is not a notif cursor (EPOCH-SEQ: 16 hex digits, a dash, a number)")
        };
        let (epoch, seq) = text.split_once('-').ok_or_else(bad)?;
        // At most 20 digits (leading zeros included), as every client checks.
        if seq.is_empty() || seq.len() > 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Cursor {
            epoch: parse_epoch(epoch).ok_or_else(bad)?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// An epoch as written in cursors and acknowledgements: exactly 16 lowercase
/// hexadecimal digits.
pub fn parse_epoch(text: &str) -> Option<u64> {
    let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if text.len() != 16 || !text.bytes().all(lower_hex) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}
