"""Handing a run's freed memory back to the system: glibc malloc's thresholds, set once a
process before its first run.

glibc raises its mmap threshold each time a large block is freed (up to 32 MiB), so a page's
buffers (libpq results, JSON texts, lists of a page's values) land on the heap after the
first page, and the heap is trimmed only above 128 KiB free at its top: a process keeps
100-150 MB it no longer uses after the wide pages. Fixed thresholds of 128 KiB map each large
block on its own and give it back when freed (the wide shapes' peak RSS 300 -> 210 MB, for
about 4% time on the wide full refresh, none measurable on SQLite; README.md). Arrow's
buffers come from its own pool and are not affected.

A process where either threshold was chosen (`MALLOC_MMAP_THRESHOLD_`,
`MALLOC_TRIM_THRESHOLD_`, or `GLIBC_TUNABLES` naming malloc) keeps that choice, and nothing
is done off glibc."""

from __future__ import annotations

import os
import threading

THRESHOLD = 128 * 1024
_M_TRIM_THRESHOLD = -1  # malloc.h
_M_MMAP_THRESHOLD = -3
_CHOSEN = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_lock = threading.Lock()
_applied: bool | None = None  # None: not tried yet in this process


def release_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds at `THRESHOLD` (once a process); whether they
    are set this way. False off glibc and where the environment chose them."""
    global _applied
    with _lock:
        if _applied is None:
            _applied = _set_thresholds()
        return _applied


def _set_thresholds() -> bool:
    if any(name in os.environ for name in _CHOSEN) or "malloc" in os.environ.get(
            "GLIBC_TUNABLES", ""):
        return False
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
    except (AttributeError, ValueError, OSError):  # no confstr, or not glibc's name for it
        return False
    import ctypes  # only where it is used: the CLI's start-up does not pay for it

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success
    return bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, THRESHOLD))
