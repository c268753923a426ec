"""make wheel: the manylinux wheel installs with pip into a fresh virtual
environment with no Rust toolchain (not on PATH, not in HOME) on every
CPython 3.9-3.13 present (pyenv's), and works there: the library it ships
(stripped) publishes, the pure-Python subscriber reads, the oslo entry
points are registered."""

import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO_ROOT

SMOKE = r"""
import os, sys, tempfile
import libnotif
here = os.path.dirname(os.path.abspath(libnotif.__file__))
assert libnotif.library_path() == os.path.join(here, "libnotif.so"), libnotif.library_path()
assert here.startswith(sys.prefix), (here, sys.prefix)
d = tempfile.mkdtemp(dir="/tmp")
path = os.path.join(d, "w.sock")
with libnotif.Publisher(path) as pub:
    sub = libnotif.Subscriber(path, timeout=30, reconnect=False)
    import time
    deadline = time.monotonic() + 30
    while pub.subscribers() < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert pub.emit({"event_type": "wheel.ok", "v": sys.version_info[:2]}) == 1
    got = sub.recv(30)
    assert got == {"event_type": "wheel.ok", "v": list(sys.version_info[:2])}, got
    sub.close()
from importlib import metadata
eps = metadata.entry_points()
group = (eps.select(group="oslo.messaging.notify.drivers") if hasattr(eps, "select")
         else eps.get("oslo.messaging.notify.drivers", []))
assert [e.value for e in group if e.name == "unix"] == ["libnotif.oslo_driver:UnixSocketDriver"]
print("ok", libnotif.version(), "%d.%d" % sys.version_info[:2])
"""


def pythons():
    """CPython 3.9-3.13 interpreters present: pyenv's, else this one."""
    found = {}
    for exe in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3"))):
        m = re.search(r"/versions/3\.(\d+)\.\d+/", exe)
        if m and 9 <= int(m.group(1)) <= 13:
            found.setdefault("3.%s" % m.group(1), exe)
    if not found:
        found["%d.%d" % sys.version_info[:2]] = sys.executable
    return dict(sorted(found.items(), key=lambda kv: int(kv[0].split(".")[1])))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([os.path.join(REPO_ROOT, "bindings", "python", "wheel.sh"), str(out),
                           sys.executable], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = glob.glob(str(out / "libnotif-*.whl"))
    assert len(wheels) == 1 and glob.glob(str(out / "libnotif-*.tar.gz")), os.listdir(out)
    return wheels[0]


def test_wheel_tags_and_contents(wheel):
    name = os.path.basename(wheel)
    # ctypes only: any CPython 3, no ABI; an honest manylinux platform tag.
    assert re.fullmatch(r"libnotif-[\d.]+-py3-none-manylinux_\d+_\d+_x86_64\.whl", name) or \
        re.fullmatch(r"libnotif-[\d.]+-py3-none-manylinux_\d+_\d+_\w+\.whl", name), name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert "libnotif/libnotif.so" in names
        assert not [n for n in names if n.endswith(".so") and n != "libnotif/libnotif.so"]
        lib = z.read("libnotif/libnotif.so")
    from elftools.elf.elffile import ELFFile
    import io
    sections = [s.name for s in ELFFile(io.BytesIO(lib)).iter_sections()]
    assert not [s for s in sections if s.startswith(".debug")], sections
    assert ".symtab" not in sections, "not stripped"


def test_wheel_installs_without_rust_on_every_cpython(wheel, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    assert shutil.which("cargo", path=env["PATH"]) is None, "cargo on the clean PATH"
    assert shutil.which("rustc", path=env["PATH"]) is None, "rustc on the clean PATH"
    done = []
    for version, exe in pythons().items():
        venv = tmp_path / ("venv" + version)
        subprocess.run([exe, "-m", "venv", str(venv)], env=env, check=True, timeout=300,
                       capture_output=True)
        py = str(venv / "bin" / "python")
        proc = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", wheel], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (version, proc.stdout, proc.stderr)
        proc = subprocess.run([py, "-c", SMOKE], env=dict(env, PATH=str(venv / "bin") + ":"
                                                          + env["PATH"]),
                              cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, (version, proc.stdout, proc.stderr)
        assert proc.stdout.startswith("ok "), proc.stdout
        done.append(version)
    print("wheel installed and worked on CPython", ", ".join(done))
    assert done
