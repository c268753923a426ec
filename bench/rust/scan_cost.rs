//! Instructions per JSON check, for `valgrind --tool=callgrind` (whose counts
//! are steady on a noisy machine): scans a message N times.
//!
//! `cargo build --release --example scan_cost && valgrind --tool=callgrind
//!  target/release/examples/scan_cost tests/fixtures/nova-instance-update.json 10000`
//!
//! `NOTIF_SIMD=avx2|sse2|scalar` picks the kernel `scan` runs; `bench/rust/emit_cost.rs`
//! prints instructions per scan, compaction and emit for every kernel in one table.

fn main() {
    let mut args = std::env::args().skip(1);
    let file = args
        .next()
        .unwrap_or_else(|| "tests/fixtures/nova-instance-update.json".into());
    let iterations: usize = args.next().map_or(10_000, |n| n.parse().expect("a count"));
    let message = std::fs::read(&file).expect("message file");
    let message = message.trim_ascii_end();
    let mut compact = 0usize;
    for _ in 0..iterations {
        if notif::json_line::scan(std::hint::black_box(message))
            == Ok(notif::json_line::Layout::Compact)
        {
            compact += 1;
        }
    }
    println!(
        "{compact} of {iterations} scans found {file} compact ({} bytes)",
        message.len()
    );
}
