"""``mask_dict_password``: the result of oslo.utils' ``strutils.mask_dict_password``,
computed much faster for notification payloads.

Why Python and not native: the result must equal oslo.utils' for every input,
including the installed version's key list and regular expressions. The slow
part of oslo's function is not the substitutions (they are rare) but deciding
that a string needs none: it lower-cases every string value once per sensitive
key (35 of them) and searches each key. Here that decision is one lower() and a
few substring searches for short *markers* that every sensitive key contains
(``pass``, ``key``, ``secret``...): a string with no marker holds no key, so
oslo's function would return it unchanged. A string that has a marker is handed
to ``strutils.mask_password`` itself, and a dict key with a marker is checked
against ``strutils._SANITIZE_KEYS`` exactly as oslo does. So the output is oslo's
by construction, the regular expressions are never re-implemented, and a
future oslo.utils key is covered (markers are derived from the installed key
list: a key that contains no known marker becomes its own marker). A native
version would have to copy the regular expressions, and would not be faster:
the remaining cost is walking the Python objects.

Results are values equal to oslo's (same types: dicts for every mapping, lists
for lists, tuples for other collections; oslo's quirks included, such as a
dict under a sensitive key being walked rather than masked). A plain dict in
which nothing changed is returned as is rather than copied: the caller only
serialises it.
"""

import collections.abc
import json

from oslo_serialization import jsonutils
from oslo_utils import strutils

_Mapping = collections.abc.Mapping
_Collection = collections.abc.Collection

_KEYS = tuple(strutils._SANITIZE_KEYS)

# Substrings such that every sensitive key contains at least one of them.
_BASE_MARKERS = ("pass", "key", "secret", "token", "pswd", "configdrive", "fsid",
                 "cookie", "kek", "suffix")


def _markers(keys):
    markers = list(_BASE_MARKERS)
    for key in keys:
        if not any(marker in key for marker in markers):
            markers.append(key)
    return tuple(markers)


_MARKERS = _markers(_KEYS)

# Dict keys repeat from one notification to the next: cache whether a str key
# is sensitive (a pure function of the string). Bounded: cleared when full.
_key_cache = {}
_KEY_CACHE_MAX = 4096


def _sensitive_key(key):
    hit = _key_cache.get(key)
    if hit is not None:
        return hit
    low = key.lower()
    hit = False
    for marker in _MARKERS:
        if marker in low:
            hit = any(sani in low for sani in _KEYS)
            break
    if len(_key_cache) >= _KEY_CACHE_MAX:
        _key_cache.clear()
    _key_cache[key] = hit
    return hit


def mask_password(message, secret="***"):
    """strutils.mask_password(message, secret) for a str message."""
    if type(message) is not str:
        message = str(message)  # as oslo does, before lower()
    low = message.lower()
    for marker in _MARKERS:
        if marker in low:
            return strutils.mask_password(message, secret=secret)
    # No key anywhere: oslo would return the message unchanged.
    return message


def _deep_mask(value, secret):
    # strutils._deep_mask: mappings, strings, other collections, the rest as is.
    kind = type(value)
    if kind is dict:
        return mask_dict_password(value, secret)
    if kind is str:
        return mask_password(value, secret)
    if kind is list:
        return [_deep_mask(v, secret) for v in value]
    if kind is int or kind is float or kind is bool or value is None:
        return value
    if isinstance(value, _Mapping):
        return mask_dict_password(value, secret)
    if isinstance(value, str):
        return mask_password(value, secret)
    if isinstance(value, _Collection):
        items = [_deep_mask(v, secret) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def mask_dict_password(dictionary, secret="***"):
    """A value equal to strutils.mask_dict_password(dictionary, secret)."""
    if type(dictionary) is dict:
        copy = False
    elif isinstance(dictionary, _Mapping):
        copy = True  # oslo always returns a plain dict
    else:
        raise TypeError("Expected a Mapping, got %s instead." % type(dictionary))
    out = None
    index = 0
    for k, v in dictionary.items():
        kind = type(v)
        # The order of oslo's tests: a mapping is walked whatever its key; then
        # a sensitive str key masks the value; then strings and collections.
        if kind is dict:
            new = mask_dict_password(v, secret)
        elif kind is str:
            if isinstance(k, str) and _sensitive_key(k):
                new = secret
            else:
                new = mask_password(v, secret)
        elif kind is int or kind is float or kind is bool or v is None:
            if isinstance(k, str) and _sensitive_key(k):
                new = secret
            else:
                new = v
        elif kind is list:
            if isinstance(k, str) and _sensitive_key(k):
                new = secret
            else:
                new = [_deep_mask(item, secret) for item in v]
                if all(x is y for x, y in zip(new, v)):
                    new = v
        elif isinstance(v, _Mapping):
            new = mask_dict_password(v, secret)
        elif isinstance(k, str) and _sensitive_key(k):
            new = secret
        elif isinstance(v, str):
            new = mask_password(v, secret)
        elif isinstance(v, _Collection):
            new = _deep_mask(v, secret)
        else:
            new = v
        if out is None:
            if new is v and not copy:
                index += 1
                continue
            # First change: copy what came before it, unchanged.
            out = {}
            for i, (k0, v0) in enumerate(dictionary.items()):
                if i == index:
                    break
                out[k0] = v0
        out[k] = new
    if out is None:
        return {} if copy else dictionary  # copy: an empty Mapping that is not a dict
    return out


# -- the log driver's serialisation ---------------------------------------------
_COMPACT = (",", ":")


class _Exotic(Exception):
    """A value json does not serialise natively (set, bytes, a Mapping that is
    not a dict, datetime...): masking may change it, take the exact path."""


def _refuse(value):
    raise _Exotic()


# json.dumps(..., separators=..., default=...) builds an encoder per call: build both once.
# The fast path skips json's cycle check: a cyclic message recurses until
# RecursionError, then takes the exact path, which raises what oslo raises.
# ensure_ascii=False: a message with any non-ASCII character gives non-ASCII
# text, which takes the exact path (str.isascii() is one fast pass), so the
# fast path's text is ASCII, exactly what ensure_ascii=True would write.
_FAST = json.JSONEncoder(separators=_COMPACT, default=_refuse, check_circular=False,
                         ensure_ascii=False).encode
_EXACT = json.JSONEncoder(separators=_COMPACT, default=jsonutils.to_primitive).encode


def dumps_masked(message, secret="***"):
    """Compact JSON text equal (after json.loads, key order included) to what
    the log driver writes, ``jsonutils.dumps(strutils.mask_dict_password(message))``.

    Fast path: serialise the message as it is, with no fallback for
    non-native values (json does dicts and their subclasses, lists, tuples,
    str, int, float, bool, None natively, and for those masking changes
    nothing but masked strings). If that succeeds, the text is ASCII (a
    non-ASCII character can lower-case to an ASCII letter, e.g. KELVIN SIGN
    to "k": such messages take the exact path) and, lower-cased, holds no
    marker, then no string in the message holds a sensitive key (json
    writes every ASCII letter of every key and string as is): masking would
    return an equal message, and the text is the answer. Otherwise (and for
    anything json refused): mask_dict_password then jsonutils.dumps, as the
    log driver does.
    """
    try:
        text = _FAST(message)
    except _Exotic:
        text = None
    except (TypeError, ValueError, RecursionError):
        text = None  # e.g. a key json refuses: let the exact path raise as oslo does
    if text is not None and text.isascii():
        low = text.lower()
        for marker in _MARKERS:
            if marker in low:
                break
        else:
            return text
    return _EXACT(mask_dict_password(message, secret))
