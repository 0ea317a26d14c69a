"""Forced alignment of an hour: time and peak memory of `w2vbert.text.alignment.forced_align` on random
log-probabilities
of 90,000 frames (40 ms each) and a 45,000-character transcript.

    PYTHONPATH=src python benchmarks/align_hour.py
"""

import resource
import time

import numpy as np

from w2vbert.text.alignment import forced_align


def main() -> None:
    rng = np.random.default_rng(0)
    frames, vocab = 90_000, 30          # an hour at 40 ms per frame
    targets = list(rng.integers(1, vocab, 45_000))  # ~45k characters of transcript
    logits = rng.normal(size=(frames, vocab)).astype(np.float32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t = time.perf_counter()
    path, score = forced_align(log_probs, targets, 0)
    print(f"1 h ({frames} frames, {len(targets)} tokens, {2*len(targets)+1} states): {time.perf_counter()-t:.0f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.0f} MB (before {before:.0f} MB)")


if __name__ == "__main__":
    main()
