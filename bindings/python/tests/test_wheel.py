"""make wheel (bindings/python/wheel.sh): a manylinux2014 wheel that is enough
for an operator. It installs with pip into a fresh virtual environment with no
Rust toolchain (not on PATH, not in HOME) on every CPython 3.9-3.13 present
(pyenv's), and works there: the library it ships (stripped) publishes, the
pure-Python subscriber reads, the oslo entry points are registered, and the
notif tool it ships is on PATH (`notif --version`, `notif tail` against a
libnotif.Publisher) and behind `python -m libnotif`. Its tag is the one
auditwheel grants, and no symbol in it needs a glibc newer than 2.17.
Building it leaves target/ alone; so does `pip install ./bindings/python`."""

import glob
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO_ROOT

# A cold build (the build tools' venv, then libnotif and notif with zig) takes
# minutes on a loaded 2-core machine; later runs reuse build/wheel-venv and
# build/wheel-target.
pytestmark = pytest.mark.timeout(1800)

GLIBC = (2, 17)
ELF_FILES = ("libnotif/libnotif.so", "libnotif/notif")
WHEEL_VENV = os.path.join(REPO_ROOT, "build", "wheel-venv")
TARGET = os.path.join(REPO_ROOT, "target")


def crate_version():
    with open(os.path.join(REPO_ROOT, "Cargo.toml")) as f:
        return re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)


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

# `notif tail` (the command pip put on PATH) against a publisher made through
# libnotif.Publisher in this interpreter: both notifications, in order, exactly.
TAIL = r"""
import json, os, shutil, subprocess, sys, tempfile, time
import libnotif
notif = shutil.which("notif")
assert notif == os.path.join(sys.prefix, "bin", "notif"), (notif, sys.prefix)
path = os.path.join(tempfile.mkdtemp(dir="/tmp"), "t.sock")
sent = [{"event_type": "compute.instance.create.end", "n": 1, "v": list(sys.version_info[:2])},
        {"event_type": "compute.instance.delete.end", "n": 2, "text": "caf\u00e9"}]
with libnotif.Publisher(path) as pub:
    tail = subprocess.Popen([notif, "tail", "--count", "2", "--no-reconnect", path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while pub.subscribers() < 1:
        assert tail.poll() is None, tail.communicate()
        assert time.monotonic() < deadline, "notif tail never connected"
        time.sleep(0.02)
    for n in sent:
        assert pub.emit(n) == 1
    out, err = tail.communicate(timeout=60)
assert tail.returncode == 0, (tail.returncode, out, err)
got = [json.loads(line) for line in out.decode().splitlines()]
assert got == sent, (got, err)
print("tail ok")
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


def file_state(path):
    """What a build must not change: the file's size, mtime and content (None if absent)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    with open(path, "rb") as f:
        return st.st_size, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest()


