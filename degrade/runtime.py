"""Process-level tuning for image workloads, applied by entry points (CLI, workers, benchmarks)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_malloc(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
    """Keep glibc from mmapping and unmapping every image-sized temporary.

    By default glibc serves allocations above ~128 KiB (one 256×256 float image is 768 KiB)
    with fresh mmaps that it returns on free, so every array page-faults anew: noise operators
    ran 2–4× slower from that alone. Raising the thresholds recycles the heap instead. A no-op
    elsewhere than glibc; returns whether it applied.
    """
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
    except (OSError, AttributeError):
        return False
    _done = ok
    return ok


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc's ``malloc_trim``); a no-op elsewhere.

    glibc raises its mmap threshold to the largest array freed so far (up to 32 MiB), so after the first
    large image the tile buffers and planes of every later one come from the heap, and photos of varying
    sizes fragment it: freed but never returned, a loop of ``zoo.restore`` or a ``daguerre serve`` grew by
    2-3 MB a photo without end (990 MB after 200 photos, 470 MB of it live)."""
    global _trim
    if _trim is None:
        _trim = False
        if sys.platform.startswith("linux"):
            try:
                _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):  # not glibc
                pass
    return bool(_trim and _trim(0))


_trim = None


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count, where the OS has one): what
    caps local workers, since the work they do is CPU-bound."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def die_with_parent(parent: int) -> None:
    """In a worker process: get SIGKILL when the process that started it dies (Linux), and exit at once if
    it already has. A ``kill -9`` of a command left its workers computing on their own for minutes."""
    import os
    import signal

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)
