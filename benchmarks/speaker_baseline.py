"""The no-training reference for x-vector figures: each held-out clip's hidden states of one encoder layer, pooled
to their mean and standard deviation per dimension, standardised over the clips, scored by cosine on the trials.

    python scripts/make_task_data.py --task speakers --out build/speaker-data
    PYTHONPATH=src python benchmarks/speaker_baseline.py [--model examples/demo-model] [--layer 1]

An x-vector head fine-tuned on the training speakers should beat this; the README quotes both (2026-12-01, demo
model's encoder, layer 1: EER 31.6% on build/speaker-data's 4,560 trials).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch

from w2vbert import pipeline
from w2vbert.data.verification import cosine_scores, equal_error_rate, min_dcf, read_trials

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "speaker-data")
    parser.add_argument("--model", default=str(ROOT / "examples" / "demo-model"))
    parser.add_argument("--layer", type=int, default=1)
    args = parser.parse_args()
    with open(args.data / "heldout.tsv", newline="") as handle:
        clips = [str((args.data / row["audio"]).resolve()) for row in csv.DictReader(handle, delimiter="\t")]
    embed = pipeline("feature-extraction", args.model, layer=args.layer)
    statistics = np.stack([np.concatenate([h.mean(0), h.std(0)]) for h in embed(clips)])
    statistics = (statistics - statistics.mean(0)) / (statistics.std(0) + 1e-6)
    embeddings = {clip: torch.from_numpy(row) for clip, row in zip(clips, statistics, strict=True)}
    trials = read_trials(args.data / "trials.txt")
    scores = cosine_scores(embeddings, trials)
    targets = torch.tensor([target for _, _, target in trials], dtype=torch.bool)
    eer, threshold = equal_error_rate(scores, targets)
    print(f"layer {args.layer} mean+std, cosine: EER {eer:.1%} (threshold {threshold:.3f}), "
          f"minDCF {min_dcf(scores, targets):.3f}, {len(trials)} trials")


if __name__ == "__main__":
    main()
