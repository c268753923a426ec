"""Differential test: libnotif.mask against oslo.utils' strutils itself.

libnotif.mask.mask_dict_password must return a value equal to
strutils.mask_dict_password (same types, same key order), and
libnotif.mask.dumps_masked the same JSON as the log driver's
jsonutils.dumps(strutils.mask_dict_password(message)), on the known cases
and on generated payloads: sensitive keys at every depth, in key names of
mixed case and with digits, inside string values in every pattern
mask_password knows, in lists/tuples/sets, under non-string keys, unicode
(including characters that lower-case to ASCII letters), and dicts under
sensitive keys.
"""

import collections
import json
import os
import random

import pytest

strutils = pytest.importorskip("oslo_utils.strutils")
from oslo_serialization import jsonutils  # noqa: E402

from libnotif import mask  # noqa: E402

from conftest import REPO_ROOT  # noqa: E402

GENERATED = 3000  # payloads per run (seeded: the same ones every run)

KEYS = list(strutils._SANITIZE_KEYS)
PLAIN_KEYS = ["uuid", "host", "name", "state", "display_name", "memory_mb", "metadata", "tags",
              "nova_object.data", "flavor", "message_id", "x", "", "é", "用户"]


def same(a, b, path="$"):
    """Equal values of the same types, dict keys in the same order."""
    assert type(a) is type(b), "%s: %r is %s, oslo gives %r (%s)" % (
        path, a, type(a).__name__, b, type(b).__name__)
    if isinstance(a, dict):
        assert list(a) == list(b), "%s: keys %r vs %r" % (path, list(a), list(b))
        for k in a:
            same(a[k], b[k], "%s[%r]" % (path, k))
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, "%s[%d]" % (path, i))
    else:
        assert a == b or (a != a and b != b), "%s: %r vs oslo %r" % (path, a, b)


def check(message):
    expected = strutils.mask_dict_password(message)
    same(mask.mask_dict_password(message), expected)
    try:
        log_text = jsonutils.dumps(expected)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            mask.dumps_masked(message)
        return
    text = mask.dumps_masked(message)
    # Same JSON, same key order (compare the compact re-serialisations).
    compact = (",", ":")
    assert json.dumps(json.loads(text), separators=compact) == \
        json.dumps(json.loads(log_text), separators=compact), (message, text, log_text)


def _case(rng, word):
    choice = rng.randrange(4)
    if choice == 0:
        return word
    if choice == 1:
        return word.upper()
    if choice == 2:
        return word.capitalize()
    return "".join(c.upper() if rng.random() < 0.5 else c for c in word)


def _unicode_variant(rng, word):
    # Characters whose lower() is ASCII: KELVIN SIGN -> k, and dotted capital I.
    word = word.replace("k", "\u212a", 1) if "k" in word and rng.random() < 0.5 else word
    return word.replace("i", "\u0130", 1) if "i" in word and rng.random() < 0.5 else word


def sensitive_word(rng):
    key = rng.choice(KEYS)
    word = _case(rng, key)
    roll = rng.random()
    if roll < 0.15:
        word = _unicode_variant(rng, word)
    elif roll < 0.35:
        word = rng.choice(["", "x_", "original_", "New"]) + word + rng.choice(["", "_1", "s", "2"])
    return word


def secret_value(rng):
    return rng.choice(["hunter2", "p@ss w0rd", "a'b\"c", "", "--x", "é秘密", "x=y", "<v>", "  "])


PATTERNS = [
    "{k}={v}", "{k} = {v}", "{k}{d}={v}", "{k}=\"{v}\"", "{k} = '{v}'", "{k}='{v}\"",
    "{k} \"{v}\"", "{k}{d} '{v}'", "--{k} {v}", "--{k}{d} {v} tail", "<{k}>{v}</{k}>",
    "<{k}{d}>{v}</{k}{d}>", "\"{k}\": \"{v}\"", "'{k}' : '{v}'", "'my_{k}': u'{v}'",
    "\"x{k}{d}\":\"{v}\"", "'{k}', '--opt', '{v}'", "\"{k}\" , '-o', u\"{v}\"",
    "{k} --opt {v}", "{k} -o {v} more", "'{k}': 'a\"b'{v}'", "{{'{k}': '{v}', 'user': 'u'}}",
    "{k}", "no secret here", "{k}{k}={v}", "{k}\n= {v}\n", "cmd {k}= {v} {k}={v}",
]


def secret_string(rng):
    pattern = rng.choice(PATTERNS)
    text = pattern.format(k=sensitive_word(rng), v=secret_value(rng), d=rng.randrange(100))
    if rng.random() < 0.3:
        text = rng.choice(["prefix ", "é ", "\t", "x"]) + text
    if rng.random() < 0.3:
        text += rng.choice([" suffix", " 用户", "\n", "'"])
    return text


