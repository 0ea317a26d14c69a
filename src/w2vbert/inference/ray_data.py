"""Ray Data integration: `W2vBertPredictor`, a callable class for `ray.data.Dataset.map_batches`.

    import ray
    from w2vbert.inference.ray_data import W2vBertPredictor
    ds = ray.data.read_parquet("manifest.parquet")            # or ray.data.from_items([{"audio": path}, ...])
    out = ds.map_batches(W2vBertPredictor, fn_constructor_kwargs={"model": "my-model", "task": "feature-extraction",
                         "layer": 17, "pool": "mean"}, batch_size=32, concurrency=4)

Each actor loads the model once (in `__init__`) and maps batches of audio, given as file paths (column `audio`)
or as arrays (column `array`, with `sampling_rate`), to the task's columns: `text`; `label`, `score`;
`embedding`; or `units` (and `durations`; task "speech-units", with `codebook=`); and `error` (None, or why that
row failed: one bad row never costs the others). The results are those of `pipeline(task, model)` for each row.
With `sample_fraction` (feature extraction, every frame; rows need an `id` column), a row keeps only its sampled
frames (units/sampling.py: the frames `units fit` draws, whoever computes them), with `frame_count` and, with
`frame_statistics=True`, its frames' `frame_mean` and `frame_m2` for the corpus's statistics.
`sample_frames` is `units fit --ray`'s draw: the predictor's actors map the corpus, the driver keeps the sample.
`pip install 'w2vbert[ray]'`.

In order: `W2vBertPredictor`, `column`, `RaySample`, `sample_frames`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from w2vbert.audio.decode import SAMPLING_RATE
from w2vbert.inference.corpus_files import FrameStats
from w2vbert.inference.corpus_settings import BulkSettings, Input
from w2vbert.inference.pipelines import pipeline
from w2vbert.units.sampling import FRAMES_PER_SECOND, SampleCut, frame_keys, sampled_frames
from w2vbert.utils.extras import optional_import


class W2vBertPredictor:
    """Loads `model` for `task` once; `__call__` maps a batch (a dict of columns) to the task's columns."""

    def __init__(
        self,
        model: str,
        task: str = "feature-extraction",
        *,
        device: str | None = None,
        torch_dtype: str | None = None,
        batch_size: int = 8,
        sample_fraction: float | None = None,
        sample_seed: int = 0,
        frame_statistics: bool = False,
        **task_options: Any,
    ) -> None:
        self.task = task
        self.pipe = pipeline(task, model, device=device, torch_dtype=torch_dtype, batch_size=batch_size,
                             **task_options)
        if sample_fraction is not None and (task != "feature-extraction" or self.pipe.pool is not None):
            raise ValueError(f"sample_fraction samples every frame of feature extraction, got task {task!r} with "
                             f"pool {getattr(self.pipe, 'pool', None)!r}")
        self.sample_fraction, self.sample_seed, self.frame_statistics = sample_fraction, sample_seed, frame_statistics

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "audio" in batch:
            inputs = [str(path) for path in batch["audio"]]
        elif "array" in batch:
            rates = batch.get("sampling_rate", np.full(len(batch["array"]), SAMPLING_RATE))
            inputs = [{"array": np.asarray(a, np.float32), "sampling_rate": int(r)}
                      for a, r in zip(batch["array"], rates, strict=True)]
        else:
            raise ValueError(f"a batch needs an 'audio' column (paths) or an 'array' column, got {sorted(batch)}")
        results = list(self.pipe.iterate(inputs))
        failed = [isinstance(r, Exception) for r in results]
        out = dict(batch) | {"error": np.array([str(r) if f else None for r, f in zip(results, failed, strict=True)],
                                               dtype=object)}
        if self.task == "automatic-speech-recognition":
            out["text"] = column([None if f else r["text"] for r, f in zip(results, failed, strict=True)])
        elif self.task == "audio-classification":
            out["label"] = column([None if f else r[0]["label"] for r, f in zip(results, failed, strict=True)])
            out["score"] = np.array([np.nan if f else r[0]["score"] for r, f in zip(results, failed, strict=True)])
        elif self.task == "speech-units":  # unit ids (and with deduplicate=True run lengths) per row
            for name in ("units", "durations") if self.pipe.deduplicate else ("units",):
                out[name] = column([None if f else r[name] for r, f in zip(results, failed, strict=True)])
        elif self.sample_fraction is not None:
            out |= self._sampled(batch, results, failed)
        elif self.pipe.pool is None:  # frames of each input, of its own length: one array per row
            out["embedding"] = column([None if f else r for r, f in zip(results, failed, strict=True)])
        else:
            width = self.pipe.encoder.config.hidden_size
            out["embedding"] = np.stack([np.full(width, np.nan, np.float32) if f else r
                                         for r, f in zip(results, failed, strict=True)]) if results else \
                np.zeros((0, width), np.float32)
        return out


    def _sampled(self, batch: dict[str, np.ndarray], results: list, failed: list[bool]) -> dict[str, np.ndarray]:
        """The columns of a sampling map: each row's sampled frames, frame count and (frame_statistics) the mean
        and M2 of all its frames."""
        if "id" not in batch:
            raise ValueError(f"sampling frames needs an 'id' column (each frame's key hashes it), got {sorted(batch)}")
        width = self.pipe.encoder.config.hidden_size
        out: dict[str, list] = {"frames": [], "frame_count": [], "frame_mean": [], "frame_m2": []}
        for row_id, result, bad in zip(batch["id"], results, failed, strict=True):
            # a failed row: no frames, count 0 (arrays, not None: Ray's blocks hold a column of one kind)
            frames = np.zeros((0, width), np.float32) if bad else result
            part = FrameStats()
            if self.frame_statistics and len(frames):
                part.add(frames)
            out["frames"].append(frames[sampled_frames(str(row_id), len(frames), self.sample_seed,
                                                       self.sample_fraction)])
            out["frame_count"].append(len(frames))
            out["frame_mean"].append(np.zeros(width) if part.mean is None else part.mean)
            out["frame_m2"].append(np.zeros(width) if part.m2 is None else part.m2)
        columns = {"frames": column(out["frames"]), "frame_count": np.array(out["frame_count"], np.int64)}
        if self.frame_statistics:
            columns |= {"frame_mean": np.stack(out["frame_mean"]), "frame_m2": np.stack(out["frame_m2"])}
        return columns


