"""`--vad` on a recording that is half non-speech: speech clips with pauses of digital silence and of white noise
(-90 to -40 dBFS) between them, transcribed with and without voice activity detection in the same run.

    PYTHONPATH=src .venv/bin/python benchmarks/vad.py [--minutes 3] [--model DIR] [--manifest TSV]

Prints seconds each way (best of `--repeat`, the detector's time included), the speed ratio, the words each way
writes into the pauses (a word whose time span touches no clip), and the word error against the clips' reference
texts each way, beside the clips transcribed alone with nothing around them (what the model can do on clean
speech). The clips are examples/audio (the demo model's vocabulary), or a manifest's (`audio`, `text` columns,
e.g. build/demo-data/heldout.tsv of scripts/make_demo_data.py). tests/test_vad.py builds its recording here.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SAMPLING_RATE = 16000
PAUSES_DBFS = (None, -90.0, -60.0, -50.0, -40.0)  # None: digital silence; else white noise at this RMS level


@dataclass
class Mixed:
    """A recording of clips and pauses, and where its speech is."""

    audio: np.ndarray  # (samples,) float32 at 16 kHz
    spans: list[tuple[float, float]]  # (start_s, end_s) of each clip, in order
    texts: list[str]  # each clip's reference text

    @property
    def reference(self) -> str:
        return " ".join(self.texts)


def example_clips(manifest: Path | None = None) -> list[tuple[np.ndarray, str]]:
    """(16 kHz audio, reference text) of the clips: examples/audio, or a manifest's rows."""
    from w2vbert import load_audio

    if manifest is None:
        rows = [(p, p.with_suffix(".txt").read_text().strip()) for p in sorted((ROOT / "examples/audio").glob("*.wav"))]
    else:
        with open(manifest, newline="") as f:
            rows = [(manifest.parent / r["audio"], r["text"]) for r in csv.DictReader(f, delimiter="\t")]
    return [(load_audio(path), text) for path, text in rows]


def mixed_recording(clips: list[tuple[np.ndarray, str]], seconds: float, seed: int = 0) -> Mixed:
    """Clips in turn with a pause before each and one at the end, until `seconds` of speech; the pauses, of
    0.5-1.5 times the clip's length, are scaled so that they add up to exactly as much as the clips (50%), and
    cycle through `PAUSES_DBFS`."""
    rng = np.random.default_rng(seed)
    chosen, total = [], 0
    while total < seconds * SAMPLING_RATE:
        audio, text = clips[len(chosen) % len(clips)]
        chosen.append((audio, text))
        total += len(audio)
    lengths = np.array([len(a) for a, _ in chosen] + [len(chosen[0][0])]) * rng.uniform(0.5, 1.5, len(chosen) + 1)
    lengths = np.floor(lengths * total / lengths.sum()).astype(int)
    lengths[-1] += total - lengths.sum()  # exactly as much pause as speech
    pieces, spans, at = [], [], 0
    for index, length in enumerate(lengths):
        level = PAUSES_DBFS[index % len(PAUSES_DBFS)]
        pause = np.zeros(length, np.float32) if level is None else rng.standard_normal(length) * 10 ** (level / 20)
        pieces.append(pause.astype(np.float32))
        at += length
        if index < len(chosen):
            audio = chosen[index][0]
            pieces.append(audio)
            spans.append((at / SAMPLING_RATE, (at + len(audio)) / SAMPLING_RATE))
            at += len(audio)
    return Mixed(np.concatenate(pieces), spans, [text for _, text in chosen])


def inserted_words(chunks: list[dict], spans: list[tuple[float, float]]) -> list[dict]:
    """The word chunks (timestamp in seconds) whose time touches no speech span: words written into a pause."""
    return [c for c in chunks if not any(c["timestamp"][0] < end and c["timestamp"][1] > start
                                         for start, end in spans)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3, help="recording length (half of it speech)")
    parser.add_argument("--model", type=Path, default=ROOT / "examples" / "demo-model")
    parser.add_argument("--manifest", type=Path, help="clips from this manifest (default: examples/audio)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs each way; the best counts")
    args = parser.parse_args()
    import torch

    from w2vbert import pipeline
    from w2vbert.audio.vad import VadOptions, speech_regions
    from w2vbert.loading.devices import cpu_name

    clips = example_clips(args.manifest)
    mixed = mixed_recording(clips, args.minutes * 30)
    rows = {}
    for name, vad in (("without --vad", None), ("with --vad", True)):
        asr = pipeline("automatic-speech-recognition", model=str(args.model), batch_size=4, vad=vad)
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = asr(mixed.audio, return_timestamps="word")
            best = min(best, time.perf_counter() - start)
        rows[name] = (best, len(inserted_words(result["chunks"], mixed.spans)), jiwer.wer(mixed.reference,
                                                                                        result["text"]))
    asr = pipeline("automatic-speech-recognition", model=str(args.model), batch_size=4)
    alone = " ".join(asr([audio for audio, _ in clips])[i % len(clips)]["text"] for i in range(len(mixed.texts)))
    seconds = len(mixed.audio) / SAMPLING_RATE
    print(f"{seconds / 60:.1f} min recording, {len(mixed.texts)} clips, 50% non-speech (pauses: digital silence, "
          f"white noise at -90/-60/-50/-40 dBFS); model {args.model.name}; {cpu_name()}, "
          f"{torch.get_num_threads()} threads; best of {args.repeat}")
    print("| run | seconds | x real time | words inserted in pauses | word error vs reference |")
    print("|---|---|---|---|---|")
    for name, (best, inserted, wer) in rows.items():
        print(f"| {name} | {best:.2f} | {seconds / best:.0f}x | {inserted} | {wer:.2%} |")
    print(f"| clips alone (no pauses) | | | | {jiwer.wer(mixed.reference, alone):.2%} |")
    ratio = rows["without --vad"][0] / rows["with --vad"][0]
    start = time.perf_counter()
    speech_regions(mixed.audio, VadOptions())
    detector = time.perf_counter() - start
    print(f"speed ratio with / without --vad: {ratio:.2f}x faster; the detector alone: {detector:.2f} s")


if __name__ == "__main__":
    main()
