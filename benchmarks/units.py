"""Speech units: k-means against scikit-learn, the time and memory of a fit, extraction against `embed`, and the
units' quality (HuBERT's purity and PNMI against character labels from forced alignment, bits per second).

    .venv/bin/python benchmarks/units.py                         # every section at the issue's sizes
    .venv/bin/python benchmarks/units.py --quick                 # every section small (a minute or two)
    .venv/bin/python benchmarks/units.py --only fit --frames 1000000 --dim 1024 -k 500
    .venv/bin/python benchmarks/units.py --only quality --data build/demo-data   # scripts/make_demo_data.py

Sections (`--only` picks some):

- `sklearn`: inertia of w2vbert's k-means and scikit-learn's `KMeans` (k-means++, Lloyd) on the same data, same k,
  several seeds, and of the mini-batch variants (`MiniBatchKMeans`); the ratio should be within 1.01.
- `fit`: k-means on `--frames` x `--dim` frames (a Gaussian mixture, float32) at `-k`: seconds, peak RSS against
  the sample's own size (memory bounded by the sample).
- `extract`: `w2vbert units extract` against `w2vbert embed --pool mean` and `--pool none` of the same layer on a
  corpus of the demo clips (repeated `--repeat` times), each run `--runs` times, the best kept: the ratio should be
  at most 1.1.
- `quality`: on the held-out clips (`--data DIR` with heldout.tsv, else examples/audio), each frame labelled with
  the character the demo model's forced alignment last emitted at or before it (CTC emits a character on one
  frame; this holds it until the next, the space between words included, and labels frames before the first
  "<start>"); codebooks of each `--k-values` fitted on the layers of `--layers` (frames normalised by their
  mean and std), and their label purity, cluster purity, PNMI and bits per second after deduplication.

Run it on a quiet machine: the figures of a shared one are not the code's.
"""

from __future__ import annotations

