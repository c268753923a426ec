//! A hostile local peer: the red team's scenarios (hostile requests, every
//! attacker at once, verdict caches, resumes that cost CPU or memory, stats
//! floods) and the budgets every resource a peer can make the library spend
//! is charged to (issue 17). `make soak` runs the budgets' long forms
//! (NOTIF_SOAK=1).
//!
//! Process-wide state: every test that measures the process (its descriptors,
//! threads, resident memory, or its server thread's CPU time by name) runs
//! alone in a copy of this binary (`isolated!();`,
//! common::run_isolated): all of budgets, all_at_once, filter_cache, stats_flood
//! and resume_memory's two memory tests. The attackers are this binary
//! re-executed in a role. The rest run in parallel threads.

#[path = "../common/mod.rs"]
mod common;

mod all_at_once;
mod budgets;
mod filter_cache;
mod hostile_requests;
mod resume_cpu;
mod resume_memory;
mod stats_flood;
