"""The main job of the README on the shipped example: transcribe recordings offline with the demo model.

examples/demo-model is a 2.47M-parameter CTC model trained from scratch by scripts/train_demo.py on synthetic
espeak-ng English (a 33-word vocabulary; its held-out error rates are in examples/demo-model/training_summary.json):
a demonstration, not a general recogniser (docs/demo-model.md).
examples/audio holds two espeak-ng recordings with a voice and speed it never trained on, and their reference
text. This runs `w2vbert transcribe` on them with word timestamps, compares with the references, and takes a
layer-2 embedding through `pipeline("feature-extraction")`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jiwer

import w2vbert
from w2vbert.cli.parser import main as w2vbert_command

ROOT = Path(__file__).resolve().parent
MODEL = ROOT / "demo-model"
CLIPS = sorted((ROOT / "audio").glob("*.wav"))


def main() -> int:
    print(f"$ w2vbert transcribe {' '.join(c.name for c in CLIPS)} --model examples/demo-model")
    code = w2vbert_command(["transcribe", *map(str, CLIPS), "--model", str(MODEL), "--no-progress"])
    asr = w2vbert.pipeline("automatic-speech-recognition", model=MODEL)
    hypotheses = [asr(str(clip))["text"] for clip in CLIPS]
    references = [clip.with_suffix(".txt").read_text().strip() for clip in CLIPS]
    print(f"word error against the reference texts: {jiwer.wer(references, hypotheses):.1%}")
    words = asr(str(CLIPS[0]), return_timestamps="word")["chunks"]
    print("word times:", ", ".join(f"{w['text']} {w['timestamp'][0]:.2f}-{w['timestamp'][1]:.2f}s" for w in words))
    embedding = w2vbert.pipeline("feature-extraction", model=MODEL, layer=2, pool="mean")(str(CLIPS[0]))
    print(f"layer-2 embedding of {CLIPS[0].name}: shape {embedding.shape}, mean over its 20 ms frames")
    return code


if __name__ == "__main__":
    sys.exit(main())