import argparse
import csv
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo-model"
SECTIONS = ("sklearn", "fit", "extract", "quality")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def mixture(points: int, dim: int, clusters: int, seed: int) -> torch.Tensor:
    """(points, dim) float32 Gaussian mixture, made a block at a time (no second copy of the data)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, dim, generator=generator) * 2
    x = torch.empty(points, dim)
    for start in range(0, points, 65536):
        rows = x[start : start + 65536]
        rows.copy_(centres[torch.randint(clusters, (len(rows),), generator=generator)])
        rows.add_(torch.randn(rows.shape, generator=generator))
    return x


# ------------------------------------------------------------------------------------------------- sklearn
def bench_sklearn(args: argparse.Namespace) -> None:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    from w2vbert.units.kmeans import KMeansOptions, kmeans

    points, dim, k = (4000, 32, 50) if args.quick else (20000, 64, 100)
    x = mixture(points, dim, clusters=2 * k, seed=0)
    print(f"\n## k-means against scikit-learn ({points} x {dim}, k = {k}, n_init = {args.n_init})")
    print("| seed | algorithm | w2vbert inertia | sklearn inertia | ratio | w2vbert s | sklearn s |")
    print("|---|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        for algorithm in ("lloyd", "minibatch"):
            started = time.perf_counter()
            ours = kmeans(x, KMeansOptions(k=k, n_init=args.n_init, algorithm=algorithm, seed=seed,
                                           batch_size=1024)).inertia
            ours_s = time.perf_counter() - started
            started = time.perf_counter()
            if algorithm == "lloyd":
                model = KMeans(k, init="k-means++", n_init=args.n_init, random_state=seed).fit(x.numpy())
            else:
                model = MiniBatchKMeans(k, n_init=args.n_init, random_state=seed, batch_size=1024,
                                        reassignment_ratio=0.0).fit(x.numpy())
            theirs_s = time.perf_counter() - started
            # sklearn's mini-batch inertia_ is on its last batches' centres: scored here over every point instead
            theirs = float(((x.numpy() - model.cluster_centers_[model.predict(x.numpy())]) ** 2).sum())
            print(f"| {seed} | {algorithm} | {ours:.6g} | {theirs:.6g} | {ours / theirs:.4f} | {ours_s:.2f} | "
                  f"{theirs_s:.2f} |", flush=True)


# ----------------------------------------------------------------------------------------------------- fit
def bench_fit(args: argparse.Namespace) -> None:
    from w2vbert.units.kmeans import KMeansOptions, kmeans

    frames, dim, k = (100_000, 256, 100) if args.quick and not args.sized else (args.frames, args.dim, args.k)
    before = peak_rss_gib()
    x = mixture(frames, dim, clusters=2 * k, seed=1)
    print(f"\n## fit: {frames} x {dim} frames, k = {k}, {args.algorithm}, n_init = {args.n_init}, "
          f"{torch.get_num_threads()} threads")
    started = time.perf_counter()
    result = kmeans(x, KMeansOptions(k=k, n_init=args.n_init, algorithm=args.algorithm, seed=0),
                    progress=lambda line: print(f"  {line} ({time.perf_counter() - started:.1f} s)", flush=True))
    seconds = time.perf_counter() - started
    print("| frames | dim | k | algorithm | seconds | inertia per frame | sample GiB | peak RSS GiB (before) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {frames} | {dim} | {k} | {args.algorithm} | {seconds:.1f} | {result.inertia / frames:.4g} | "
          f"{x.numel() * 4 / 2**30:.2f} | {peak_rss_gib():.2f} ({before:.2f}) |", flush=True)


# ------------------------------------------------------------------------------------------------- extract
def bench_extract(args: argparse.Namespace) -> None:
    from w2vbert.cli.parser import main

    clips = sorted((ROOT / "examples" / "audio").glob("*.wav"))
    repeat = 4 if args.quick else args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = tmp / "corpus.tsv"
        manifest.write_text("id\taudio\n" + "".join(f"{n}\t{clips[n % len(clips)]}\n"
                                                    for n in range(repeat * len(clips))))
        common = ["--manifest", str(manifest), "-m", str(args.model), "--num-workers", str(args.num_workers),
                  "--dtype", "float32", "--no-progress", "--overwrite"]
        book = tmp / "book"
        assert main(["units", "fit", *common, "--layer", str(args.layer), "-k", "50", "-o", str(book)]) == 0
        commands = {
            "embed --pool mean": ["embed", *common, "--layer", str(args.layer), "--pool", "mean"],
            "embed --pool none": ["embed", *common, "--layer", str(args.layer), "--pool", "none"],
            "units extract": ["units", "extract", *common, "--codebook", str(book)],
            "units extract --deduplicate": ["units", "extract", *common, "--codebook", str(book), "--deduplicate"],
        }
        best = {name: float("inf") for name in commands}
        for _ in range(1 if args.quick else args.runs):  # alternated, so that a slow spell hits every command
            for name, argv in commands.items():
                started = time.perf_counter()
                assert main([*argv, "-o", str(tmp / name.replace(" ", "_"))]) == 0
                best[name] = min(best[name], time.perf_counter() - started)
    print(f"\n## extraction against embed: layer {args.layer} of {args.model.name}, {repeat * len(clips)} files, "
          f"best of {1 if args.quick else args.runs}")
    print("| command | seconds | / embed --pool mean |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {seconds / best['embed --pool mean']:.3f} |", flush=True)


# ------------------------------------------------------------------------------------------------- quality
def heldout_clips(data: Path | None) -> list[tuple[Path, str]]:
    if data is None:
        manifest = ROOT / "examples" / "audio" / "clips.tsv"
    else:
        manifest = data / "heldout.tsv"
    with open(manifest, newline="") as f:
        return [(manifest.parent / row["audio"], row["text"]) for row in csv.DictReader(f, delimiter="\t")]


def frame_labels(asr, path: Path, text: str, frames: int) -> np.ndarray:
    """(frames,) label ids, one per 20 ms encoder frame: the character forced alignment last emitted."""
    from w2vbert.text.alignment import forced_align, spelled

    log_probs = asr.log_probs(str(path))
    ids = asr.tokenizer(spelled(text, asr.tokenizer))["input_ids"]
    path_ids, _ = forced_align(log_probs, ids, asr.tokenizer.pad_token_id)
    held, current = [], -1  # -1: before the first character
    for token in path_ids:
        if token != asr.tokenizer.pad_token_id:
            current = int(token)
        held.append(current)
    per_output = asr.frame_samples() // 320  # encoder frames per CTC frame (the adapter's stride)
    index = np.minimum(np.arange(frames) // per_output, len(held) - 1)
    return np.asarray(held)[index]


def bench_quality(args: argparse.Namespace) -> None:
    from w2vbert import Wav2Vec2BertForCTC, load_audio, pipeline
    from w2vbert.units.codebook import Codebook
    from w2vbert.units.kmeans import KMeansOptions, kmeans
    from w2vbert.units.quality import bits_per_second, unit_quality

    model = Wav2Vec2BertForCTC.from_pretrained(args.model)
    asr = pipeline("automatic-speech-recognition", model=model, tokenizer=str(args.model))
    clips = heldout_clips(args.data)
    seconds = sum(len(load_audio(path)) for path, _ in clips) / 16000
    layers = args.layers or list(range(1, model.config.num_hidden_layers + 1))
    k_values = [20, 50] if args.quick else args.k_values
    print(f"\n## unit quality: {len(clips)} held-out clips ({seconds / 60:.1f} min), character labels from forced "
          f"alignment, {args.model.name}")
    print("| layer | k | frames | label purity | cluster purity | PNMI | runs/s | bits/s | log2(k) bits/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    labels_of: list[np.ndarray] | None = None
    for layer in layers:
        embed = pipeline("feature-extraction", model=model, layer=layer)
        frames = [embed(str(path)) for path, _ in clips]
        if labels_of is None:
            labels_of = [frame_labels(asr, path, text, len(f)) for (path, text), f in zip(clips, frames, strict=True)]
        everything = torch.from_numpy(np.concatenate(frames))
        mean, std = everything.mean(0), everything.std(0)
        for k in k_values:
            if k > len(everything):
                continue
            fitted = kmeans((everything - mean) / std, KMeansOptions(k=k, n_init=args.n_init, seed=0))
            book = Codebook(fitted.centroids, mean, std)
            units = [book.units(torch.from_numpy(f)).numpy() for f in frames]
            quality = unit_quality(np.concatenate(labels_of), np.concatenate(units))
            rate = bits_per_second(units, seconds, k)
            print(f"| {layer} | {k} | {len(everything)} | {quality['label_purity']:.3f} | "
                  f"{quality['cluster_purity']:.3f} | {quality['pnmi']:.3f} | {rate['runs_per_second']:.1f} | "
                  f"{rate['bits_per_second']:.0f} | {rate['fixed_bits_per_second']:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="every section small: a minute or two")
    parser.add_argument("--model", type=Path, default=DEMO)
    parser.add_argument("--n-init", type=int, default=1, help="k-means restarts in every section")
    parser.add_argument("--seeds", type=int, default=3, help="sklearn: seeds compared")
    parser.add_argument("--frames", type=int, default=1_000_000, help="fit: frames (the sample's size)")
    parser.add_argument("--dim", type=int, default=1024, help="fit: dimensions (the 600M model's hidden size)")
    parser.add_argument("-k", type=int, default=500, help="fit: clusters")
    parser.add_argument("--algorithm", choices=("lloyd", "minibatch"), default="minibatch", help="fit: k-means")
    parser.add_argument("--layer", type=int, default=3, help="extract: the layer")
    parser.add_argument("--repeat", type=int, default=50, help="extract: the corpus is the demo clips x this")
    parser.add_argument("--runs", type=int, default=3, help="extract: runs of each command, the best kept")
    parser.add_argument("--num-workers", type=int, default=1, help="extract: decoding workers")
    parser.add_argument("--data", type=Path, default=None, help="quality: a folder with heldout.tsv")
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="quality: layers (default: all)")
    parser.add_argument("--k-values", type=int, nargs="+", default=[50, 100, 200], help="quality: k")
    args = parser.parse_args()
    args.sized = any(a.startswith(("--frames", "--dim", "-k")) for a in sys.argv[1:])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for section in args.only:
        {"sklearn": bench_sklearn, "fit": bench_fit, "extract": bench_extract, "quality": bench_quality}[section](args)


if __name__ == "__main__":
    main()
