"""Build step of the libnotif Python package: setuptools-rust builds libnotif.

The Rust library is built by setuptools-rust (``cargo rustc --lib
--crate-type cdylib``, release, stripped) from the crate two directories up
(a checkout of the repository) or, in an sdist, from the copy of the crate at
its top (``make wheel`` stages it there). It is shipped inside the package as
``libnotif/libnotif.so``, next to libnotif/_lib.py, which loads it with ctypes.

The package has no Python extension module: it is ctypes over a plain C
library, so the wheel works on every CPython 3 of its platform. Its tag says
so (``py3-none-<platform>``) rather than the interpreter that built it, and
the library keeps its plain name instead of a CPython suffix.
"""

import os

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools_rust import Binding, RustExtension, Strip
from setuptools_rust.build import build_rust

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_NAME = "libnotif.so"

# An sdist holds the crate at its top; a checkout has it two levels up.
if os.path.isfile(os.path.join(HERE, "Cargo.toml")):
    CARGO_TOML = "Cargo.toml"
else:
    CARGO_TOML = os.path.join("..", "..", "Cargo.toml")


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
        RustExtension("libnotif.libnotif", path=CARGO_TOML, binding=Binding.NoBinding,
                      strip=Strip.All, py_limited_api=False,
                      # No symbol table either (strip -x keeps the global symbols).
                      rustc_flags=["-C", "strip=symbols"]),
    ],
    cmdclass={"build_rust": BuildRustPlainName, "bdist_wheel": WheelForAnyPython3},
    zip_safe=False,
)
