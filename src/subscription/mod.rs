//! The subscription protocol (docs/subscription-protocol.md; its executable
//! form is tests/protocol-vectors/): the request a subscriber may write
//! (`request`), the filter it carries (`filter`), cursors (`cursor`), and the
//! control lines the publisher answers with (`control`). The fields of a
//! notification a filter looks at are read by [`crate::top_level`]. Shared by
//! the server thread and the subscriber client, so both read the protocol alike.

mod control;
mod cursor;
mod filter;
mod request;

pub(crate) use control::lines;
pub use control::{parse_control_line, ControlLine, Reason};
pub use cursor::{parse_epoch, Cursor};
pub use filter::{glob_matches, Filter};
pub use request::{Request, Start, MAX_PATTERNS, MAX_PATTERN_BYTES, MAX_REQUEST_LINE};
// The top-level reader, where the protocol's users have always found it.
pub use crate::top_level::{is_control_line, message_fields, MessageFields, CONTROL_PREFIX};
