"""How often the adapter's half-padded-step rule changes the demo model's text.

    python scripts/make_demo_data.py --out build/demo-data --train 1500 --heldout 150 --long 40
    PYTHONPATH=src python benchmarks/adapter_rule.py [--data build/demo-data] [--json out.json]

A clip of an odd number of 10 ms frames ends in a stacked step that holds its last real frame and a padding
frame. transformers' adapter reads that step for a clip alone; w2vbert reads it too, alone and in any batch
(`Wav2Vec2BertModel.alone_lengths`). Before that rule, w2vbert zeroed it. This transcribes every held-out clip and
joined recording alone, both ways (the old way by making `alone_lengths` return the valid steps only), and counts
the clips whose text changes, with the word and character error of each way against the references. (The rule
does change the numbers: up to 20 in log-probability on the last frame of 20 held-out clips.)
"""

from __future__ import annotations

import argparse
import csv
import json
import wave
from pathlib import Path

import jiwer

from w2vbert import pipeline
from w2vbert.model.encoder import Wav2Vec2BertModel

ROOT = Path(__file__).resolve().parent.parent


def transcribe_all(pipe, rows: list[dict], folder: Path) -> list[str]:
    return [pipe(str(folder / row["audio"]))["text"] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "demo-data")
    parser.add_argument("--model", type=Path, default=ROOT / "examples" / "demo-model")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    pipe = pipeline("automatic-speech-recognition", str(args.model))
    result = {"model": str(args.model)}
    rule = Wav2Vec2BertModel.alone_lengths
    for manifest in ("heldout.tsv", "heldout_long.tsv"):
        path = args.data / manifest
        if not path.exists():
            continue
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        odd = 0
        for row in rows:  # clips whose 10 ms frame count is odd: the ones the rule can change
            with wave.open(str(path.parent / row["audio"])) as w:
                frames = 1 + (w.getnframes() - 400) // 160
            odd += frames % 2
        now = transcribe_all(pipe, rows, path.parent)
        try:
            Wav2Vec2BertModel.alone_lengths = staticmethod(lambda features, lengths: lengths)
            before = transcribe_all(pipe, rows, path.parent)
        finally:
            Wav2Vec2BertModel.alone_lengths = staticmethod(rule)
        references = [row["text"] for row in rows]
        changed = sum(a != b for a, b in zip(now, before, strict=True))
        result[manifest] = {
            "clips": len(rows), "odd_frame_counts": odd, "texts_changed": changed,
            "wer_now": jiwer.wer(references, now), "cer_now": jiwer.cer(references, now),
            "wer_zeroed": jiwer.wer(references, before), "cer_zeroed": jiwer.cer(references, before),
        }
        r = result[manifest]
        print(f"{manifest}: {changed} of {len(rows)} texts change ({odd} with an odd frame count); WER/CER reading "
              f"the step {r['wer_now']:.2%}/{r['cer_now']:.2%}, zeroing it {r['wer_zeroed']:.2%}/{r['cer_zeroed']:.2%}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
