//! Instructions per `json_line::scan`, per `json_line::compact_into`, per
//! `Publisher::emit` and per `notif_emit_len` (the C API) with one subscriber, for each JSON kernel this CPU has (AVX2, SSE2,
//! the scalar reference) and the three sample messages, counted by callgrind (whose counts
//! are steady on a noisy machine, unlike times).
//!
//! `cargo run --release --example emit_cost [FILE...]` prints the table: it runs itself
//! under `valgrind --tool=callgrind --toggle-collect=...` once per kernel, message and
//! measurement, with `NOTIF_SIMD` naming the kernel, and divides by the number of calls.
//! `emit_cost --run scan|compact|emit|capi FILE N` is one such run. For `emit`,
//! NOTIF_COST_REPLAY=BYTES opens the publisher with a replay ring of that size
//! and NOTIF_COST_NOBODY=1 emits with nobody connected (what a ring costs emit).

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use notif::capi;
use notif::json_line::{self, Layout};
use notif::{Options, Publisher};

const CALLS: usize = 2_000;
const DEFAULT_FILES: &[&str] = &[
    "tests/fixtures/nova-instance-update.json",
    "tests/fixtures/small.json",
    "tests/fixtures/nova-instance-update.pretty.json",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--run") {
        let calls = args[4].parse().expect("a count");
        return run(&args[2], &read(&args[3]), calls);
    }
    let files: Vec<String> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        DEFAULT_FILES.iter().map(|f| f.to_string()).collect()
    };
    println!(
        "callgrind instructions per call ({CALLS} calls), {}",
        cpu_model()
    );
    println!(
        "| kernel | message | bytes | scan | scan/byte | compact_into \
         | Publisher::emit, 1 sub | notif_emit_len, 1 sub |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for kernel in json_line::available_kernels() {
        for file in &files {
            let message = read(file);
            let needs_compaction = json_line::scan(&message) == Ok(Layout::NeedsCompaction);
            let scan = measure(kernel.name(), "scan", file);
            let compact = if needs_compaction {
                format!("{:.0}", measure(kernel.name(), "compact", file))
            } else {
                "(compact)".into()
            };
            let emit = measure(kernel.name(), "emit", file);
            let capi = measure(kernel.name(), "capi", file);
            println!(
                "| {} | {} | {} | {scan:.0} | {:.2} | {compact} | {emit:.0} | {capi:.0} |",
                kernel.name(),
                file.rsplit('/').next().unwrap_or(file),
                message.len(),
                scan / message.len() as f64,
            );
        }
    }
}

fn read(file: &str) -> Vec<u8> {
    let message = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    message.trim_ascii_end().to_vec()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Instructions per call of `what` with `kernel`, from callgrind's total inside the
/// measured function over CALLS calls.
fn measure(kernel: &str, what: &str, file: &str) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let output = Command::new("valgrind")
        .args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            &format!("--toggle-collect=*measured_{what}*"),
        ])
        .arg(&exe)
        .args(["--run", what, file, &CALLS.to_string()])
        .env("NOTIF_SIMD", kernel)
        .output()
        .expect("valgrind (apt-get install valgrind)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let collected: u64 = stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 'Collected' in callgrind's output: {stderr}"));
    collected as f64 / CALLS as f64
}

#[inline(never)]
fn measured_scan(message: &[u8]) -> bool {
    json_line::scan(std::hint::black_box(message)).is_ok()
}

#[inline(never)]
fn measured_compact(message: &[u8], out: &mut Vec<u8>) {
    out.clear();
    json_line::compact_into(std::hint::black_box(message), out);
}

#[inline(never)]
fn measured_emit(publisher: &Publisher, message: &[u8]) -> bool {
    publisher.emit(std::hint::black_box(message)).is_ok()
}

#[inline(never)]
fn measured_capi(handle: *mut capi::notif_handle, message: &[u8]) -> bool {
    // SAFETY: a live handle from notif_open_with, and `message.len()` readable bytes.
    unsafe { capi::notif_emit_len(handle, message.as_ptr().cast(), message.len()) >= 0 }
}

fn run(what: &str, message: &[u8], calls: usize) {
    match what {
        "scan" => {
            let ok = (0..calls).filter(|_| measured_scan(message)).count();
            assert_eq!(ok, calls, "the message is not valid");
        }
        "compact" => {
            let mut out = Vec::with_capacity(message.len());
            for _ in 0..calls {
                measured_compact(message, &mut out);
            }
        }
        "emit" => emit(message, calls),
        "capi" => capi_emit(message, calls),
        _ => panic!("--run scan|compact|emit|capi FILE N"),
    }
}

/// `calls` emits to one subscriber (a thread here that reads and discards), every one
/// queued: the buffers hold them all.
fn emit(message: &[u8], calls: usize) {
    let dir = std::env::temp_dir().join(format!("notif-emit-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let replay: usize = std::env::var("NOTIF_COST_REPLAY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let nobody = std::env::var_os("NOTIF_COST_NOBODY").is_some();
    let options = Options {
        subscriber_buffer: 64 << 20,
        backlog: 64 << 20,
        replay,
        memory_limit: (2 * replay).max(notif::DEFAULT_MEMORY_LIMIT),
        ..Options::default()
    };
    let publisher = Publisher::open_with(&path, &options).expect("open");
    // One subscriber that reads and discards, unless nobody is to be connected.
    let reader = (!nobody).then(|| {
        let mut stream = UnixStream::connect(&path).expect("connect");
        std::thread::spawn(move || {
            let mut sink = vec![0u8; 1 << 16];
            while stream.read(&mut sink).is_ok_and(|n| n > 0) {}
        })
    });
    while !nobody && publisher.subscribers() < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let ok = (0..calls)
        .filter(|_| measured_emit(&publisher, message))
        .count();
    assert_eq!(ok, calls, "some emits failed");
    publisher.close();
    if let Some(reader) = reader {
        reader.join().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same through the C API, as C callers (and bench/notif_bench/) emit.
fn capi_emit(message: &[u8], calls: usize) {
    let dir = std::env::temp_dir().join(format!("notif-emit-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: the options pointer comes from notif_options_new and is freed once; the path
    // is a NUL-terminated string; the handle is closed once, after the last emit.
    unsafe {
        let options = capi::notif_options_new();
        assert_eq!(
            capi::notif_options_set_subscriber_buffer(options, 64 << 20),
            0
        );
        assert_eq!(capi::notif_options_set_backlog(options, 64 << 20), 0);
        let handle = capi::notif_open_with(c_path.as_ptr(), options);
        capi::notif_options_free(options);
        assert!(!handle.is_null(), "notif_open_with failed");
        let mut stream = UnixStream::connect(&path).expect("connect");
        let reader = std::thread::spawn(move || {
            let mut sink = vec![0u8; 1 << 16];
            while stream.read(&mut sink).is_ok_and(|n| n > 0) {}
        });
        // notif_emit_len returns the number of subscribers (outside the measured function).
        while capi::notif_emit_len(handle, message.as_ptr().cast(), message.len()) < 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let ok = (0..calls)
            .filter(|_| measured_capi(handle, message))
            .count();
        assert_eq!(ok, calls, "some emits failed");
        capi::notif_close(handle);
        reader.join().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
