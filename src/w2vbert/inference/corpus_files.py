"""A corpus run's output directory: its layout, `run.json` (what the run is), the shard files, the per-dimension
statistics, and what rank 0 writes last (the failures table, the merged statistics, the manifest).

    run.json                        what the run is: task, model, layer, pooling, dtype, shard size, inputs, and a
                                    fingerprint of the model's weights (loading/fingerprint.py). A rerun with other
                                    settings, or after the weights changed in place, is refused unless --overwrite
    data/shard-00000.parquet, ...   one row per input, in input order: id, audio, duration (s, decoded), the task's
                                    columns, error (null, or why the input failed); `pandas.read_parquet("OUT/data")`
                                    (units extract: frames, units, and with --deduplicate durations)
    frames/shard-00000.safetensors  (embed --pool none) every input's frames (frames, hidden), under its id (units
                                    fit: its sampled frames only)
    partial-stats/shard-00000.safetensors  (embed --stats) the shard's frame count, mean and M2 per dimension
    manifest.json                   written last, once every shard is in place: the shards and their rows, the
                                    settings, counts of inputs, failures and hours
    failures.parquet                id, audio and error of every input that failed
    stats.safetensors               (embed --stats) mean, std and count per dimension over every valid frame

A shard is written under a temporary name and renamed when whole, its Parquet file last: that name is the shard's
"done", which a rerun of the same command reads to skip it.

In order: the names, `check_run`, the statistics, the shard files, the run's last files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file as load_numpy_file
from safetensors.numpy import save_file as save_numpy_file

from w2vbert.inference.corpus_settings import BulkSettings, BulkSummary, Input
from w2vbert.loading.fingerprint import weights_fingerprint
from w2vbert.units.codebook import INT16_UNITS
from w2vbert.utils.extras import optional_import
from w2vbert.utils.files import atomic_output, atomic_write_text, read_json_object

logger = logging.getLogger("w2vbert")

RUN_NAME = "run.json"
DATA, FRAMES, PARTIAL_STATS = "data", "frames", "partial-stats"  # the shards' folders
MANIFEST_NAME = "manifest.json"
FAILURES_NAME = "failures.parquet"
STATS_NAME = "stats.safetensors"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------------- run.json
def check_run(output_dir: Path, settings: BulkSettings, inputs: list[Input], overwrite: bool) -> None:
    """Refuse a directory holding another run's outputs (other settings, inputs or weights) unless `overwrite`,
    which clears them; record this run's settings (rank 0)."""
    listing = hashlib.sha256("".join(f"{entry.id}\t{entry.audio}\n" for entry in inputs).encode()).hexdigest()
    record = {"format_version": FORMAT_VERSION, "settings": dataclasses.asdict(settings),
              "inputs": len(inputs), "first_id": inputs[0].id if inputs else None, "inputs_sha256": listing,
              "weights": weights_fingerprint(settings.model)}
    record = json.loads(json.dumps(record))  # as stored: a tuple (stride_length_s) reads back as a list
    path = output_dir / RUN_NAME
    if path.is_file() and not overwrite:
        _check_same_run(output_dir, read_json_object(path), record)
    elif overwrite:
        for folder in (DATA, FRAMES, PARTIAL_STATS):
            shutil.rmtree(output_dir / folder, ignore_errors=True)
        for name in (MANIFEST_NAME, FAILURES_NAME, STATS_NAME):
            (output_dir / name).unlink(missing_ok=True)
    elif any((output_dir / DATA).glob("shard-*")):
        raise ValueError(f"{output_dir} holds shards without a {RUN_NAME}: pass --overwrite, or another --output-dir")
    for folder in (DATA, FRAMES, PARTIAL_STATS):  # what a killed writer left half-written (no rank writes yet)
        for leftover in (output_dir / folder).glob(".shard-*.tmp"):
            leftover.unlink()
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def _check_same_run(output_dir: Path, stored: dict[str, Any], record: dict[str, Any]) -> None:
    """Refuse `output_dir` if its run.json (`stored`) is not this run's `record`: the settings and inputs, then the
    weights the model path holds now (changed in place, they would mix two models' outputs in one run).

    A run.json from before weights were recorded is accepted with a warning: it was written by the same command
    at that version, refusing it would throw away every finished shard on an upgrade, and whether the weights
    changed since cannot be known; this run records them, so the next resume is checked."""
    before = stored.get("settings", {})
    differ = sorted(k for k in record["settings"] if before.get(k) != record["settings"][k])
    differ += [k for k in record if k not in ("settings", "weights") and stored.get(k) != record[k]]
    if differ:
        raise ValueError(
            f"{output_dir} holds the outputs of another run ({', '.join(differ)} differ): pass --overwrite to "
            "replace them, or choose another --output-dir"
        )
    if "weights" not in stored:
        logger.warning("%s records no fingerprint of the weights (written by an older w2vbert): resuming as if "
                       "%s were unchanged since its shards were written", output_dir / RUN_NAME,
                       record["settings"]["model"])
        return
    weights = stored["weights"]
    changed = sorted(n for n in weights.keys() | record["weights"].keys() if weights.get(n) != record["weights"].get(n))
    if changed:
        raise ValueError(
            f"{output_dir} holds outputs of other weights: {', '.join(changed)} of {record['settings']['model']} "
            "changed since its shards were written: pass --overwrite to start again with these weights, or choose "
            "another --output-dir"
        )


