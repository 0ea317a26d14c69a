"""The C heap of the process (glibc's malloc on Linux; nothing is done elsewhere): when freed memory goes back to
the system, and handing it back on demand.

glibc serves an allocation above its mmap threshold (128 KiB, rising with what was freed to at most 32 MiB) with
fresh pages from the system, and returns the heap's free top once it passes the trim threshold. A forward pass on
the CPU allocates and frees the same large activations layer after layer: with glibc's defaults each of them is new
memory again, and every page of it is zeroed by the kernel on first touch (a page fault). At 4 clips of 10 s on the
600M model that was 460,000 page faults per forward, 2.8 million at 8 clips, and batches cost more per clip than
one clip alone; with freed memory kept for the next allocation there are none, and 4 clips cost 4x one clip or
less (benchmarks/NOTES.md, "Batch scaling"). The cost is memory: a heap that never gives back can fragment, and one
120 s clip through the attention's bias path (row chunks of ever other sizes) peaked at 2.2-2.4 GB instead of
0.37 GB. So it is opt-in: W2VBERT_KEEP_FREED_MEMORY=1 in the environment (or `keep_freed_memory(True)`) for
batched inference on clips of ordinary length, where the peak did not grow (2.82 against 2.87 GB at 4 x 10 s).

The encoder's forward on the CPU calls `keep_freed_memory()` (model/encoder.py), which does nothing unless asked,
once per process. Corpus runs hand the free pages back between batches (`return_freed_memory`), so that hours of
batches of ever other lengths do not fragment the heap upward.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
KEEP = 2**31 - 1  # the largest value mallopt takes (an int): no allocation is mmapped, the heap's top never trimmed
OPT_IN = "W2VBERT_KEEP_FREED_MEMORY"


@functools.lru_cache(maxsize=1)
def glibc() -> Any:
    """The C library when it is glibc on Linux (the one with mallopt and malloc_trim); None elsewhere (Windows,
    macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):
        return None
    if not (hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt")):
        return None
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


_KEPT: list[bool] = []  # set once per process


def keep_freed_memory(enable: bool | None = None) -> bool:
    """Keep the memory this process frees for its next allocations (glibc's mmap and trim thresholds raised), once
    per process, when `enable` is True or, left None, when W2VBERT_KEEP_FREED_MEMORY=1; whether it is kept. Nothing
    happens where the C library is not glibc."""
    if _KEPT:
        return _KEPT[0]
    wanted = os.environ.get(OPT_IN, "0") == "1" if enable is None else enable
    libc = glibc()
    if not wanted or libc is None:
        return False
    _KEPT.append(bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP)))
    return _KEPT[0]


def return_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere). Batches of ever
    other lengths leave glibc's heap fragmented, and a corpus run's resident memory then creeps up for hours
    before it levels off (benchmarks/NOTES.md, "Corpus runs")."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)