def column(values: list) -> np.ndarray:
    """A 1-D object column of `values`, whatever they are (np.array would stack equal-shaped arrays into one)."""
    out = np.empty(len(values), dtype=object)
    out[:] = [None] * len(values)
    for i, value in enumerate(values):
        out[i] = value
    return out


@dataclass
class RaySample:
    """What `sample_frames` drew: the sample, in input order, and the run's counts."""

    frames: np.ndarray  # (frames, hidden) float32: at most max_frames, those of the smallest keys
    inputs: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)  # id, audio and error of each failed input
    seconds: float = 0.0  # of audio in the valid inputs (from their frame counts)
    stats: FrameStats = field(default_factory=FrameStats)  # of every valid frame, with statistics=True


def sample_frames(
    settings: BulkSettings, inputs: list[Input], max_frames: int, *, statistics: bool = False, actors: int = 1,
    gpus_per_actor: float = 0.0, batch_size: int = 8, device: str | None = None,
) -> RaySample:
    """`settings.layer`'s frames sampled over `inputs` with Ray Data (`settings.sample_fraction` and
    `sample_seed`, as a corpus run samples): `actors` W2vBertPredictor actors map the corpus (each loads the model
    once), this process keeps the `max_frames` of smallest keys. `ray.init()` must have been called (RAY_ADDRESS
    names a cluster); on a cluster every worker must read the audio paths."""
    ray = optional_import("ray", "units fit --ray (pip install 'w2vbert[ray]')")
    rows = [{"index": n, "id": entry.id, "audio": entry.audio} for n, entry in enumerate(inputs)]
    mapped = ray.data.from_items(rows).map_batches(
        W2vBertPredictor, batch_format="numpy", batch_size=batch_size, concurrency=actors, num_gpus=gpus_per_actor,
        fn_constructor_kwargs={"model": settings.model, "task": "feature-extraction", "layer": settings.layer,
                               "pool": "none", "device": device,
                               "torch_dtype": None if settings.dtype == "auto" else settings.dtype,
                               "batch_size": batch_size, "sample_fraction": settings.sample_fraction,
                               "sample_seed": settings.sample_seed, "frame_statistics": statistics})
    cut = SampleCut(max_frames)
    result = RaySample(np.zeros((0, 0), np.float32), inputs=len(inputs))
    frames_seen, failed = 0, []
    for batch in mapped.iter_batches(batch_size=batch_size, batch_format="numpy"):
        for n in range(len(batch["index"])):
            row_id, count = str(batch["id"][n]), int(batch["frame_count"][n])
            if isinstance(batch["error"][n], str):  # no error: None, or NaN once Ray's blocks held it as null
                failed.append((int(batch["index"][n]), {"id": row_id, "audio": str(batch["audio"][n]),
                                                        "error": str(batch["error"][n])}))
                continue
            kept = sampled_frames(row_id, count, settings.sample_seed, settings.sample_fraction)
            order = (int(batch["index"][n]) << 32) + kept  # input order, then frame order
            cut.add(frame_keys(row_id, count, settings.sample_seed)[kept], order,
                    np.asarray(batch["frames"][n], np.float32).reshape(len(kept), -1))
            if statistics:
                result.stats.merge(count, batch["frame_mean"][n], batch["frame_m2"][n])
            frames_seen += count
    result.failures = [failure for _, failure in sorted(failed, key=lambda pair: pair[0])]  # in input order
    result.frames, result.seconds = cut.frames(), frames_seen / FRAMES_PER_SECOND
    return result