def target_state():
    """target/'s entries and every file of target/release/ that cargo build made."""
    if not os.path.isdir(TARGET):
        return None
    release = os.path.join(TARGET, "release")
    files = {}
    if os.path.isdir(release):
        for name in sorted(os.listdir(release)):
            if os.path.isfile(os.path.join(release, name)):
                files[name] = file_state(os.path.join(release, name))
    return sorted(os.listdir(TARGET)), files


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Runs wheel.sh as `make wheel` does; returns (wheel path, its output, target/ before, after)."""
    out = tmp_path_factory.mktemp("dist")
    before = target_state()
    proc = subprocess.run([os.path.join(REPO_ROOT, "bindings", "python", "wheel.sh"), str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1500)
    after = target_state()
    assert proc.returncode == 0, proc.stdout
    wheels = glob.glob(str(out / "libnotif-*.whl"))
    assert len(wheels) == 1 and glob.glob(str(out / "libnotif-*.tar.gz")), os.listdir(out)
    return wheels[0], proc.stdout, before, after


@pytest.fixture(scope="module")
def wheel(built):
    return built[0]


def test_wheel_tags_and_contents(wheel):
    name = os.path.basename(wheel)
    # ctypes and an executable: any CPython 3, no ABI; glibc 2.17 (manylinux2014).
    m = re.fullmatch(r"libnotif-([\d.]+)-py3-none-manylinux2014_(\w+?)\.manylinux_2_17_(\w+)\.whl",
                     name)
    assert m and m.group(2) == m.group(3), name
    assert m.group(1) == crate_version(), name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        for f in ELF_FILES:
            assert f in names, names
        tool = z.getinfo("libnotif/notif")
        assert (tool.external_attr >> 16) & 0o111 == 0o111, oct(tool.external_attr >> 16)
        assert "libnotif/__main__.py" in names
        blobs = {f: z.read(f) for f in ELF_FILES}
        entry_points = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
        others = [n for n in names if n not in ELF_FILES and z.read(n)[:4] == b"\x7fELF"]
    assert not others, "ELF files besides the library and the tool: %s" % others
    scripts = re.search(r"^\[console_scripts\]\n(.*?)(?:\n\n|\Z)", entry_points.decode(), re.S | re.M)
    assert scripts, entry_points.decode()
    lines = scripts.group(1).splitlines()
    assert "notif = libnotif.__main__:main" in lines, lines
    assert "libnotif-forward = libnotif.forward:main" in lines, lines
    from elftools.elf.elffile import ELFFile
    for f, blob in blobs.items():
        sections = [s.name for s in ELFFile(io.BytesIO(blob)).iter_sections()]
        # .debug_gdb_scripts (in executables) is a few bytes naming gdb's pretty
        # printers, not debug information: strip leaves it.
        assert not [s for s in sections if s.startswith(".debug") and s != ".debug_gdb_scripts"], \
            (f, sections)
        assert ".symtab" not in sections, "%s is not stripped" % f


def dynamic_symbols(blob, tmp_path, name):
    """objdump -T of an ELF file: (weak, version or None, symbol) per undefined symbol."""
    path = tmp_path / name
    path.write_bytes(blob)
    out = subprocess.run(["objdump", "-T", str(path)], check=True, capture_output=True,
                         text=True).stdout
    undefined = []
    for line in out.splitlines():
        if "*UND*" not in line:
            continue
        fields = line.split()
        version = re.search(r"\(([^)]*)\)", line)
        undefined.append((fields[1] == "w", version.group(1) if version else None, fields[-1]))
    return undefined


def test_wheel_needs_no_glibc_newer_than_2_17(wheel, tmp_path):
    """The library and the tool only name glibc symbols of 2.17 or older, and
    name no symbol without a version unless it is weak: an unversioned strong
    reference (what Rust's std makes of getrandom, a 2.25 function, when
    linked against 2.17) escapes auditwheel but fails on glibc 2.17-2.24."""
    with zipfile.ZipFile(wheel) as z:
        blobs = {f: z.read(f) for f in ELF_FILES}
    for f, blob in blobs.items():
        undefined = dynamic_symbols(blob, tmp_path, os.path.basename(f))
        assert undefined, f
        glibc = [(tuple(int(x) for x in v[len("GLIBC_"):].split(".")), s)
                 for _, v, s in undefined if v and v.startswith("GLIBC_")]
        assert glibc, undefined
        newest = max(glibc)
        assert newest[0] <= GLIBC, "%s needs %s from glibc %s" % (f, newest[1], newest[0])
        strong_unversioned = [s for weak, v, s in undefined if v is None and not weak]
        assert not strong_unversioned, (f, strong_unversioned)


def test_auditwheel_show_agrees(built):
    wheel, output, _, _ = built
    proc = subprocess.run([os.path.join(WHEEL_VENV, "bin", "python"), "-m", "auditwheel", "show",
                           wheel], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = " ".join(proc.stdout.split())
    arch = re.search(r"manylinux_2_17_(\w+)\.whl$", wheel).group(1)
    assert 'is consistent with the following platform tag: "manylinux_2_17_%s"' % arch in text, \
        proc.stdout
    # make wheel says what it is doing, and shows the same verdict.
    for step in ("wheel: staging the sources and building the sdist",
                 "wheel: building libnotif.so and notif from the sdist for glibc 2.17",
                 "wheel: auditwheel repair --plat manylinux2014_%s" % arch,
                 "wheel: libnotif/notif: newest glibc symbol GLIBC_2.17"):
        assert step in output, output
    assert 'platform tag: "manylinux_2_17_%s"' % arch in " ".join(output.split()), output


def test_make_wheel_leaves_target_alone(built):
    """Its cargo builds go to build/wheel-target: target/ gets no new entry and
    not one file of target/release/ changes."""
    _, _, before, after = built
    assert after == before
    assert os.path.isdir(os.path.join(REPO_ROOT, "build", "wheel-target"))


def test_pip_install_checkout_leaves_target_release_alone(tmp_path):
    """`pip install ./bindings/python` with no CARGO_TARGET_DIR builds in
    target/python: target/release/libnotif.so (cargo build's) is not replaced
    by setuptools-rust's stripped build."""
    lib = os.path.join(TARGET, "release", "libnotif.so")
    before = file_state(lib)
    env = {k: v for k, v in os.environ.items() if k != "CARGO_TARGET_DIR"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", "--target", str(tmp_path / "site"),
                           os.path.join(REPO_ROOT, "bindings", "python")],
                          env=env, capture_output=True, text=True, timeout=1200)
    shutil.rmtree(os.path.join(REPO_ROOT, "bindings", "python", "build"), ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert file_state(lib) == before
    for f in ("libnotif.so", "notif"):
        assert os.path.isfile(tmp_path / "site" / "libnotif" / f), f
    # The library in target/python/release, the tool in its own profile's directory.
    for f in ("release/libnotif.so", "python-tool/notif"):
        assert os.path.isfile(os.path.join(TARGET, "python", f)), f


def test_wheel_installs_without_rust_on_every_cpython(wheel, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    for tool in ("cargo", "rustc", "zig", "cargo-zigbuild"):
        assert shutil.which(tool, path=env["PATH"]) is None, "%s on the clean PATH" % tool
    version_line = "notif %s" % crate_version()
    done = []
    for version, exe in pythons().items():
        venv = tmp_path / ("venv" + version)
        subprocess.run([exe, "-m", "venv", str(venv)], env=env, check=True, timeout=300,
                       capture_output=True)
        py = str(venv / "bin" / "python")
        proc = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", wheel], env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (version, proc.stdout, proc.stderr)
        venv_env = dict(env, PATH=str(venv / "bin") + ":" + env["PATH"])

        def run(*args):
            return subprocess.run(list(args), env=venv_env, cwd=str(tmp_path),
                                  capture_output=True, text=True, timeout=120)

        proc = run(py, "-c", SMOKE)
        assert proc.returncode == 0, (version, proc.stdout, proc.stderr)
        assert proc.stdout.startswith("ok "), proc.stdout
        # The command on PATH, and python -m libnotif: the same tool.
        assert shutil.which("notif", path=venv_env["PATH"]) == str(venv / "bin" / "notif")
        for cmd in (["notif"], [py, "-m", "libnotif"]):
            proc = run(*cmd, "--version")
            assert (proc.returncode, proc.stdout.strip()) == (0, version_line), \
                (version, cmd, proc.returncode, proc.stdout, proc.stderr)
            proc = run(*cmd, "tail", "--help")
            assert proc.returncode == 0 and "Usage: notif tail" in proc.stdout, \
                (version, cmd, proc.stdout, proc.stderr)
        # Alone, python -m libnotif shows the tool's help, as notif alone does.
        proc = run(py, "-m", "libnotif")
        assert proc.returncode == 1 and "Usage: notif <COMMAND>" in proc.stdout + proc.stderr, \
            (version, proc.returncode, proc.stdout, proc.stderr)
        proc = run(py, "-c", TAIL)
        assert proc.returncode == 0 and proc.stdout.strip() == "tail ok", \
            (version, proc.stdout, proc.stderr)
        done.append(version)
    print("wheel installed and worked (library, notif tool) on CPython", ", ".join(done))
    assert done
