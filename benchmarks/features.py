"""Feature extraction speed: w2vbert's batched torch fbank vs transformers' SeamlessM4TFeatureExtractor.

    .venv/bin/python benchmarks/features.py [--repeats 7] [--threads N] [--json out.json]

Both run in this process on the same audio (espeak-ng test speech tiled to length, float32 numpy clips), both with
their default arguments apart from padding_value=1.0 (the W2v-BERT 2.0 checkpoint's), and both return numpy. The
two are timed alternately, one call each per repeat, so that load from other processes falls on both alike; the
table prints the best and the median of `repeats` wall times and their ratios, and the load average before the run.
Outputs are checked equal (1e-4) before timing. transformers' extractor is numpy in one thread whatever --threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from w2vbert import SeamlessM4TFeatureExtractor, load_audio

SPEECH = Path(__file__).resolve().parent.parent / "tests" / "data" / "quick.wav"


def clip(seconds: float, offset: int = 0) -> np.ndarray:
    speech = load_audio(SPEECH)
    audio = np.tile(speech, int(seconds * 16000 / len(speech)) + 2)
    return audio[offset : offset + int(seconds * 16000)].copy()


def alternate_times(first, second, repeats: int) -> tuple[list[float], list[float]]:
    """Wall times of `repeats` calls of each, alternating first/second, after one warm-up call of each."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return times


def run(repeats: int = 7) -> dict:
    import transformers

    ours = SeamlessM4TFeatureExtractor(padding_value=1.0)
    theirs = transformers.SeamlessM4TFeatureExtractor(padding_value=1.0)
    cases = {
        "batch 16 x 10 s": [clip(10, offset=1000 * i) for i in range(16)],
        "1 x 60 s": [clip(60)],
    }
    results = {}
    kwargs = dict(sampling_rate=16000, padding=True, return_tensors="np")
    for name, clips in cases.items():
        a, b = ours(clips, **kwargs), theirs(clips, **kwargs)
        diff = float(np.abs(a["input_features"] - b["input_features"]).max())
        assert diff < 1e-4, f"{name}: outputs differ by {diff}"
        t_ours, t_theirs = alternate_times(
            lambda clips=clips: ours(clips, **kwargs), lambda clips=clips: theirs(clips, **kwargs), repeats
        )
        best = (min(t_ours), min(t_theirs))
        median = (statistics.median(t_ours), statistics.median(t_theirs))
        results[name] = {
            "w2vbert_best_s": best[0],
            "transformers_best_s": best[1],
            "speedup_best": best[1] / best[0],
            "w2vbert_median_s": median[0],
            "transformers_median_s": median[1],
            "speedup_median": median[1] / median[0],
            "max_abs_diff": diff,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, help="torch intra-op threads for w2vbert (default: torch's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    results = run(args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {load:.2f} (1 min) before the run, {args.repeats} repeats")
    print(f"{'case':16s} {'w2vbert best/median':>20s} {'transformers best/median':>25s} {'speedup':>13s} "
          f"{'max diff':>9s}")
    for name, r in results.items():
        print(f"{name:16s} {r['w2vbert_best_s']:9.3f}s/{r['w2vbert_median_s']:.3f}s "
              f"{r['transformers_best_s']:14.3f}s/{r['transformers_median_s']:.3f}s "
              f"{r['speedup_best']:5.1f}x/{r['speedup_median']:4.1f}x {r['max_abs_diff']:9.1e}")
    if args.json:
        args.json.write_text(json.dumps({"threads": torch.get_num_threads(), "load": load} | results, indent=2) + "\n")


if __name__ == "__main__":
    main()
