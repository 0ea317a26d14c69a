"""Word error of a CTC model on held-out clips that are not digitally clean: dither and white-noise floors.

    python scripts/make_demo_data.py --out build/demo-data --train 1500 --heldout 150 --long 300
    PYTHONPATH=src python benchmarks/noise.py [--model examples/demo-model] [--data build/demo-data] [--json out.json]

(The joined held-out recordings depend on --long, which draws before them: use the demo model's data command.)

Each held-out clip (heldout.tsv), and each joined held-out recording with its pauses (heldout_long.tsv, when
present, through 30 s windows), is transcribed as written (clean) and after each of:
- dither: triangular dither of one 16-bit step added to the 16 kHz samples, then stored as 16-bit;
- 44.1 kHz dithered: resampled to 44.1 kHz, dithered and stored as 16-bit, then read back at 16 kHz (what a
  FLAC that sox wrote at 44.1 kHz becomes when a user transcribes it; the resampler is soxr, as in audio.py);
- white noise at -60 and -40 dBFS (RMS) under the whole clip.
Noise is drawn from a generator seeded per clip, so every run and every model sees the same inputs. The table
gives WER and CER per condition and the WER as a multiple of the clean WER (the target: at most 1.5x).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import soxr

from w2vbert import pipeline
from w2vbert.audio.augment import LSB_16BIT
from w2vbert.audio.decode import load_audio
from w2vbert.training.scorers import error_rates

ROOT = Path(__file__).resolve().parent.parent


def as_16bit(samples: np.ndarray) -> np.ndarray:
    return (np.round(np.clip(samples, -1, 1) * 32767) / 32767).astype(np.float32)


def tpdf(rng: np.random.Generator, size: int) -> np.ndarray:
    return LSB_16BIT * (rng.random(size) - rng.random(size))


def dither(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return as_16bit(audio + tpdf(rng, len(audio)))


def dithered_44k(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    high = soxr.resample(audio, 16000, 44100)
    return soxr.resample(as_16bit(high + tpdf(rng, len(high))), 44100, 16000).astype(np.float32)


def noise_at(dbfs: float):
    def add(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return as_16bit(audio + 10 ** (dbfs / 20) * rng.standard_normal(len(audio)))
    return add


CONDITIONS = {"clean": None, "dither": dither, "44.1 kHz dithered": dithered_44k,
              "noise -60 dBFS": noise_at(-60), "noise -40 dBFS": noise_at(-40)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "demo-data")
    parser.add_argument("--model", type=Path, default=ROOT / "examples" / "demo-model")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    asr = pipeline("automatic-speech-recognition", str(args.model), chunk_length_s=30)
    report = {"model": str(args.model)}
    for manifest in ("heldout.tsv", "heldout_long.tsv"):
        if not (args.data / manifest).is_file():
            continue
        with open(args.data / manifest, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        clips = [load_audio(str(args.data / row["audio"])) for row in rows]
        references = [row["text"] for row in rows]
        results = {}
        for name, change in CONDITIONS.items():
            inputs = clips if change is None else [change(c, np.random.default_rng(i)) for i, c in enumerate(clips)]
            hypotheses = [out["text"] for out in asr(inputs, batch_size=16)]
            results[name] = error_rates(references, hypotheses)
        clean = results["clean"]["wer"]
        print(f"\n{args.model}: {len(rows)} recordings of {args.data / manifest}")
        print(f"{'condition':20s} {'WER':>7s} {'CER':>7s} {'x clean WER':>12s}")
        for name, rates in results.items():
            print(f"{name:20s} {rates['wer']:7.2%} {rates['cer']:7.2%} {rates['wer'] / clean:12.2f}")
        report[manifest] = {"recordings": len(rows), "results": results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
