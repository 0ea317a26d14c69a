"""`units fit`'s work: a sample of one layer's frames drawn over a corpus, then k-means on it, saved as a codebook.
(`units extract` is a corpus run of the `speech-units` pipeline: corpus.py and pipelines.py.)

    OUT/sample/      a corpus run of `feature-extraction` (corpus.py: resumable, shared over torchrun ranks), each
                     input's frames file holding only its sampled frames (units/sampling.py) and, with
                     `normalize`, the statistics over all frames
    OUT/centroids.safetensors, OUT/codebook.json    the codebook (units/codebook.py), written by rank 0

The sample is the same whatever the ranks, shards or interruptions: each frame is in or out by its key, and the
gathered sample is cut to `max_frames` by the smallest keys.

With Ray (`units fit --ray`), Ray Data's actors draw the same sample (inference/ray_data.py) and OUT/sample holds
only the failures table and the statistics.

In order: `FitSettings`, `FitSummary`, `sampling_settings`, `corpus_seconds`, `fit_codebook`, `fit_codebook_on_ray`,
their shared k-means and codebook (`check_not_silent`), `gather_sample`, `corpus_statistics`.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy_file

from w2vbert.inference import corpus
from w2vbert.inference.pipelines import FeatureExtractionPipeline
from w2vbert.inference.ray_data import sample_frames
from w2vbert.units.codebook import STD_FLOOR, Codebook
from w2vbert.units.kmeans import KMeansOptions, assign, kmeans, kmeans_plus_plus
from w2vbert.units.sampling import SampleCut, frame_keys, keep_fraction, sampled_frames

SAMPLE_DIR = "sample"  # the sampling run's folder inside the codebook's
HEADERS_READ = 1000  # inputs whose headers estimate a corpus's duration when its manifest does not state them
# k-means++ centres that leave less than this share of the frames' variance found the frames to be at most k points:
# digital silence leaves 4e-6 of it at k = 8 on the tests' tiny encoder (its frames differ only near a clip's edges),
# speech on the demo model 0.1 to 0.7.
SILENT_SHARE = 1e-4
SILENCE_CHECK_FRAMES = 20_000  # frames that check: k-means++ on them costs about one Lloyd pass over 20,000 frames


@dataclass(frozen=True)
class FitSettings:
    """What `fit_codebook` draws and fits, beside the corpus run's settings."""

    kmeans: KMeansOptions
    max_frames: int  # frames in the sample at most
    stats: str | None = None  # a stats.safetensors (embed --stats) to normalise frames with
    normalize: bool = False  # normalise with the statistics of this corpus's frames, computed in the sampling run
    device: str | None = None  # where k-means runs (default: the model's device)


@dataclass
class FitSummary:
    run: corpus.BulkSummary  # the sampling run
    layer: int | None = None  # the frames' hidden-state index (0 = projected input)
    frames: int = 0  # in the sample
    inertia: float = 0.0
    inertias: tuple[float, ...] = ()  # of each restart
    seconds: float = 0.0  # k-means
    codebook: Path | None = None  # None on ranks other than 0


def sampling_settings(settings: corpus.BulkSettings, inputs: list[corpus.Input], fit: FitSettings
                      ) -> corpus.BulkSettings:
    """`settings` (a feature-extraction run of every frame) made a sampling run: the keep fraction from the
    corpus's duration (`corpus_seconds`), statistics when `fit.normalize`."""
    seconds = corpus_seconds(inputs, fit.kmeans.seed)
    if not inputs or seconds <= 0:
        raise ValueError(f"the corpus holds no audio to sample: {len(inputs)} inputs, {seconds:.1f} s")
    return corpus.BulkSettings(**(asdict(settings) | {
        "pool": None, "stats": fit.normalize, "sample_fraction": keep_fraction(fit.max_frames, seconds),
        "sample_seed": fit.kmeans.seed}))


def corpus_seconds(inputs: list[corpus.Input], seed: int) -> float:
    """The corpus's duration: the manifest's, when it states every input's; else estimated from the headers of
    `HEADERS_READ` inputs drawn with `seed` (every rank draws the same), since reading them all costs ~3 ms a
    non-WAV file (an hour per million) and the sample is cut to its size at the end anyway."""
    stated = [entry.seconds for entry in inputs if entry.seconds is not None]
    if len(stated) == len(inputs):
        return float(sum(stated))
    drawn = inputs if len(inputs) <= HEADERS_READ else random.Random(seed).sample(inputs, HEADERS_READ)
    return sum(corpus.input_seconds(entry) for entry in drawn) * len(inputs) / len(drawn)


