//! The shared library's soname, nothing else: the build compiles no code
//! generator. include/notif.h is committed; `make header` regenerates it with
//! cbindgen (tools/header) and `make header-check` (in `make test`) fails when
//! the committed copy differs from a fresh run.

fn main() {
    // The shared library's soname carries the ABI major version, so installed
    // programs keep finding a compatible libnotif.so.0 across minor releases.
    let major =
        std::env::var("CARGO_PKG_VERSION_MAJOR").expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnotif.so.{major}");
    println!("cargo:rerun-if-changed=build.rs");
}
