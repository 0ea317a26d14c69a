"""Feature extraction speed: w2vbert's batched torch fbank vs transformers' SeamlessM4TFeatureExtractor.

    .venv/bin/python benchmarks/features.py [--repeats 3] [--json out.json]

Both run in this process on the same audio (espeak-ng test speech tiled to length); the table prints the best
of `repeats` wall times and the ratio. Outputs are checked equal (1e-4) before timing.
"""

from __future__ import annotations

import argparse
import json
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


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run(repeats: int = 3) -> dict:
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
        t_ours = best_time(lambda clips=clips: ours(clips, **kwargs), repeats)
        t_theirs = best_time(lambda clips=clips: theirs(clips, **kwargs), repeats)
        results[name] = {"w2vbert_s": t_ours, "transformers_s": t_theirs, "speedup": t_theirs / t_ours,
                         "max_abs_diff": diff}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = run(args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'case':18s} {'w2vbert':>10s} {'transformers':>13s} {'speedup':>8s} {'max diff':>9s}")
    for name, r in results.items():
        print(f"{name:18s} {r['w2vbert_s']:9.3f}s {r['transformers_s']:12.3f}s {r['speedup']:7.1f}x "
              f"{r['max_abs_diff']:9.1e}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
