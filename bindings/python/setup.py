"""Build step of the notif Python package.

`pip install ./bindings/python` builds the Rust library with
`cargo build --release` in the repository root (two directories up; pip builds
in-tree) and ships the resulting libnotif.so inside the package, next to
notif/_lib.py, which loads it first (after the NOTIF_LIBRARY override).
"""

import json
import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
LIB_NAME = "libnotif.so"


def _fail(message):
    sys.stderr.write("\nnotif: " + message + "\n\n")
    raise SystemExit(1)


def build_libnotif():
    """Runs cargo in the repository root; returns the path of libnotif.so."""
    cargo_toml = os.path.join(REPO_ROOT, "Cargo.toml")
    if not os.path.isfile(cargo_toml):
        _fail(
            "cannot build libnotif: %s not found. The Python package is built from a "
            "checkout of the notif repository (pip install ./bindings/python from its "
            "root); pip must build in-tree (pip >= 21.3)." % cargo_toml
        )
    cargo = os.environ.get("CARGO") or shutil.which("cargo")
    if not cargo:
        home_cargo = os.path.expanduser("~/.cargo/bin/cargo")
        cargo = home_cargo if os.access(home_cargo, os.X_OK) else None
    if not cargo:
        _fail(
            "cannot build libnotif: cargo (the Rust toolchain) was not found on PATH "
            "nor in ~/.cargo/bin. Install Rust (https://rustup.rs), or set CARGO to "
            "the cargo executable, and run pip again."
        )
    cmd = [cargo, "build", "--release", "--lib", "--message-format=json-render-diagnostics"]
    sys.stderr.write("notif: running %s in %s\n" % (" ".join(cmd), REPO_ROOT))
    proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE)
    if proc.returncode != 0:
        _fail("`%s` failed (exit %d) in %s; see its output above."
              % (" ".join(cmd), proc.returncode, REPO_ROOT))
    found = None
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        if msg.get("target", {}).get("name") != "notif":
            continue
        for filename in msg.get("filenames", []):
            if os.path.basename(filename) == LIB_NAME:
                found = filename
    if not found or not os.path.isfile(found):
        _fail("cargo built the library but did not report %s among its artifacts" % LIB_NAME)
    return found


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        lib = build_libnotif()
        dest_dir = os.path.join(self.build_lib, "notif")
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, LIB_NAME)
        shutil.copyfile(lib, dest)
        os.chmod(dest, 0o755)
        sys.stderr.write("notif: shipping %s as %s\n" % (lib, dest))


class BinaryDistribution(Distribution):
    """The wheel holds a native library: tag it for the platform, not 'any'."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildPyWithLibrary}, distclass=BinaryDistribution)
