"""The C heap of the process (glibc's malloc on Linux; nothing is done elsewhere): when freed memory goes back to
the system, and handing it back on demand.

glibc serves an allocation above its mmap threshold (128 KiB, rising with what was freed to at most 32 MiB) with
fresh pages from the system, and returns the heap's free top once it passes the trim threshold. A forward pass on
the CPU allocates and frees the same large activations layer after layer: with glibc's defaults each of them is new
memory again, and every page of it is zeroed by the kernel on first touch (a page fault). At 4 clips of 10 s on the
600M model that was 460,000 page faults per forward, 2.8 million at 8 clips, and batches cost more per clip than
one clip alone; with freed memory kept for the next allocation there are none, and 4 clips cost 4x one clip or
less (benchmarks/NOTES.md, "Batch scaling"). The peak is unchanged (the same tensors are alive at once); what
changes is that the process keeps its peak after a forward instead of shrinking, until `return_freed_memory`.

`keep_freed_memory` is called by the encoder's forward on the CPU (model/encoder.py), once per process;
W2VBERT_KEEP_FREED_MEMORY=0 in the environment leaves glibc's defaults alone. Corpus runs hand the free pages back
between batches (`return_freed_memory`), so that hours of batches of ever other lengths do not fragment the heap
upward.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
KEEP = 2**31 - 1  # the largest value mallopt takes (an int): no allocation is mmapped, the heap's top never trimmed
OPT_OUT = "W2VBERT_KEEP_FREED_MEMORY"


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


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Keep the memory this process frees for its next allocations (glibc's mmap and trim thresholds raised), once
    per process; False where it is not glibc or W2VBERT_KEEP_FREED_MEMORY=0."""
    libc = glibc()
    if libc is None or os.environ.get(OPT_OUT, "1") == "0":
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP)) and bool(libc.mallopt(M_TRIM_THRESHOLD, KEEP))


def return_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere). Batches of ever
    other lengths leave glibc's heap fragmented, and a corpus run's resident memory then creeps up for hours
    before it levels off (benchmarks/NOTES.md, "Corpus runs")."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)