def fit_codebook(
    pipe: FeatureExtractionPipeline, settings: corpus.BulkSettings, inputs: list[corpus.Input],
    output_dir: str | os.PathLike, fit: FitSettings, *, num_workers: int = 0, overwrite: bool = False,
    progress: bool = True, log: Callable[[str], None] | None = None,
) -> FitSummary:
    """Sample `settings.layer`'s frames over `inputs` into OUT/sample (`settings` from `sampling_settings`), fit
    k-means on them and save the codebook in `output_dir` (rank 0; the other ranks return after sampling)."""
    output_dir = Path(output_dir)
    run = corpus.run(pipe, settings, inputs, output_dir / SAMPLE_DIR, num_workers=num_workers,
                     overwrite=overwrite, progress=progress)
    if int(os.environ.get("RANK", "0")) != 0:
        return FitSummary(run)
    if run.failed == run.inputs:
        raise ValueError(f"every input failed ({run.failed} of {run.inputs}): no frames to fit; see "
                         f"{output_dir / SAMPLE_DIR / corpus.FAILURES_NAME}")
    return _fit(gather_sample(output_dir / SAMPLE_DIR, fit.max_frames), run, settings, output_dir, fit,
                fit.device or str(pipe.device), log)


def fit_codebook_on_ray(
    settings: corpus.BulkSettings, inputs: list[corpus.Input], output_dir: str | os.PathLike, fit: FitSettings, *,
    actors: int = 1, gpus_per_actor: float = 0.0, batch_size: int = 8, device: str | None = None,
    log: Callable[[str], None] | None = None,
) -> FitSummary:
    """`fit_codebook` with the sample drawn by Ray Data actors (inference/ray_data.py's `sample_frames`: the same
    frames a corpus run draws): OUT/sample holds the failures table and, with `fit.normalize`, the statistics; the
    model loads in the actors only, k-means runs here (on `fit.device`, default the CPU). `ray.init()` first."""
    output_dir = Path(output_dir)
    started = time.time()
    drawn = sample_frames(settings, inputs, fit.max_frames, statistics=fit.normalize, actors=actors,
                          gpus_per_actor=gpus_per_actor, batch_size=batch_size, device=device)
    (output_dir / SAMPLE_DIR).mkdir(parents=True, exist_ok=True)
    corpus.write_failures(output_dir / SAMPLE_DIR, drawn.failures)
    if fit.normalize:
        corpus.write_statistics(output_dir / SAMPLE_DIR, drawn.stats, settings)
    run = corpus.BulkSummary(inputs=drawn.inputs, failed=len(drawn.failures), hours=drawn.seconds / 3600,
                             seconds=time.time() - started)
    if run.failed == run.inputs:
        raise ValueError(f"every input failed ({run.failed} of {run.inputs}): no frames to fit; see "
                         f"{output_dir / SAMPLE_DIR / corpus.FAILURES_NAME}")
    return _fit(drawn.frames, run, settings, output_dir, fit, fit.device or "cpu", log)


def _fit(
    frames: np.ndarray, run: corpus.BulkSummary, settings: corpus.BulkSettings, output_dir: Path, fit: FitSettings,
    device: str, log: Callable[[str], None] | None,
) -> FitSummary:
    """k-means on the drawn sample (normalised as `fit` says) and the codebook saved with its card."""
    summary = FitSummary(run, settings.layer)
    if len(frames) < fit.kmeans.k:
        raise ValueError(f"the sample holds {len(frames)} frames, fewer than k = {fit.kmeans.k}: lower -k, or give "
                         f"more audio or a larger --max-frames (now {fit.max_frames})")
    mean, std, normalisation = corpus_statistics(output_dir / SAMPLE_DIR, fit, frames.shape[1])
    x = torch.from_numpy(frames)
    if mean is not None:
        x.sub_(mean).div_(std.clamp_min(STD_FLOOR))  # in place: the sample is the largest thing held
    check_not_silent(x, fit.kmeans, run.inputs - run.failed)
    started = time.time()
    result = kmeans(x.to(device), fit.kmeans, progress=log)
    summary.seconds = time.time() - started
    card = {"model": settings.model, "layer": settings.layer, "normalisation": normalisation,
            "frames": len(frames), "inertia": result.inertia, "inertia_per_frame": result.inertia / len(frames),
            "inertias": result.inertias, "seed": fit.kmeans.seed, "kmeans": asdict(fit.kmeans),
            "max_frames": fit.max_frames, "sample_fraction": settings.sample_fraction,
            "inputs": run.inputs, "failed": run.failed, "hours": run.hours}
    summary.codebook = Codebook(result.centroids.cpu(), mean, std, json.loads(json.dumps(card))).save(output_dir)
    summary.frames, summary.inertia, summary.inertias = len(frames), result.inertia, tuple(result.inertias)
    return summary


