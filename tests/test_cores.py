"""`claim_cores` (`w2vbert serve --pin-cores`, Ray replicas with `pin_cores`): a claiming process is pinned, every
thread of it, to cores no other claiming process holds; a claim that cannot be met names the numbers; a core is
free again once its process ends, however it ends."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Claims cores in a child (a thread started before the claim, to see it pinned too), prints them and the cores of
# its two threads, then holds them until killed.
CLAIM = """
import os, sys, threading, time
from pathlib import Path
from w2vbert.utils.cores import claim_cores
waiting = threading.Event()
early = threading.Thread(target=waiting.wait, daemon=True)
early.start()
cores = claim_cores(int(sys.argv[2]), Path(sys.argv[1]))
allowed = [line.split()[1] for line in Path(f"/proc/self/task/{early.native_id}/status").read_text().splitlines()
           if line.startswith("Cpus_allowed_list")]
print(cores, sorted(os.sched_getaffinity(0)), allowed[0], flush=True)
time.sleep(120)
"""


def claim(folder, count: int) -> tuple[subprocess.Popen, str]:
    child = subprocess.Popen([sys.executable, "-c", CLAIM, str(folder), str(count)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    return child, child.stdout.readline().strip()


def test_claiming_processes_get_cores_of_their_own_and_a_core_is_free_again_when_its_process_is_killed(tmp_path):
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    first, said = claim(tmp_path, 1)
    second, said_second = claim(tmp_path, 1)
    try:
        assert said == f"[{cores[0]}] [{cores[0]}] {cores[0]}"  # the lowest free core, every thread on it
        assert said_second == f"[{cores[1]}] [{cores[1]}] {cores[1]}"
        done = subprocess.run([sys.executable, "-c", CLAIM, str(tmp_path), str(len(cores) - 1)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert (f"RuntimeError: {len(cores) - 1} free cores wanted, {len(cores) - 2} of the {len(cores)} this "
                "process may use are free") in done.stderr.splitlines()[-1]
        first.kill()
        first.wait(30)
        again, said_again = claim(tmp_path, 1)  # the killed process's core, freed by the system
        again.kill()
        assert said_again == f"[{cores[0]}] [{cores[0]}] {cores[0]}"
    finally:
        for child in (first, second):
            child.kill()
            child.wait(30)
