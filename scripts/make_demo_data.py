"""Synthetic English speech for the demo model: espeak-ng reading sentences built from a small word list.

Writes `train.tsv` and `heldout.tsv` (columns `audio`, `text`; paths relative to the manifest) and the WAV files.
The held-out set is harder than a random split: its sentences are word orders never spoken in training, read by
voice variants and at speeds/pitches that training never used, so its error rate measures generalisation to new
speakers and sentences (within the word list), not memorisation.

Recordings are also joined into longer ones (`--long`, `--heldout-long`: 1-8 utterances, pauses of 0.1-1.5 s,
up to 2 s of silence before and 1 s after; text joined by spaces). A model trained only on single clips of a few
seconds, each starting within 15 ms of speech, never sees what long-audio transcription feeds it (30 s windows of
several utterances and long silences): the tiny demo model then spelled "the" differently depending on what else
was in the window and wrote letters into leading silence. The joined training clips reuse the training
recordings; the joined held-out ones (`heldout_long.tsv`) reuse the held-out recordings only.

    python scripts/make_demo_data.py --out build/demo-data --train 1500 --heldout 150 --long 300
"""

from __future__ import annotations

import argparse
import csv
import random
import subprocess
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

WORDS = (
    "zero one two three four five six seven eight nine red green blue yellow black white big small quick slow "
    "cat dog bird fish horse mouse jumps runs sees over under near the a".split()
)
# espeak-ng voices (accents) and variants (speaker timbres). Training and held-out share accents but not variants.
ACCENTS = ["en-us", "en-gb", "en-gb-x-rp", "en-029", "en-gb-x-gbclan"]
TRAIN_VARIANTS = ["", "+m1", "+m3", "+f2", "+f3", "+m6", "+klatt"]
HELDOUT_VARIANTS = ["+m4", "+f4", "+m7"]
TRAIN_SPEEDS = [130, 155, 175, 200]  # words per minute
HELDOUT_SPEEDS = [145, 165, 190]
TRAIN_PITCHES = [35, 50, 65]
HELDOUT_PITCHES = [42, 58]
JOINED_UTTERANCES = (1, 8)  # utterances per joined recording (1: one clip with silence around it)
PAUSE_S = (0.1, 1.5)  # silence added between two utterances (espeak-ng already ends a clip with ~0.35 s)
LEADING_S, TRAILING_S = 2.0, 1.0  # at most this much silence before the first and after the last utterance
RATE = 16000


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5)))


def synthesize(job: tuple[Path, str, str, int, int]) -> None:
    path, text, voice, speed, pitch = job
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
        check=True, capture_output=True,
    )


def make_split(
    out: Path, name: str, count: int, rng: random.Random, variants: list[str], speeds: list[int], pitches: list[int],
    banned: set[str],
) -> tuple[list[tuple[Path, str, str, int, int]], set[str]]:
    jobs, texts = [], set()
    (out / name).mkdir(parents=True, exist_ok=True)
    while len(jobs) < count:
        text = sentence(rng)
        if text in banned:
            continue
        voice = rng.choice(ACCENTS) + rng.choice(variants)
        jobs.append((out / name / f"{len(jobs):05d}.wav", text, voice, rng.choice(speeds), rng.choice(pitches)))
        texts.add(text)
    with open(out / f"{name}.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["audio", "text", "voice", "speed", "pitch"])
        for path, text, voice, speed, pitch in jobs:
            writer.writerow([f"{name}/{path.name}", text, voice, speed, pitch])
    return jobs, texts


def join_recordings(
    out: Path, name: str, source: str, count: int, rng: random.Random
) -> None:
    """Write `count` recordings joining random clips of `out/source.tsv` with pauses, and `out/name.tsv`."""
    from w2vbert import load_audio

    with open(out / f"{source}.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    (out / name).mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        chosen = rng.sample(rows, rng.randint(*JOINED_UTTERANCES))
        parts = [np.zeros(int(rng.uniform(0, LEADING_S) * RATE), np.float32)]
        for number, row in enumerate(chosen):
            if number:
                parts.append(np.zeros(int(rng.uniform(*PAUSE_S) * RATE), np.float32))
            parts.append(load_audio(out / row["audio"], RATE))
        parts.append(np.zeros(int(rng.uniform(0, TRAILING_S) * RATE), np.float32))
        path = out / name / f"{index:05d}.wav"
        with wave.open(str(path), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(RATE)
            handle.writeframes((np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes())
        written.append((f"{name}/{path.name}", " ".join(row["text"] for row in chosen)))
    with open(out / f"{name}.tsv", "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["audio", "text"])
        writer.writerows(written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/demo-data"))
    parser.add_argument("--train", type=int, default=1500, help="training clips")
    parser.add_argument("--heldout", type=int, default=150, help="held-out clips")
    parser.add_argument("--long", type=int, default=300, help="joined recordings added to training")
    parser.add_argument("--heldout-long", type=int, default=40, help="joined held-out recordings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=4, help="espeak-ng processes at once")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    # Held-out sentences first, so training can be told to avoid them (new word orders only in held-out).
    heldout, heldout_texts = make_split(
        args.out, "heldout", args.heldout, rng, HELDOUT_VARIANTS, HELDOUT_SPEEDS, HELDOUT_PITCHES, set()
    )
    train, _ = make_split(args.out, "train", args.train, rng, TRAIN_VARIANTS, TRAIN_SPEEDS, TRAIN_PITCHES,
                          heldout_texts)
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(synthesize, heldout + train))
    joined = random.Random(args.seed + 1)  # its own stream: the single clips stay those of earlier runs
    join_recordings(args.out, "train_long", "train", args.long, joined)
    join_recordings(args.out, "heldout_long", "heldout", args.heldout_long, joined)
    print(
        f"wrote {len(train)} training and {len(heldout)} held-out clips, {args.long} and {args.heldout_long} joined "
        f"recordings under {args.out}"
    )


if __name__ == "__main__":
    main()
