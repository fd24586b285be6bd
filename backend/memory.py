"""Give a large job's memory back to the system, and read what the process holds.

glibc keeps freed heap memory for reuse: after one big request a process can sit at
its peak for good (measured: 2.0 GB resident after one 60 s × 32-take request). The
worker calls `give_back` after every job; when the process holds more than a threshold
above what it held after the last trim, it calls `malloc_trim(0)`, which returns the free
pages of every arena.
Elsewhere (macOS, Windows, musl) these are no-ops: their allocators return memory
on their own, or offer no such call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading

log = logging.getLogger("thunder.memory")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):  # not glibc
        return None, None
    try:
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2
    except AttributeError:  # glibc < 2.33: trim without looking first
        info = None
    return libc, info


_LIBC, _MALLINFO2 = _libc()


def heap_free_bytes() -> int | None:
    """Free bytes glibc holds in its arenas (None where that cannot be known)."""
    if _MALLINFO2 is None:
        return None
    return int(_MALLINFO2().fordblks)


_trimmed_at = 0  # resident bytes just after the last trim
_lock = threading.Lock()


def give_back(threshold: int = 0) -> bool:
    """malloc_trim(0) when the process holds more than `threshold` bytes beyond what it held
    after the last trim (a large job has left its peak resident); True if it trimmed. The
    trim costs 10-160 ms on a fragmented 1.5 GB heap, so it is not done after every job."""
    global _trimmed_at
    if _LIBC is None:
        return False
    with _lock:
        resident = rss_bytes()
        if resident and resident - _trimmed_at <= threshold:
            return False
        _LIBC.malloc_trim(0)
        _trimmed_at = rss_bytes()
    log.debug("returned free heap to the system: %.0f MB -> %.0f MB resident", resident / 2**20, _trimmed_at / 2**20)
    return True


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default); 0 where /proc is missing."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
