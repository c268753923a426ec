"""Finding and loading libnotif, and its ctypes prototypes.

Lookup order (the first that exists wins):

1. the environment variable ``NOTIF_LIBRARY``: a path to libnotif.so
   (an error if it is set and cannot be loaded: no silent fallback);
2. the copy shipped inside this package (``libnotif/libnotif.so``, put there by
   ``pip install``);
3. ``ctypes.util.find_library("notif")`` (a system-wide ``make install``).
"""

import ctypes
import ctypes.util
import os
import threading

_lock = threading.Lock()
_lib = None
_lib_path = None

SHIPPED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libnotif.so")


class NotifStats(ctypes.Structure):
    """notif_stats from include/notif.h, field for field (all uint64_t)."""

    _fields_ = [
        ("subscribers", ctypes.c_uint64),
        ("accepted", ctypes.c_uint64),
        ("emitted", ctypes.c_uint64),
        ("delivered", ctypes.c_uint64),
        ("dropped_no_subscriber", ctypes.c_uint64),
        ("dropped_slow", ctypes.c_uint64),
        ("dropped_backlog", ctypes.c_uint64),
        ("rejected", ctypes.c_uint64),
        ("bytes_sent", ctypes.c_uint64),
        ("disconnected", ctypes.c_uint64),
        ("dropped_closed", ctypes.c_uint64),
        ("refused", ctypes.c_uint64),
        ("fanout", ctypes.c_uint64),
        ("filtered", ctypes.c_uint64),
        ("bad_requests", ctypes.c_uint64),
        ("stats_requests", ctypes.c_uint64),
        ("denied", ctypes.c_uint64),
        ("replayed", ctypes.c_uint64),
        ("replay_bytes", ctypes.c_uint64),
        ("replay_messages", ctypes.c_uint64),
        ("replay_oldest", ctypes.c_uint64),
        ("next_seq", ctypes.c_uint64),
        ("writes", ctypes.c_uint64),
        ("wakeups", ctypes.c_uint64),
        ("written_through", ctypes.c_uint64),
        ("disconnected_costly", ctypes.c_uint64),
        ("kept_no_subscriber", ctypes.c_uint64),
    ]


def _candidates():
    env = os.environ.get("NOTIF_LIBRARY")
    if env:
        return [("NOTIF_LIBRARY", env)]
    found = []
    if os.path.exists(SHIPPED):
        found.append(("shipped", SHIPPED))
    system = ctypes.util.find_library("notif")
    if system:
        found.append(("find_library", system))
    return found


def _prototype(lib):
    c_int, c_size_t, c_uint, c_char_p, c_void_p = (
        ctypes.c_int, ctypes.c_size_t, ctypes.c_uint, ctypes.c_char_p, ctypes.c_void_p)
    protos = {
        "notif_last_error": (c_char_p, []),
        "notif_strerror": (c_char_p, [c_int]),
        "notif_version": (c_char_p, []),
        "notif_open": (c_void_p, [c_char_p]),
        "notif_open_with": (c_void_p, [c_char_p, c_void_p]),
        "notif_open_fd": (c_void_p, [c_int, c_void_p]),
        "notif_emit": (c_int, [c_void_p, c_char_p]),
        "notif_emit_len": (c_int, [c_void_p, c_char_p, c_size_t]),
        "notif_subscribers": (c_int, [c_void_p]),
        "notif_skip": (c_int, [c_void_p]),
        "notif_get_stats": (c_int, [c_void_p, ctypes.POINTER(NotifStats), c_size_t]),
        "notif_close": (None, [c_void_p]),
        "notif_options_new": (c_void_p, []),
        "notif_options_free": (None, [c_void_p]),
        "notif_options_set_mode": (c_int, [c_void_p, c_uint]),
        "notif_options_set_group": (c_int, [c_void_p, c_char_p]),
        "notif_options_set_subscriber_buffer": (c_int, [c_void_p, c_size_t]),
        "notif_options_set_memory_limit": (c_int, [c_void_p, c_size_t]),
        "notif_options_set_max_message": (c_int, [c_void_p, c_size_t]),
        "notif_options_set_max_subscribers": (c_int, [c_void_p, c_size_t]),
        "notif_options_set_max_per_uid": (c_int, [c_void_p, c_size_t]),
        "notif_options_set_linger_ms": (c_int, [c_void_p, c_uint]),
        "notif_options_set_slow_policy": (c_int, [c_void_p, c_int]),
        "notif_options_set_backlog": (c_int, [c_void_p, c_size_t]),
        "notif_options_set_replay": (c_int, [c_void_p, c_size_t]),
        "notif_options_allow_uid": (c_int, [c_void_p, c_uint]),
        "notif_options_allow_gid": (c_int, [c_void_p, c_uint]),
    }
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def load():
    """The loaded library (loaded once per process)."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        candidates = _candidates()
        if not candidates:
            raise OSError(
                "notif: libnotif not found: NOTIF_LIBRARY is not set, %s does not exist "
                "(reinstall the package with `pip install ./bindings/python`) and "
                "ctypes.util.find_library('notif') found nothing" % SHIPPED)
        errors = []
        for origin, path in candidates:
            try:
                lib = ctypes.CDLL(path, use_errno=True)
            except OSError as exc:
                errors.append("%s (%s): %s" % (path, origin, exc))
                continue
            _lib = _prototype(lib)
            _lib_path = path
            return _lib
        raise OSError("notif: cannot load libnotif: " + "; ".join(errors))


_fast = None


def fast():
    """notif_subscribers and notif_skip bound through ctypes.PyDLL (the same
    loaded library): they are one atomic operation each and never block, so
    the call keeps the GIL instead of releasing and retaking it, which is most
    of the cost of a ctypes call this small. Arguments are passed unconverted
    (argtypes None): give a ctypes.c_void_p."""
    global _fast
    if _fast is None:
        load()
        lib = ctypes.PyDLL(_lib_path)
        for name in ("notif_subscribers", "notif_skip"):
            fn = getattr(lib, name)
            fn.restype = ctypes.c_int
            fn.argtypes = None
        _fast = (lib.notif_subscribers, lib.notif_skip)
    return _fast


def library_path():
    """The path (or name) libnotif was loaded from."""
    load()
    return _lib_path


def last_error():
    msg = load().notif_last_error()
    return msg.decode("utf-8", "replace") if msg else ""


def strerror(code):
    """The library's description of an error code (negative or positive errno)."""
    return load().notif_strerror(int(code)).decode("utf-8", "replace")


def version():
    """The library's version, "MAJOR.MINOR.PATCH"."""
    return load().notif_version().decode("ascii")
