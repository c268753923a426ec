"""Build step of the libnotif Python package: setuptools-rust builds libnotif
and the notif command-line tool.

Both come from the crates two directories up (a checkout of the repository)
or, in an sdist, from the copies at its top (``make wheel`` stages them there):

- the C library (``cargo rustc --lib --crate-type cdylib``, release, stripped),
  shipped as ``libnotif/libnotif.so`` next to libnotif/_lib.py, which loads it
  with ctypes;
- the ``notif`` tool (tools/notif: tail, emit, stats), shipped as
  ``libnotif/notif``; the ``notif`` console script and ``python -m libnotif``
  run it (libnotif/__main__.py).

The package has no Python extension module: it is ctypes over a plain C
library and a plain executable, so the wheel works on every CPython 3 of its
platform. Its tag says so (``py3-none-<platform>``) rather than the interpreter
that built it, and the library keeps its plain name instead of a CPython suffix.

From a checkout, cargo builds in ``target/python`` (unless CARGO_TARGET_DIR
says otherwise), never in ``target/release``: setuptools-rust's stripped
cdylib must not replace the library ``cargo build`` made there.
"""

import os

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools_rust import Binding, RustExtension, Strip
from setuptools_rust.build import build_rust

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_NAME = "libnotif.so"

# An sdist holds the crates at its top; a checkout has them two levels up.
if os.path.isfile(os.path.join(HERE, "Cargo.toml")):
    TOP = "."
else:
    TOP = os.path.join("..", "..")
    os.environ.setdefault("CARGO_TARGET_DIR",
                          os.path.join(os.path.normpath(os.path.join(HERE, TOP)), "target", "python"))


class BuildRustPlainName(build_rust):
    """Ships the cdylib as libnotif/libnotif.so (not libnotif.cpython-3XX-...so):
    ctypes loads it by that name, whatever the interpreter."""

    def get_dylib_ext_path(self, ext, target_fname):
        path = super().get_dylib_ext_path(ext, target_fname)
        return os.path.join(os.path.dirname(path), LIB_NAME)


class WheelForAnyPython3(bdist_wheel):
    """py3-none-<platform>: native code, but no CPython ABI in it."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    rust_extensions=[
        RustExtension("libnotif.libnotif", path=os.path.join(TOP, "Cargo.toml"),
                      binding=Binding.NoBinding, strip=Strip.All, py_limited_api=False,
                      # No symbol table either (strip -x keeps the global symbols).
                      rustc_flags=["-C", "strip=symbols"]),
        # The notif binary into the package directory (libnotif/notif); the
        # console script is libnotif.__main__:main (pyproject.toml), not a
        # generated one. Built in a profile of its own (release, stripped):
        # under `release` it would rebuild the library crate without the
        # flags above into the same files, and each build would redo the other.
        RustExtension({"notif": "libnotif.notif"},
                      path=os.path.join(TOP, "tools", "notif", "Cargo.toml"),
                      binding=Binding.Exec, script=False, strip=Strip.All,
                      args=["--config", 'profile.python-tool.inherits="release"',
                            "--config", 'profile.python-tool.strip="symbols"',
                            "--config", "profile.python-tool.debug=false",
                            "--profile", "python-tool"]),
    ],
    cmdclass={"build_rust": BuildRustPlainName, "bdist_wheel": WheelForAnyPython3},
    zip_safe=False,
)
