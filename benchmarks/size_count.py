"""What the size check of config validation costs: the parameter count of a config's models, in fresh processes.

    PYTHONPATH=src python benchmarks/size_count.py [--repeat 3]

Validation (where every model is built or loaded) counts the parameters of the bare model and of each head by
building them on the meta device with 0 or 1 blocks and adapter layers, without weight init
(model/meta_count.py). Each row is measured in a new Python process, as the first count of a program is: after the
model classes are imported (a program that builds a model has them), the first count, a count of other values
(a new config), and the same config again (kept). The reference, in the same run, is the plain way: the bare model
alone built whole on the meta device (what `w2vbert info` does), first in a process and again. Wall and CPU time
(this process's), the best of --repeat processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "W2v-BERT 2.0 (defaults)": {},
    "tiny (tests' config)": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
                                 vocab_size=11, tdnn_dim=[16, 16, 20], tdnn_kernel=[3, 3, 1], tdnn_dilation=[1, 2, 1]),
}

CHILD = r"""
import json, sys, time
kwargs, plain = json.loads(sys.argv[1]), sys.argv[2] == "plain"

def timed(work):
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000

from w2vbert.model.config import Wav2Vec2BertConfig
times = {"model classes imported": timed(lambda: __import__("w2vbert.model.meta_count"))}
import torch
from w2vbert.model import size
from w2vbert.model.encoder import Wav2Vec2BertModel
from w2vbert.model.meta_count import LayerCountsConfig
config = Wav2Vec2BertConfig(**kwargs)
if plain:  # the whole bare model on meta, weights initialised there, validation (the count) left out
    whole = LayerCountsConfig.of(config, config.num_hidden_layers, config.num_adapter_layers)
    def build():
        with torch.device("meta"):
            Wav2Vec2BertModel(whole).num_parameters()
    times["plain: first meta build"] = timed(build)
    times["plain: meta build again"] = timed(build)
else:
    other = Wav2Vec2BertConfig(**{**kwargs, "num_hidden_layers": config.num_hidden_layers + 1})
    times["first count"] = timed(lambda: size.size_problem(config))
    times["count of other values"] = timed(lambda: size.size_problem(other))
    times["same values again (kept)"] = timed(lambda: size.size_problem(config))
print(json.dumps(times))
"""


def measure(kwargs: dict, plain: bool, repeat: int) -> dict[str, tuple[float, float]]:
    """The best (wall ms, CPU ms) of each step over `repeat` fresh processes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeat):
        child = subprocess.run([sys.executable, "-c", CHILD, json.dumps(kwargs), "plain" if plain else "count"],
                               capture_output=True, text=True, check=True, env=env)
        for step, (wall, cpu) in json.loads(child.stdout).items():
            best[step] = min(best.get(step, (wall, cpu)), (wall, cpu))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per row; the best is shown")
    args = parser.parse_args()
    print(f"{'config':26s} {'step':34s} {'wall ms':>9s} {'CPU ms':>9s}")
    for name, kwargs in CONFIGS.items():
        for plain in (False, True):
            for step, (wall, cpu) in measure(kwargs, plain, args.repeat).items():
                print(f"{name:26s} {step:34s} {wall:9.1f} {cpu:9.1f}")


if __name__ == "__main__":
    main()
