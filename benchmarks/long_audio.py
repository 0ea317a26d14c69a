"""Long-audio transcription in bounded memory: a 30-minute recording (examples/audio speech, concatenated) through
`w2vbert transcribe` in 30 s windows, peak RSS of the process, and the text against the pieces' texts.

    .venv/bin/python benchmarks/long_audio.py [--minutes 30] [--model DIR] [--manifest TSV]

The model defaults to the shipped demo model (examples/demo-model); the text of the whole recording is compared
with the concatenated texts of its pieces, each transcribed alone (word error via jiwer), and both with the
pieces' reference texts (examples/audio/*.txt), which says which of the two is right where they differ.

The pieces are the two example recordings, repeated; `--manifest` takes the clips of a manifest instead (columns
`audio`, `text`, e.g. build/demo-data/heldout.tsv of scripts/make_demo_data.py: 150 sentences, voices and speeds
the demo model never trained on), which measures more than two marginal decisions repeated 240 times each.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import jiwer
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


CLIPS = sorted((ROOT / "examples" / "audio").glob("*.wav"))


def example_clips(manifest: Path | None) -> list[tuple[Path, str]]:
    """(audio path, reference text) of the pieces: the example recordings, or a manifest's clips."""
    if manifest is None:
        return [(path, path.with_suffix(".txt").read_text().strip()) for path in CLIPS]
    with open(manifest, newline="") as f:
        return [(manifest.parent / row["audio"], row["text"]) for row in csv.DictReader(f, delimiter="\t")]


def write_long_wav(path: Path, minutes: float, sources: list[Path] = CLIPS) -> list[np.ndarray]:
    from w2vbert import load_audio

    # In-domain speech for the demo model (its 33-word vocabulary), so both transcriptions are confident.
    clips = [load_audio(source) for source in sources]
    gap = np.zeros(16000, np.float32)  # 1 s of silence between pieces, so pieces are separate utterances
    pieces, total = [], 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        while total < minutes * 60 * 16000:
            piece = np.concatenate([clips[len(pieces) % len(clips)], gap])
            pieces.append(piece)
            total += len(piece)
            frame = av.AudioFrame.from_ndarray((piece * 32767).astype(np.int16)[None], format="s16", layout="mono")
            frame.rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--model", type=Path, default=ROOT / "examples" / "demo-model")
    parser.add_argument("--manifest", type=Path, help="pieces from this manifest's clips (default: examples/audio)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        long = Path(tmp) / "long.wav"
        clips = example_clips(args.manifest)
        pieces = write_long_wav(long, args.minutes, [path for path, _ in clips])
        code = (
            "import resource, sys; from w2vbert.cli import main; main(['transcribe', sys.argv[1], '-m', sys.argv[2],"
            " '--chunk-length', '30', '--no-progress']); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr)"
        )
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", code, str(long), str(model)], capture_output=True, text=True, check=True
        )
        seconds = time.perf_counter() - start
        peak = int(done.stderr.strip().splitlines()[-1])
        from w2vbert import pipeline

        asr = pipeline("automatic-speech-recognition", model=str(model), batch_size=8)
        unique = {}
        texts = []
        for index, piece in enumerate(pieces):  # the clips repeat: transcribe each distinct piece once
            key = index % len(clips)
            if key not in unique:
                unique[key] = asr(piece)["text"]
            texts.append(unique[key])
        whole = done.stdout.strip()
        wer = jiwer.wer(" ".join(texts), whole) if whole else float("nan")
        references = [clips[i % len(clips)][1] for i in range(len(pieces))]
        reference = " ".join(references)
        print(f"{args.minutes:.0f} min of audio ({len(pieces)} pieces), model {model}")
        print("| what | figure |\n|---|---|")
        print(f"| `transcribe --chunk-length 30`: time, peak RSS | {seconds:.0f} s, {peak / 1e9:.2f} GB |")
        print(f"| word error, whole vs pieces | {wer:.2%} |")
        print(f"| word error against the references: whole, pieces | {jiwer.wer(reference, whole):.2%}, "
              f"{jiwer.wer(reference, ' '.join(texts)):.2%} |")


if __name__ == "__main__":
    main()