def plain_string(rng):
    return rng.choice(["compute-17", "active", "2026-11-27T08:00:00Z", "", "é\n\"q\"",
                       "keypair-ish but no", "x" * rng.randrange(40), "PASSive", "tok en",
                       "monkey", "turkey", "\u212aelvin", "\u0130stanbul", "sec ret"])


def key(rng):
    roll = rng.random()
    if roll < 0.3:
        return sensitive_word(rng)
    if roll < 0.4:
        return rng.choice([1, 2.5, None, True, ("t", "u"), -3])
    return rng.choice(PLAIN_KEYS) + rng.choice(["", "", "_%d" % rng.randrange(5)])


def value(rng, depth):
    roll = rng.random()
    if depth > 4:
        roll = roll * 0.55
    if roll < 0.2:
        return secret_string(rng)
    if roll < 0.35:
        return plain_string(rng)
    if roll < 0.45:
        return rng.choice([0, -1, 2 ** 70, 1.5, float("inf"), True, False, None])
    if roll < 0.5:
        return rng.choice([b"bytes", b"password=x", bytearray(b"ab")])
    if roll < 0.55:
        return rng.choice([{"a", "password=x"}, frozenset([1, 2]), ("t", "token=abc")])
    if roll < 0.75:
        return [value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if roll < 0.8:
        return tuple(value(rng, depth + 1) for _ in range(rng.randrange(3)))
    if roll < 0.85:
        return collections.OrderedDict(dictionary(rng, depth + 1))
    return dictionary(rng, depth + 1)


def dictionary(rng, depth=0):
    out = {}
    for _ in range(rng.randrange(7)):
        k = key(rng)
        if rng.random() < 0.15:
            out[k] = dictionary(rng, depth + 1)  # a dict under a (maybe sensitive) key
        else:
            out[k] = value(rng, depth)
    return out


def generated(count, seed=20261201):
    rng = random.Random(seed)
    for _ in range(count):
        payload = dictionary(rng)
        if rng.random() < 0.2:
            payload = {k: v for k, v in payload.items() if not isinstance(k, tuple)}
        yield {"message_id": "m", "publisher_id": "compute.h", "event_type": "e.x",
               "priority": "INFO", "payload": payload, "timestamp": "2026-01-01 00:00:00"}


KNOWN = [
    {"password": "d81juxmEW_", "user": "admin", "home-dir": "/home/admin"},
    {"password": "--password d81juxmEW_", "user": "admin", "home-dir": "/home/admin"},
    {"nested": {"password": "d81juxmEW_", "user": "admin", "home": "/home/admin"}},
    {"instance_id": "i-1", "password": "secret", "nested": {"admin_pass": "hunter2"},
     "n": 1.5, "text": "é\n\"quoted\"", "list": [1, None, True]},
    {"msg": "'adminPass' : 'aaaaa'", "m2": "'original_password' : 'aaaaa'",
     "m3": '"password" : "aaaaa"', "m4": "<password>x</password>", "m5": "--password x y"},
    {"AdminPass": {"inner": "token=abc"}, 3: "password=x", None: ["secret='s'"]},
]


def test_known_cases():
    for message in KNOWN:
        check(message)


def test_nova_instance_update_fixture():
    with open(os.path.join(REPO_ROOT, "tests", "fixtures", "nova-instance-update.json")) as f:
        message = json.load(f)
    check(message)
    # And with secrets planted at every depth of it.
    message["payload"]["nova_object.data"]["admin_password"] = "x"
    message["payload"]["nova_object.data"]["metadata"]["user_data"] = "token=abc def"
    message["payload"]["nova_object.data"]["ip_addresses"][0]["nova_object.data"]["Key"] = 1
    check(message)


def test_generated_payloads():
    for message in generated(GENERATED):
        check(message)


def test_markers_cover_every_sensitive_key():
    for k in KEYS:
        assert any(m in k for m in mask._MARKERS), k


def test_unchanged_dicts_are_not_copied_but_changed_ones_are():
    clean = {"a": {"b": [1, "x"]}}
    assert mask.mask_dict_password(clean) is clean
    dirty = {"a": {"password": "x"}}
    out = mask.mask_dict_password(dirty)
    assert out == {"a": {"password": "***"}} and dirty == {"a": {"password": "x"}}


def test_cycles_and_deep_nesting_fail_as_oslo_does():
    cyclic = {"a": []}
    cyclic["a"].append(cyclic)
    with pytest.raises(RecursionError):
        strutils.mask_dict_password(cyclic)
    with pytest.raises(RecursionError):
        mask.dumps_masked(cyclic)
    cyclic_list = {"a": []}
    cyclic_list["a"].append(cyclic_list["a"])
    with pytest.raises(RecursionError):
        strutils.mask_dict_password(cyclic_list)
    with pytest.raises(RecursionError):
        mask.dumps_masked(cyclic_list)
