"""Every oslo.config snippet in the READMEs and docs/ works pasted as is."""

import glob
import os
import re

import pytest

pytest.importorskip("oslo_messaging")
from oslo_config import cfg  # noqa: E402

from libnotif import oslo_driver  # noqa: E402

from conftest import REPO_ROOT  # noqa: E402

READMES = ["README.md", os.path.join("bindings", "python", "README.md")] + sorted(
    os.path.relpath(p, REPO_ROOT) for p in glob.glob(os.path.join(REPO_ROOT, "docs", "*.md"))
)


def ini_blocks():
    for name in READMES:
        with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
            text = f.read()
        for i, block in enumerate(re.findall(r"```ini\n(.*?)```", text, re.S)):
            # The driver's options in the driver's section (a forwarder's
            # config names that section for transport_url only).
            if re.findall(r"^(sock_[a-z_]+)\s*=", driver_section(block), re.M):
                yield "%s#%d" % (name, i), block


def driver_section(block):
    """The lines of [oslo_messaging_notifications] in an ini block."""
    m = re.search(r"^\[oslo_messaging_notifications\]\n(.*?)(?=^\[|\Z)", block, re.S | re.M)
    return m.group(1) if m else ""


BLOCKS = list(ini_blocks())


def test_the_readmes_have_oslo_snippets():
    assert len(BLOCKS) >= 3, [name for name, _ in BLOCKS]


@pytest.mark.parametrize("name,block", BLOCKS, ids=[name for name, _ in BLOCKS])
def test_snippet_loads_with_oslo_config(name, block, sockdir):
    conf_file = os.path.join(sockdir, "pasted.conf")
    with open(conf_file, "w") as f:
        f.write(block)
    conf = cfg.ConfigOpts()
    conf(["--config-file", conf_file], project="readme", default_config_files=[])
    conf.register_opts(oslo_driver._opts, group=oslo_driver.GROUP)
    group = conf[oslo_driver.GROUP]
    set_here = re.findall(r"^(sock_[a-z_]+)\s*=", driver_section(block), re.M)
    assert set_here
    for option in set_here:
        value = group[option]  # parses (a bad value raises here)
        text = " ".join(value) if isinstance(value, list) else str(value)
        assert "#" not in text, "%s: %s = %r holds a comment" % (name, option, value)
        assert text == text.strip()
    if "sock_path" in set_here:
        assert re.fullmatch(r"/[\w/.{}-]+\.sock", group.sock_path), group.sock_path
    if "sock_mode" in set_here:
        assert 0 <= group.sock_mode <= 0o777


def test_bare_import_reaches_the_listener():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", "import libnotif; print(callable("
                           "libnotif.listener.dispatch))"], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.strip() == "True", proc.stderr


def test_the_readmes_name_one_group_for_the_readers():
    """The OpenStack group of the readers is spelled the same everywhere (an
    operator copying one README's group and the other's allow-list locks
    the readers out)."""
    names = set()
    for name in READMES:
        with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
            text = f.read()
        names.update(re.findall(r"^sock_(?:allow_)?groups? = ([\w-]+)$", text, re.M))
        names.update(re.findall(r"(nova-[\w-]*readers)", text))
    assert len(names) == 1, sorted(names)
