//! The C ABI: a thin layer over the core, every entry point in one shape:
//! its whole body runs in `panic_guard::entry`, which maps an error (or a
//! panic) to the failure value of its return type (a negative errno, NULL
//! plus errno, 0 plus errno) with a message kept for notif_last_error(); its
//! pointer arguments go through `arguments` (the NULL rule, borrowing,
//! handing objects out and taking them back). No logic lives here.
//!
//! Every function's doc comment, copied into notif.h, states its pointer
//! contract in C terms (who owns what, what NULL means, thread-safety), so the
//! Rust-style `# Safety` headings clippy asks for would only repeat it.
#![allow(clippy::missing_safety_doc)]

mod arguments;
mod error;
mod handle;
mod options;
mod panic_guard;
mod stats;
mod subscriber;
mod version;

pub use error::{notif_last_error, notif_strerror};
pub use handle::{
    notif_close, notif_emit, notif_emit_len, notif_get_stats, notif_handle, notif_open,
    notif_open_with,
};
pub use options::{
    notif_options, notif_options_allow_gid, notif_options_allow_uid, notif_options_free,
    notif_options_new, notif_options_set_backlog, notif_options_set_group,
    notif_options_set_linger_ms, notif_options_set_max_message, notif_options_set_max_subscribers,
    notif_options_set_mode, notif_options_set_slow_policy, notif_options_set_subscriber_buffer,
    NOTIF_SLOW_DISCONNECT, NOTIF_SLOW_DROP,
};
pub use stats::notif_stats;
pub use subscriber::{
    notif_recv, notif_subscribe, notif_subscriber, notif_subscriber_dropped, notif_subscriber_fd,
    notif_unsubscribe, NOTIF_RECV_DROPPED, NOTIF_RECV_MESSAGE, NOTIF_RECV_RECONNECTED,
    NOTIF_RECV_TIMEOUT,
};
pub use version::notif_version;
