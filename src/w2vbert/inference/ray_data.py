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
`pip install 'w2vbert[ray]'`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from w2vbert.audio.decode import SAMPLING_RATE
from w2vbert.inference.pipelines import pipeline


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
        **task_options: Any,
    ) -> None:
        self.task = task
        self.pipe = pipeline(task, model, device=device, torch_dtype=torch_dtype, batch_size=batch_size,
                             **task_options)

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
        elif self.pipe.pool is None:  # frames of each input, of its own length: one array per row
            out["embedding"] = column([None if f else r for r, f in zip(results, failed, strict=True)])
        else:
            width = self.pipe.encoder.config.hidden_size
            out["embedding"] = np.stack([np.full(width, np.nan, np.float32) if f else r
                                         for r, f in zip(results, failed, strict=True)]) if results else \
                np.zeros((0, width), np.float32)
        return out


def column(values: list) -> np.ndarray:
    """A 1-D object column of `values`, whatever they are (np.array would stack equal-shaped arrays into one)."""
    out = np.empty(len(values), dtype=object)
    out[:] = [None] * len(values)
    for i, value in enumerate(values):
        out[i] = value
    return out
