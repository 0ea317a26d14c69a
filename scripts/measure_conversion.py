"""Full-size conversion figures: build a random conformer_shaw.pt (2.3 GB, every original name and shape),
convert it in a fresh process, check what was written (773 tensors, 580,493,120 parameters), and print wall
time and peak RSS against the checkpoint size. Targets: under a minute, peak RSS under 2x the checkpoint.
The time includes starting Python and importing torch in the converting process; the RSS counts the pages of
the memory-mapped checkpoint it touched. The work directory is deleted afterwards, also on failure.

    PYTHONPATH=src .venv/bin/python scripts/measure_conversion.py [--workdir /tmp/w2vbert-conv]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_convert import fairseq2_state  # noqa: E402  (the test's full-size key table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/w2vbert-conv"))
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    try:
        measure(args.workdir)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, from the file's JSON header (8-byte little-endian length, then the header)."""
    with path.open("rb") as file:
        header = json.loads(file.read(int.from_bytes(file.read(8), "little")))
    return {name: entry["shape"] for name, entry in header.items() if name != "__metadata__"}


def measure(workdir: Path) -> None:
    src = workdir / "conformer_shaw.pt"
    torch.save({"model": fairseq2_state()}, src)
    size = src.stat().st_size
    code = (
        "import resource, sys; from w2vbert.cli.convert import convert; convert(sys.argv[1], sys.argv[2]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, str(src), str(workdir / "converted")],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    peak = int(out.stdout.strip().splitlines()[-1])
    shapes = safetensors_shapes(workdir / "converted" / "model.safetensors")
    parameters = sum(math.prod(shape) for shape in shapes.values())
    if (len(shapes), parameters) != (773, 580_493_120):
        raise SystemExit(f"wrote {len(shapes)} tensors, {parameters:,} parameters; expected 773, 580,493,120")
    print(
        f"checkpoint {size / 1e9:.2f} GB, 781 tensors -> {len(shapes)} tensors, {parameters:,} parameters; "
        f"conversion {seconds:.1f} s; peak RSS {peak / 1e9:.2f} GB ({peak / size:.2f}x the checkpoint)"
    )


if __name__ == "__main__":
    main()
