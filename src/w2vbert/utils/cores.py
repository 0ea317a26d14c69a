"""Cores a process keeps to itself: `claim_cores`, which `w2vbert serve --pin-cores` and Ray Serve replicas with
`pin_cores` call once, before their model runs.

Why: Ray reserves CPUs as counts, and the scheduler places a server's threads where it likes; a replica that should
be one core (one torch thread) otherwise runs its decoding and features beside its model on another core, and
replicas share cores with each other (docs/scaling.md, "Numbers"). A claim is an advisory lock (`fcntl.flock`) on
`core-N.lock` in a folder of the machine's temporary directory, held as long as the process lives: the system drops
it when the process ends, however it ends, so a killed replica's core is free for the next one. Only processes that
claim see the claims; others are scheduled as ever.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

CLAIMS = Path(tempfile.gettempdir()) / "w2vbert-cores"  # one folder per machine (per temporary directory)
_HELD: list[IO] = []  # the lock files of this process's claim, open while it lives


def claim_cores(count: int, folder: Path = CLAIMS) -> list[int]:
    """Pin this process (every thread it has and will have) to `count` cores that no other claiming process holds,
    the lowest free ones of those it may run on; the cores. A RuntimeError naming the numbers when fewer are free."""
    if count < 1:
        raise ValueError(f"expected at least 1 core to claim, got {count}")
    allowed = sorted(os.sched_getaffinity(0))
    folder.mkdir(parents=True, exist_ok=True)
    taken: list[tuple[int, IO]] = []
    for core in allowed:
        lock = (folder / f"core-{core}.lock").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        taken.append((core, lock))
        if len(taken) == count:
            break
    if len(taken) < count:
        for _, lock in taken:
            lock.close()
        raise RuntimeError(f"{count} free cores wanted, {len(taken)} of the {len(allowed)} this process may use are "
                           f"free (the others are claimed by other processes, {folder})")
    cores = [core for core, _ in taken]
    _HELD.extend(lock for _, lock in taken)
    for thread in os.listdir("/proc/self/task"):  # the threads running now; new ones inherit their creator's cores
        os.sched_setaffinity(int(thread), cores)
    return cores