def check_not_silent(x: torch.Tensor, options: KMeansOptions, inputs: int) -> None:
    """Refuse, before k-means runs, a sample that is about k points or fewer (a silent corpus: its frames differ
    only near the clips' edges): k-means++'s k centres, drawn from `SILENCE_CHECK_FRAMES` of the frames (4 k when
    more), leave less than `SILENT_SHARE` of their variance. (Only when there are at least twice k frames: fewer
    leave little of any corpus's variance.)"""
    if len(x) < 2 * options.k:
        return
    generator = torch.Generator().manual_seed(options.seed)
    drawn = x[torch.randperm(len(x), generator=generator)[:max(SILENCE_CHECK_FRAMES, 4 * options.k)]]
    left = float(assign(drawn, kmeans_plus_plus(drawn, options.k, generator))[1].double().sum())
    variance = _variance(drawn) * len(drawn)
    if left <= SILENT_SHARE * variance:
        raise ValueError(f"the {len(x)} frames sampled from {inputs} inputs take about k = {options.k} values or "
                         f"fewer (k-means++ leaves {left:.3g} of their variance {variance:.3g} on {len(drawn)} of "
                         "them): is the corpus silent? Give audio with speech, or lower -k")


def gather_sample(sample_dir: Path, max_frames: int) -> np.ndarray:
    """The sampled frames of a finished sampling run, in input order, cut to the `max_frames` with the smallest
    keys: (frames, hidden) float32 (units/sampling.py's `SampleCut`)."""
    manifest = json.loads((sample_dir / corpus.MANIFEST_NAME).read_text())
    seed, fraction = manifest["settings"]["sample_seed"], manifest["settings"]["sample_fraction"]
    _, pq = corpus.pyarrow_modules()
    cut, position = SampleCut(max_frames), 0
    for shard in manifest["shards"]:
        rows = pq.read_table(sample_dir / shard["file"], columns=["id", "frames", "error"]).to_pylist()
        stored = load_numpy_file(sample_dir / shard["frames_file"])
        for row in rows:
            if row["error"] is None:
                kept = sampled_frames(row["id"], row["frames"], seed, fraction)
                cut.add(frame_keys(row["id"], row["frames"], seed)[kept], np.arange(position, position + len(kept)),
                        stored[row["id"]])
                position += len(kept)
    return cut.frames()


def _variance(x: torch.Tensor, block: int = 65536) -> float:
    """The rows' mean squared distance to their mean (float64, a block at a time)."""
    total, squares = torch.zeros(x.shape[1], dtype=torch.float64), 0.0
    for start in range(0, len(x), block):
        rows = x[start : start + block].double()
        total += rows.sum(0)
        squares += float((rows**2).sum())
    mean = total / len(x)
    return squares / len(x) - float(mean @ mean)


def corpus_statistics(
    sample_dir: Path, fit: FitSettings, dim: int
) -> tuple[torch.Tensor | None, torch.Tensor | None, str | None]:
    """The per-dimension mean and std frames are normalised with, and where they came from (None: none)."""
    if fit.stats is not None:
        path, source = Path(fit.stats), str(fit.stats)
    elif fit.normalize:
        path, source = sample_dir / corpus.STATS_NAME, "this corpus (all frames)"
    else:
        return None, None, None
    stats = load_numpy_file(path)
    if "mean" not in stats or "std" not in stats:
        raise ValueError(f"{path}: expected the mean and std of embed --stats, got {sorted(stats)}")
    if stats["mean"].shape != (dim,):
        raise ValueError(f"{path}: the statistics have {stats['mean'].shape[0]} dimensions but the layer's frames "
                         f"{dim}: were they computed on another model?")
    return torch.from_numpy(stats["mean"]).float(), torch.from_numpy(stats["std"]).float(), source
