"""Synthetic data for the frame-classification and x-vector tasks, from espeak-ng speech.

    python scripts/make_task_data.py --task frames --out build/vad-data
    python scripts/make_task_data.py --task speakers --out build/speaker-data

frames (voice activity): recordings of 1-4 sentences with pauses of silence and noise between them (a white-noise
floor under half the recordings, at -70 to -35 dBFS, and bursts of louder noise in a third of the pauses), each
with a segments file of `start end speech` lines where espeak-ng's speech is (its leading and trailing silence
trimmed by level). `train.tsv` and `heldout.tsv` have columns `audio`, `segments`; the held-out recordings are
read by voice variants training never hears. Frames outside the segments are the task's background label.

speakers (x-vectors): each espeak-ng voice variant at one pitch is a speaker; `train.tsv` and `heldout.tsv` have
columns `audio`, `label` (the speaker), and the held-out speakers are other variants. `trials.txt` lists every
pair of held-out clips as `enroll test target`.

Sentences come from the demo model's word list (make_demo_data.py). A speaker keeps its voice variant, one pitch and
one accent; the sentence and the speed are drawn per clip. (In the frames data the accent is drawn per clip.)
"""

from __future__ import annotations

import argparse
import csv
import random
import wave
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations
from pathlib import Path

import numpy as np
from make_demo_data import ACCENTS, RATE, sentence, synthesize

from w2vbert import load_audio

# espeak-ng voice variants (`espeak-ng --voices=variant`): training and held-out speakers never share one
HELDOUT_VARIANTS = ["m4", "f4", "m7", "Andy", "linda", "quincy", "steph2", "robert", "Storm", "travis", "anika",
                    "iven3"]
TRAIN_VARIANTS = ["m1", "m2", "m3", "m5", "m6", "m8", "f1", "f2", "f3", "f5", "klatt", "klatt2", "klatt3", "adam",
                  "Alex", "Alicia", "Andrea", "Annie", "aunty", "belinda", "benjamin", "boris", "caleb", "david",
                  "ed", "edward", "Gene", "gustave", "Henrique", "Hugo", "iven", "Jacky", "john", "Lee", "Marco",
                  "max", "Michael", "Mike", "paul", "steph"]
SPEEDS = [140, 160, 180]
FRAMES_PITCHES = [40, 50, 60]  # espeak-ng's pitch (0-99); each voice variant keeps one
SPEAKER_PITCHES = list(range(25, 86, 5))  # more of them for speakers: 40 voices told apart as people are
SPEECH_DBFS = -45.0  # 10 ms frames above this level are speech, for the segments' start and end


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(RATE)
        handle.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def speech_extent(samples: np.ndarray) -> tuple[int, int]:
    """First and last sample of the 10 ms frames louder than SPEECH_DBFS."""
    hop = RATE // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    loud = np.flatnonzero(20 * np.log10(np.sqrt((frames.astype(np.float64) ** 2).mean(1)) + 1e-12) > SPEECH_DBFS)
    return int(loud[0] * hop), int((loud[-1] + 1) * hop)


def make_clips(
    folder: Path, count: int, rng: random.Random, voice_of: list[str], jobs: int, pitches: list[int],
    own_accent: bool = False,
) -> list[tuple]:
    """`count` espeak-ng clips in `folder`: (path, voice variant, pitch). Each variant keeps one pitch, and with
    `own_accent` one accent too (else the accent is drawn per clip)."""
    folder.mkdir(parents=True, exist_ok=True)
    todo = []
    for index in range(count):
        variant = voice_of[index % len(voice_of)]
        key = sum(map(ord, variant))
        pitch = pitches[key % len(pitches)]
        text, accent = sentence(rng), rng.choice(ACCENTS)
        todo.append((folder / f"{index:05d}.wav", text, f"{ACCENTS[key % len(ACCENTS)] if own_accent else accent}"
                     f"+{variant}", rng.choice(SPEEDS), pitch))
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(synthesize, todo))
    return [(path, voice.split("+")[1], pitch) for path, _, voice, _, pitch in todo]


