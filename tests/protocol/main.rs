//! The subscription protocol and the line format: requests, filters and
//! control lines on the wire, the shared protocol vectors
//! (tests/protocol-vectors) against the server and the Rust client, refusals
//! and stats probes, the Rust subscriber
//! client against real and fake publishers, and the JSON line scanner (its
//! agreement with serde_json, its SIMD kernels against the reference).
//!
//! No test here changes process-wide state; all run in parallel threads
//! (json_line_simd re-executes one test of its own with NOTIF_SIMD set).

#[path = "../common/mod.rs"]
mod common;

mod json_line_agreement;
mod json_line_simd;
mod on_the_wire;
mod refusals_and_probes;
mod subscriber_client;
mod vectors;
