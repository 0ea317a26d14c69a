"""The C heap of the process (glibc's malloc on Linux; nothing is done elsewhere): when freed memory goes back to
the system, and handing it back on demand.

glibc serves an allocation above its mmap threshold (128 KiB, rising with what was freed to at most 32 MiB) with
fresh pages from the system, and returns the heap's free top once it passes the trim threshold. A forward pass on
the CPU allocates and frees the same large activations layer after layer: with glibc's defaults each of them is new
memory again, and every page of it is zeroed by the kernel on first touch (a page fault): 550,000 faults per
forward of 4 clips of 10 s on the 600M model in fp32, whose feed-forward activations are 31 MiB and attention bias
chunks 48-51 MiB. So the encoder's CPU forward sets, once per process (`keep_freed_memory`):
- by default, bounded thresholds: allocations under `MMAP_THRESHOLD` (64 MiB) come from the heap and are reused, and
  up to `TRIM_THRESHOLD` (128 MiB) of free heap top is kept: 4 x 10 s then faults 55,000-70,000 times and runs
  2-5% faster, and the peak of a 120 s clip through the attention's bias path stays 0.36 GB (benchmarks/NOTES.md,
  "Batch scaling"). A threshold of 128 MiB put that clip's 98 MB bias chunks on the heap, which fragmented: 2.4 GB;
- with W2VBERT_KEEP_FREED_MEMORY=1, unbounded ones: nothing is mmapped and the top never trimmed (no faults at all;
  the same fragmentation on long clips of ever other chunk sizes);
- with W2VBERT_KEEP_FREED_MEMORY=0, glibc's own.

Corpus runs hand the free pages back between batches (`return_freed_memory`), so that hours of batches of ever
other lengths do not fragment the heap upward.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 64 * 2**20  # allocations under this come from the heap (the default bound)
TRIM_THRESHOLD = 128 * 2**20  # free heap top kept for the next allocations (the default bound)
KEEP = 2**31 - 1  # the largest value mallopt takes (an int): no allocation is mmapped, the heap's top never trimmed
SETTING = "W2VBERT_KEEP_FREED_MEMORY"  # 1: keep everything; 0: glibc's own thresholds; unset: the bounded ones


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
    """Set glibc's thresholds once per process: unbounded (`KEEP`) when `enable` is True or W2VBERT_KEEP_FREED_MEMORY
    is 1, glibc's own when `enable` is False or it is 0, else the bounded ones (`MMAP_THRESHOLD`, `TRIM_THRESHOLD`);
    whether any was set. Nothing happens where the C library is not glibc."""
    if _KEPT:
        return _KEPT[0]
    setting = os.environ.get(SETTING, "") if enable is None else ("1" if enable else "0")
    libc = glibc()
    if setting == "0" or libc is None:
        return False
    mmap, trim = (KEEP, KEEP) if setting == "1" else (MMAP_THRESHOLD, TRIM_THRESHOLD)
    _KEPT.append(bool(libc.mallopt(M_MMAP_THRESHOLD, mmap)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim)))
    return _KEPT[0]


def return_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere). Batches of ever
    other lengths leave glibc's heap fragmented, and a corpus run's resident memory then creeps up for hours
    before it levels off (benchmarks/NOTES.md, "Corpus runs")."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)
