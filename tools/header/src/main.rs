//! Writes the C header that cbindgen generates from the library's C boundary
//! (src/capi), configured by cbindgen.toml, to the path given (or stdout).
//!
//! The library's own build does not run this: include/notif.h is committed.
//! `make header` rewrites it; `make header-check` (in `make test`) generates a
//! fresh copy and fails when the committed one differs.
//!
//!     cargo run -p notif-header -- [OUTPUT]

use std::env;
use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    // tools/header -> the library's crate, two levels up.
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let crate_dir = match crate_dir.canonicalize() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("notif-header: {}: {e}", crate_dir.display());
            return ExitCode::FAILURE;
        }
    };
    let mut config = match cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("notif-header: cbindgen.toml: {e}");
            return ExitCode::FAILURE;
        }
    };
    let version = match library_version(&crate_dir) {
        Ok(version) => version,
        Err(e) => {
            eprintln!("notif-header: Cargo.toml: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut parts = version.split('.');
    let mut next = || parts.next().unwrap_or("0").to_string();
    let (major, minor, patch) = (next(), next(), next());
    config.after_includes = Some(format!(
        "\n#define NOTIF_VERSION_MAJOR {major}\n#define NOTIF_VERSION_MINOR {minor}\n#define NOTIF_VERSION_PATCH {patch}"
    ));

    let bindings = match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => bindings,
        Err(e) => {
            eprintln!("notif-header: cbindgen could not generate the header: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut text = Vec::new();
    bindings.write(&mut text);
    let written = match env::args_os().nth(1) {
        Some(path) => fs::write(&path, &text),
        None => io::stdout().write_all(&text),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notif-header: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `version` of the `[package]` section of the library's Cargo.toml (the
/// library's, not this tool's: the header's version macros are the library's).
fn library_version(crate_dir: &std::path::Path) -> Result<String, String> {
    let manifest = fs::read_to_string(crate_dir.join("Cargo.toml")).map_err(|e| e.to_string())?;
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(value) = line.strip_prefix("version") {
                let value = value.trim_start();
                if let Some(value) = value.strip_prefix('=') {
                    return Ok(value.trim().trim_matches('"').to_string());
                }
            }
        }
    }
    Err("no version in [package]".into())
}
