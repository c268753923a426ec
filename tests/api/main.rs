//! The publisher's API and its socket: open, close, errors, the socket file
//! and its mode, long paths, access control, socket activation, fork, a
//! system without /proc, the directory descriptor, racing opens.
//!
//! One binary, one module a behaviour. Process-wide state: the tests that
//! change the umask (socket_mode, access_control), fork (fork,
//! access_control: a child inherits every descriptor of every test running
//! meanwhile), lower RLIMIT_NOFILE (open_out_of_descriptors) or count the
//! process's descriptors and threads (close_leaks) each run alone in a copy
//! of this binary: they start with `isolated!();`
//! (common::run_isolated). without_proc re-executes itself in a mount namespace
//! of its own. Every other test runs in parallel threads.

#[path = "../common/mod.rs"]
mod common;

mod access_control;
mod close;
mod close_leaks;
mod concurrent_open;
mod directory_descriptor;
mod errors;
mod fork;
mod long_paths;
mod open_out_of_descriptors;
mod socket_activation;
mod socket_file;
mod socket_mode;
mod without_proc;
