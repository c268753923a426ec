//! notif: a daemon hands JSON notifications to any number of local consumers
//! over a Unix socket, one compact JSON object per line, with no broker.
//!
//! The core (everything but `capi`) knows nothing of C; `capi` is the thin
//! C boundary that checks arguments, maps errors and guards panics.

mod backlog;
pub mod capi;
pub mod client;
mod error;
mod fork_guard;
pub mod json_line;
mod options;
mod publisher;
mod server;
mod socket_file;
mod stats;
pub mod subscription;
pub mod top_level;

pub use client::subscriber::{self, Event, SubscribeOptions, Subscriber};
pub use error::Error;
pub use options::{
    resolve_group, ChosenSizes, Options, SlowPolicy, DEFAULT_MEMORY_LIMIT, MAX_MAX_MESSAGE,
    MAX_MAX_SUBSCRIBERS, MIN_SUBSCRIBER_BUFFER,
};
pub use publisher::Publisher;
pub use socket_file::{SocketAddress, MAX_PATH_LEN};
pub use stats::Stats;

/// The library's version, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