# ------------------------------------------------------------------------------------------------- statistics
class FrameStats:
    """Per-dimension count, mean and sum of squared deviations (M2), merged in float64 (Chan et al.)."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, None, None

    def add(self, frames: np.ndarray) -> None:
        values = frames.astype(np.float64)
        mean = values.mean(0)
        self.merge(len(values), mean, ((values - mean) ** 2).sum(0))

    def merge(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = count, mean.copy(), m2.copy()
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    def arrays(self) -> dict[str, np.ndarray]:
        return {"count": np.array([self.count], dtype=np.int64), "mean": self.mean, "m2": self.m2}


# ------------------------------------------------------------------------------------------------ shard files
def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def _finished(output_dir: Path, k: int) -> bool:
    """A shard is done when its Parquet file is in place (written last, under its final name after its frames and
    statistics)."""
    return (output_dir / DATA / f"{shard_name(k)}.parquet").is_file()


def pyarrow_modules() -> tuple[Any, Any]:
    needed_for = "a corpus run (Parquet shards)"
    return optional_import("pyarrow", needed_for), optional_import("pyarrow.parquet", needed_for)


def _schema(settings: BulkSettings, width: int) -> Any:
    """The columns of a shard; `width` is the embedding size (the model's hidden size), the same in every shard
    (a shard whose inputs all failed included)."""
    pa, _ = pyarrow_modules()
    fields = [("id", pa.string()), ("audio", pa.string()), ("duration", pa.float64())]
    if settings.task == "automatic-speech-recognition":
        fields.append(("text", pa.string()))
        if settings.timestamps:
            chunk = pa.struct([("text", pa.string()), ("start", pa.float64()), ("end", pa.float64())])
            fields.append(("chunks", pa.list_(chunk)))
    elif settings.task == "audio-classification":
        fields += [("label", pa.string()), ("score", pa.float64()), ("labels", pa.list_(pa.string())),
                   ("scores", pa.list_(pa.float64()))]
    elif settings.task == "speech-units":
        ids = pa.int16() if settings.units <= INT16_UNITS else pa.int32()
        fields += [("frames", pa.int64()), ("units", pa.list_(ids))]
        if settings.deduplicate:
            fields.append(("durations", pa.list_(pa.int32())))
    elif settings.pool == "mean":
        fields.append(("embedding", pa.list_(pa.float32(), width)))
    else:
        fields += [("frames", pa.int64()), ("embedding_key", pa.string())]
    fields.append(("error", pa.string()))
    return pa.schema(fields)


def _write_shard(
    output_dir: Path, k: int, settings: BulkSettings, rows: dict[int, dict], frames: dict[str, np.ndarray],
    stats: FrameStats,
    width: int,
) -> None:
    """Write shard k: its frames and statistics first, its Parquet file last (its name is the shard's "done")."""
    pa, pq = pyarrow_modules()
    name = shard_name(k)
    ordered = [rows[i] for i in sorted(rows)]
    try:
        if settings.frames:
            with atomic_output(output_dir / FRAMES / f"{name}.safetensors") as temporary:
                save_numpy_file({key: np.ascontiguousarray(v) for key, v in frames.items()}, temporary,
                                metadata={"layer": str(settings.layer), "model": settings.model})
        if settings.stats:
            with atomic_output(output_dir / PARTIAL_STATS / f"{name}.safetensors") as temporary:
                save_numpy_file(stats.arrays() if stats.count else {"count": np.zeros(1, np.int64)}, temporary)
        table = pa.Table.from_pylist(ordered, schema=_schema(settings, width))
        with atomic_output(output_dir / DATA / f"{name}.parquet") as temporary:
            pq.write_table(table, temporary)
    except OSError as error:  # atomic_output's, naming the file
        raise OSError(f"{error}: shard {name} is not counted as done; rerun the same command to redo it") from error


def write_failures(output_dir: Path, failures: list[dict[str, str]]) -> None:
    """The failures table: id, audio and error of each input that failed (none: an empty table)."""
    pa, pq = pyarrow_modules()
    schema = pa.schema([("id", pa.string()), ("audio", pa.string()), ("error", pa.string())])
    with atomic_output(output_dir / FAILURES_NAME) as temporary:
        pq.write_table(pa.Table.from_pylist(failures, schema=schema), temporary)


def write_statistics(output_dir: Path, merged: FrameStats, settings: BulkSettings) -> None:
    """stats.safetensors: the per-dimension mean and std (unbiased) of every valid frame, and their count (no file
    when no frame was valid)."""
    if not merged.count:
        return
    std = np.sqrt(merged.m2 / max(merged.count - 1, 1))
    with atomic_output(output_dir / STATS_NAME) as temporary:
        save_numpy_file({"mean": merged.mean.astype(np.float32), "std": std.astype(np.float32),
                         "count": np.array([merged.count], dtype=np.int64)}, temporary,
                        metadata={"layer": str(settings.layer), "model": settings.model})


def _finish(
    output_dir: Path, settings: BulkSettings, inputs: list[Input], shards: list[range], summary: BulkSummary
) -> BulkSummary:
    """Rank 0, every shard written: the failures table, the statistics, and last the manifest."""
    pa, pq = pyarrow_modules()
    entries, failures, hours = [], [], 0.0
    merged = FrameStats()
    for k in range(len(shards)):
        path = output_dir / DATA / f"{shard_name(k)}.parquet"
        if not path.is_file():
            raise RuntimeError(f"{path} is missing after every rank finished: rerun the same command to redo it")
        table = pq.read_table(path, columns=["id", "audio", "duration", "error"]).to_pylist()
        bad = [r for r in table if r["error"] is not None]
        failures += [{"id": r["id"], "audio": r["audio"], "error": r["error"]} for r in bad]
        hours += sum(r["duration"] for r in table if r["error"] is None) / 3600
        entries.append({"file": f"{DATA}/{path.name}", "rows": len(table), "failures": len(bad)}
                       | ({"frames_file": f"{FRAMES}/{shard_name(k)}.safetensors"} if settings.frames
                          else {}))
        if settings.stats:
            part = load_numpy_file(output_dir / PARTIAL_STATS / f"{shard_name(k)}.safetensors")
            if int(part["count"][0]):
                merged.merge(int(part["count"][0]), part["mean"], part["m2"])
    write_failures(output_dir, failures)
    if settings.stats:
        write_statistics(output_dir, merged, settings)
    manifest = {"format_version": FORMAT_VERSION, "settings": dataclasses.asdict(settings), "inputs": len(inputs),
                "failed": len(failures), "hours": hours, "shards": entries,
                "statistics": STATS_NAME if settings.stats else None, "failures": FAILURES_NAME}
    atomic_write_text(output_dir / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return dataclasses.replace(summary, inputs=len(inputs), failed=len(failures), hours=hours)
