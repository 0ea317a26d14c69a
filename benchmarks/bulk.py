"""Corpus runs, measured against the model alone and against a loop over `pipeline(...)`, in one run.

    PYTHONPATH=src python benchmarks/bulk.py speed [--hours 1] [--dtype bfloat16] [--layer 17] [--work build/bulk-bench]
    PYTHONPATH=src python benchmarks/bulk.py memory [--model examples/demo-model] [--work build/bulk-bench]

The corpus: `--hours` of audio in WAV files of 10-30 s (lengths drawn with a fixed seed), each made of the
committed espeak-ng clips in tests/data joined with short pauses and random gains, and a TSV manifest of them.

`speed` (the full W2v-BERT 2.0 encoder, random weights, `--dtype`, `--threads` torch threads) times, in turn:
1. forward alone: the same batches the corpus run makes (its sampler, windows and padding), their features
   computed beforehand and kept in memory; only the model's forward passes are timed.
2. the corpus run: `w2vbert embed --manifest ... --layer L --dtype D -o OUT --num-workers N` in a fresh process;
   its own time for the run (printed in its summary line, from the first shard to the manifest) and the whole
   process's wall time (with Python's start and loading the 2.3 GB of weights).
3. a loop: `pipe = pipeline("feature-extraction", model, layer=L, pool="mean", torch_dtype=D)`, then per file
   `np.save(out, pipe(path))`, as one writes it by hand.
It prints the ratios (corpus run / forward alone; loop / corpus run) and writes them as JSON with `--json`.

`memory` runs `w2vbert embed --manifest ... --stats` over 1 hour and over 10 hours (the same files listed ten
times, under other ids) with a small model (the demo model by default), sampling the memory of the process and
its DataLoader workers together every 0.1 s (the sum of their RSS, and of their PSS, which counts shared pages
once); it prints the peaks and their ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
CLIPS = [ROOT / "tests" / "data" / name for name in ("hello.wav", "quick.wav", "numbers.wav", "short.wav")]


# ------------------------------------------------------------------------------------------------ corpus
def make_corpus(folder: Path, hours: float, seed: int = 0) -> Path:
    """WAV files of 10-30 s of joined speech clips totalling `hours`, and corpus.tsv (id, audio); reused if there."""
    manifest = folder / "corpus.tsv"
    if manifest.is_file():
        return manifest
    from w2vbert.audio.decode import load_audio

    clips = [load_audio(path) for path in CLIPS]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows, total, n = [], 0.0, 0
    while total < hours * 3600:
        target = int(rng.uniform(10, 30) * 16000)
        pieces, length = [], 0
        while length < target:
            clip = clips[rng.integers(len(clips))] * rng.uniform(0.3, 1.0)
            pause = np.zeros(int(rng.uniform(0.05, 0.5) * 16000), np.float32)
            pieces += [clip, pause]
            length += len(clip) + len(pause)
        audio = np.concatenate(pieces)[:target]
        name = f"{n:05d}.wav"
        with wave.open(str(folder / name), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(16000)
            handle.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
        rows.append(f"{n:05d}\t{name}\n")
        total += target / 16000
        n += 1
    manifest.write_text("id\taudio\n" + "".join(rows))
    return manifest


def full_size_model(folder: Path) -> Path:
    """The full W2v-BERT 2.0 encoder config with random weights, saved once."""
    if not (folder / "model.safetensors").is_file():
        from w2vbert import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

        torch.manual_seed(0)
        Wav2Vec2BertModel(Wav2Vec2BertConfig()).save_pretrained(folder)
        SeamlessM4TFeatureExtractor().save_pretrained(folder)
    return folder


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = re.search(r"Model name:\s*(.+)", lscpu)
    flags = re.search(r"Flags:\s*(.+)", lscpu)
    return {"cpu": name.group(1).strip() if name else platform.processor(), "cores": os.cpu_count(),
            "amx": bool(flags and "amx_bf16" in flags.group(1)), "avx512": bool(flags and "avx512f" in flags.group(1)),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}


# ------------------------------------------------------------------------------------------------- speed
def forward_alone(model_dir: Path, manifest: Path, layer: int, dtype: str, max_batch_seconds: float) -> dict:
    """The corpus run's batches, features precomputed; only the model's forward passes timed."""
    from w2vbert import pipeline
    from w2vbert.inference import corpus as bulk
    from w2vbert.inference.engine import Batches, Recording, checked_windows

    pipe = pipeline("feature-extraction", model_dir, layer=layer, pool="mean", torch_dtype=dtype)
    inputs = bulk.inputs_from_manifest(manifest)
    shards = [range(s, min(s + 1000, len(inputs))) for s in range(0, len(inputs), 1000)]
    dataset = bulk.WindowedInputs(inputs, pipe.feature_extractor, pipe.plan(None, None), pipe.vad)
    chunks = []
    with bulk.ShardBatches(inputs, shards, max_batch_seconds) as batches:
        for batch in batches:
            gathered = Batches(max_seconds=max_batch_seconds)  # as the corpus run: no batch spans two loader batches
            for index in batch:
                recording = Recording(inputs[index].audio)
                for ready in checked_windows(pipe, recording, dataset[index][1]):
                    chunks += gathered.add(ready)
            chunks += [rest] if (rest := gathered.take()) else []
    with torch.inference_mode():  # no warm-up: the corpus run and the loop pay their first call too
        started = time.perf_counter()
        for chunk in chunks:
            pipe.run_windows(chunk)
            for ready in chunk:
                ready.recording.pieces.clear()  # as the corpus run pools and drops them
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "batches": len(chunks), "windows": sum(len(c) for c in chunks)}


def corpus_run(
    model_dir: Path, manifest: Path, out: Path, layer: int, dtype: str, workers: int, max_batch_seconds: float
) -> dict:
    command = [sys.executable, "-m", "w2vbert", "embed", "--manifest", str(manifest), "-m", str(model_dir),
               "--layer", str(layer), "--dtype", dtype, "-o", str(out), "--overwrite", "--num-workers", str(workers),
               "--max-batch-seconds", str(max_batch_seconds), "--no-progress"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    match = re.search(r"in ([\d.]+) s:", done.stdout)
    run_seconds = float(match.group(1)) if match else None
    return {"command": " ".join(command[1:]), "process_seconds": wall, "run_seconds": run_seconds,
            "summary": done.stdout.strip()}


def pipeline_loop(model_dir: Path, manifest: Path, out: Path, layer: int, dtype: str) -> dict:
    from w2vbert import pipeline
    from w2vbert.inference import corpus as bulk

    pipe = pipeline("feature-extraction", model_dir, layer=layer, pool="mean", torch_dtype=dtype)
    out.mkdir(parents=True, exist_ok=True)
    inputs = bulk.inputs_from_manifest(manifest)
    started = time.perf_counter()
    for entry in inputs:
        np.save(out / f"{entry.id}.npy", pipe(entry.audio))
    return {"seconds": time.perf_counter() - started}


def speed(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    manifest = make_corpus(args.work / f"corpus-{args.hours:g}h", args.hours)
    model_dir = full_size_model(args.work / "full-size-model")
    hours = sum(wave.open(str(manifest.parent / line.split("\t")[1].strip())).getnframes()
                for line in manifest.read_text().splitlines()[1:]) / 16000 / 3600
    print(f"corpus: {hours:.3f} h in {len(manifest.read_text().splitlines()) - 1} files; {machine()}", flush=True)
    alone = forward_alone(model_dir, manifest, args.layer, args.dtype, args.max_batch_seconds)
    print(f"forward alone: {alone['seconds']:.1f} s ({alone['batches']} batches)", flush=True)
    env_threads = {"OMP_NUM_THREADS": str(args.threads)}
    os.environ.update(env_threads)
    run = corpus_run(model_dir, manifest, args.work / "out-corpus", args.layer, args.dtype, args.workers,
                     args.max_batch_seconds)
    print(f"corpus run: {run['run_seconds']} s in its summary, {run['process_seconds']:.1f} s whole process",
          flush=True)
    loop = pipeline_loop(model_dir, manifest, args.work / "out-loop", args.layer, args.dtype)
    print(f"pipeline loop: {loop['seconds']:.1f} s", flush=True)
    result = {
        "machine": machine(), "threads": args.threads, "dtype": args.dtype, "layer": args.layer, "hours": hours,
        "workers": args.workers, "forward_alone": alone, "corpus_run": run, "pipeline_loop": loop,
        "run_over_forward": run["run_seconds"] / alone["seconds"],
        "process_over_forward": run["process_seconds"] / alone["seconds"],
        "loop_over_run": loop["seconds"] / run["run_seconds"],
        "audio_hours_per_hour": hours * 3600 / run["run_seconds"],
    }
    print(f"corpus run / forward alone: {result['run_over_forward']:.3f} (whole process "
          f"{result['process_over_forward']:.3f}); pipeline loop / corpus run: {result['loop_over_run']:.2f}; "
          f"{result['audio_hours_per_hour']:.1f} audio-hours per hour")
    return result


# ------------------------------------------------------------------------------------------------ memory
def tree_memory(pid: int) -> tuple[int, int]:
    """Resident and proportional (shared pages split between their processes) bytes of `pid` and all its
    descendants, from /proc: the sum of RSS counts pages the DataLoader workers share with the main process twice,
    the sum of PSS once."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
    rss = pss = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
            rss += int(re.search(r"^Rss:\s+(\d+) kB", rollup, re.M).group(1)) * 1024
            pss += int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M).group(1)) * 1024
        except (OSError, AttributeError):
            continue
    return rss, pss


