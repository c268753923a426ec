//! Fault injection: what the library does when things around it go wrong
//! (subscribers killed, stopped or churning, publishers crashing, signals,
//! fork, descriptor and memory shortages, hostile peers and directories) and
//! the resume that loses nothing. `make soak` runs the long forms
//! (NOTIF_SOAK=1). The shared rig is common::faults.
//!
//! Process-wide state: every test that counts the process's descriptors,
//! threads or memory (faults::Baseline, MemoryWatch), forks, installs signal
//! handlers (signals) or sets the umask (hostile_directory) runs alone in a
//! copy of this binary (`isolated!();`, common::run_isolated).
//! Helper processes are this binary re-executed in a role (faults::spawn_role).
//! The rest run in parallel threads.

#[path = "../common/mod.rs"]
mod common;

mod descriptor_exhaustion;
mod filter_bomb;
mod fork_and_close;
mod hostile_directory;
mod hostile_subscribers;
mod idle_connections;
mod killed_subscribers;
mod publisher_crash;
mod resume;
mod signals;
mod steady_readers;
mod subscriber_churn;
