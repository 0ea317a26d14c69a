"""Full-size conversion figures: build a random conformer_shaw.pt (2.3 GB, every original name and shape),
convert it in a fresh process, and print wall time and peak RSS against the checkpoint size.

    .venv/bin/python scripts/measure_conversion.py [--workdir /tmp/w2vbert-conv]
"""

from __future__ import annotations

import argparse
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
    src = args.workdir / "conformer_shaw.pt"
    torch.save({"model": fairseq2_state()}, src)
    size = src.stat().st_size
    code = (
        "import resource, sys; from w2vbert.convert import convert; convert(sys.argv[1], sys.argv[2]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, str(src), str(args.workdir / "converted")],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - start
    peak = int(out.stdout.strip().splitlines()[-1])
    print(
        f"checkpoint {size / 1e9:.2f} GB; conversion {seconds:.1f} s; peak RSS {peak / 1e9:.2f} GB "
        f"({peak / size:.2f}x the checkpoint)"
    )
    shutil.rmtree(args.workdir)


if __name__ == "__main__":
    main()