def peak_memory(command: list[str]) -> tuple[int, int, float, list[tuple[float, int, int]]]:
    """Peak RSS and peak PSS of the command's process tree, sampled every 0.1 s, its wall time, and the timeline
    (seconds, RSS MiB, PSS MiB) once a second."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks, stop, timeline = [0, 0], threading.Event(), []

    def sample() -> None:
        while not stop.is_set():
            rss, pss = tree_memory(process.pid)
            peaks[0], peaks[1] = max(peaks[0], rss), max(peaks[1], pss)
            now = time.perf_counter() - started
            if not timeline or now - timeline[-1][0] >= 1.0:
                timeline.append((round(now, 1), rss >> 20, pss >> 20))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    started = time.perf_counter()
    sampler.start()
    _, err = process.communicate()
    stop.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(err.decode()[-2000:])
    return peaks[0], peaks[1], time.perf_counter() - started, timeline


def memory(args: argparse.Namespace) -> dict:
    one = make_corpus(args.work / "corpus-1h", 1.0)
    rows = one.read_text().splitlines()[1:]
    ten = one.parent / "corpus-10x.tsv"  # the same files ten times, other ids: 10 hours of inputs
    ten.write_text("id\taudio\n" + "".join(f"{r}-{line}\n" for r in range(10) for line in rows))
    result = {"machine": machine(), "model": str(args.model), "workers": args.workers}
    for name, manifest in (("1h", one), ("10h", ten)):
        command = [sys.executable, "-m", "w2vbert", "embed", "--manifest", str(manifest), "-m", str(args.model),
                   "--layer", "-1", "--pool", "mean", "--stats", "-o", str(args.work / f"out-memory-{name}"),
                   "--overwrite", "--num-workers", str(args.workers), "--no-progress"]
        rss, pss, seconds, timeline = peak_memory(command)
        result[name] = {"peak_rss": rss, "peak_pss": pss, "seconds": seconds, "command": " ".join(command[1:]),
                        "timeline_s_rss_pss_mib": timeline}
        print(f"{name}: process and workers peak RSS {rss / 2**20:.0f} MiB, PSS {pss / 2**20:.0f} MiB; "
              f"{seconds:.0f} s", flush=True)
    result["rss_10h_over_1h"] = result["10h"]["peak_rss"] / result["1h"]["peak_rss"]
    result["pss_10h_over_1h"] = result["10h"]["peak_pss"] / result["1h"]["peak_pss"]
    print(f"10 h / 1 h: peak RSS {result['rss_10h_over_1h']:.3f}, peak PSS {result['pss_10h_over_1h']:.3f}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["speed", "memory"])
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bulk-bench")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--layer", type=int, default=17)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-batch-seconds", type=float, default=30.0, help="as the corpus run's default on CPU")
    parser.add_argument("--model", type=Path, default=ROOT / "examples" / "demo-model")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = speed(args) if args.what == "speed" else memory(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
