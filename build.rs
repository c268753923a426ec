//! Generates include/notif.h from the C boundary (src/capi) with cbindgen.
//! The header is committed: `make test` fails when the committed copy differs
//! from what this generates, so the two never drift apart.

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=src/capi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // A hand-edited header is regenerated (and then shows up in git diff).
    println!("cargo:rerun-if-changed=include/notif.h");
    println!("cargo:rerun-if-changed=Cargo.toml");

    // The shared library's soname carries the ABI major version, so installed
    // programs keep finding a compatible libnotif.so.0 across minor releases.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnotif.so.0");

    let version_macros = format!(
        "#define NOTIF_VERSION_MAJOR {}\n#define NOTIF_VERSION_MINOR {}\n#define NOTIF_VERSION_PATCH {}",
        env::var("CARGO_PKG_VERSION_MAJOR").unwrap(),
        env::var("CARGO_PKG_VERSION_MINOR").unwrap(),
        env::var("CARGO_PKG_VERSION_PATCH").unwrap(),
    );
    let mut config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is valid");
    config.after_includes = Some(format!("\n{version_macros}"));

    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate include/notif.h");
    // write_to_file only rewrites the file when its content changes, so an
    // up-to-date header keeps its timestamp.
    bindings.write_to_file(crate_dir.join("include/notif.h"));
}