def frames_split(out: Path, name: str, count: int, variants: list[str], rng: random.Random, jobs: int) -> None:
    clips = make_clips(out / f"{name}-clips", count * 3, rng, variants, jobs, FRAMES_PITCHES)
    noise = np.random.default_rng(rng.randrange(1 << 30))
    (out / name).mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        parts, segments, at = [np.zeros(int(rng.uniform(0, 2.0) * RATE), np.float32)], [], 0
        at = len(parts[0])
        for number in range(rng.randint(1, 4)):
            if number:
                pause = np.zeros(int(rng.uniform(0.3, 2.0) * RATE), np.float32)
                if rng.random() < 1 / 3:  # a burst of noise inside the pause: not speech either
                    burst = int(rng.uniform(0.1, 0.6) * RATE)
                    where = rng.randrange(0, max(1, len(pause) - burst))
                    pause[where: where + burst] = 10 ** (rng.uniform(-35, -20) / 20) * noise.standard_normal(
                        len(pause[where: where + burst]))
                parts.append(pause)
                at += len(pause)
            speech = load_audio(rng.choice(clips)[0], RATE)
            first, last = speech_extent(speech)
            segments.append((at + first, at + last))
            parts.append(speech)
            at += len(speech)
        parts.append(np.zeros(int(rng.uniform(0, 1.0) * RATE), np.float32))
        audio = np.concatenate(parts)
        if rng.random() < 0.5:
            audio = audio + 10 ** (rng.uniform(-70, -35) / 20) * noise.standard_normal(len(audio)).astype(np.float32)
        write_wav(out / name / f"{index:05d}.wav", audio)
        lines = [f"{start / RATE:.3f} {end / RATE:.3f} speech\n" for start, end in segments]
        (out / name / f"{index:05d}.txt").write_text("".join(lines))
        rows.append((f"{name}/{index:05d}.wav", f"{name}/{index:05d}.txt"))
    with open(out / f"{name}.tsv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["audio", "segments"])
        writer.writerows(rows)


def speakers_split(out: Path, name: str, per_speaker: int, variants: list[str], rng: random.Random,
                   jobs: int) -> list[tuple[str, str]]:
    clips = make_clips(out / name, per_speaker * len(variants), rng, variants, jobs, SPEAKER_PITCHES, own_accent=True)
    rows = [(f"{name}/{path.name}", f"{variant}-{pitch}") for path, variant, pitch in clips]
    with open(out / f"{name}.tsv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["audio", "label"])
        writer.writerows(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["frames", "speakers"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, default=None,
                        help="training recordings (frames; default 300) or clips per speaker (speakers; default 15)")
    parser.add_argument("--heldout", type=int, default=None,
                        help="held-out recordings (frames; default 60) or clips per speaker (speakers; default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=4, help="espeak-ng processes at once")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    if args.task == "frames":
        frames_split(args.out, "heldout", args.heldout or 60, HELDOUT_VARIANTS, rng, args.jobs)
        frames_split(args.out, "train", args.train or 300, TRAIN_VARIANTS, rng, args.jobs)
        print(f"wrote {args.train or 300} training and {args.heldout or 60} held-out recordings under {args.out}")
        return
    speakers_split(args.out, "train", args.train or 15, TRAIN_VARIANTS, rng, args.jobs)
    heldout = speakers_split(args.out, "heldout", args.heldout or 8, HELDOUT_VARIANTS, rng, args.jobs)
    with open(args.out / "trials.txt", "w") as handle:
        for (a, speaker_a), (b, speaker_b) in combinations(heldout, 2):
            handle.write(f"{a} {b} {int(speaker_a == speaker_b)}\n")
    print(f"wrote {len(TRAIN_VARIANTS)} training and {len(HELDOUT_VARIANTS)} held-out speakers under {args.out}")


if __name__ == "__main__":
    main()
