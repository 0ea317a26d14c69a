"""Bulk inference: a corpus through `transcribe`, `embed` or `classify`, into Parquet shards, resumable, and shared
out over `torchrun` ranks.

The output directory (read it with pandas, pyarrow or `datasets.load_dataset("parquet", ...)`; no w2vbert needed):

    run.json                        what the run is: task, model, layer, pooling, dtype, shard size, inputs. A rerun
                                    with other settings is refused unless --overwrite
    data/shard-00000.parquet, ...   one row per input, in input order: id, audio, duration (s, decoded), the task's
                                    columns, error (null, or why the input failed); `pandas.read_parquet("OUT/data")`
    frames/shard-00000.safetensors  (embed --pool none) every input's frames (frames, hidden), under its id
    partial-stats/shard-00000.safetensors  (embed --stats) the shard's frame count, mean and M2 per dimension
    manifest.json                   written last, once every shard is in place: the shards and their rows, the
                                    settings, counts of inputs, failures and hours
    failures.parquet                id, audio and error of every input that failed
    stats.safetensors               (embed --stats) mean, std and count per dimension over every valid frame

A shard is written under a temporary name and renamed when whole, so a run killed at any point and started again
with the same command skips the finished shards and ends with the files of an uninterrupted run. Within a shard,
inputs are decoded and their features computed in DataLoader worker processes (`num_workers`), batched by length
under a cap of padded seconds (the training sampler), and run through the task's pipeline, whose windows serve
long files; a finished shard is written by a thread while the model runs the next batch.

In order: the inputs, the settings, the worker dataset, the run, the shard files, the statistics.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import dataclasses
import datetime
import gc
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.distributed as dist
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy_file
from safetensors.numpy import save_file as save_numpy_file
from tqdm import tqdm

from w2vbert.audio.decode import SAMPLING_RATE, audio_seconds
from w2vbert.audio.features import SeamlessM4TFeatureExtractor
from w2vbert.audio.vad import VadOptions, speech_windows
from w2vbert.audio.windows import WindowPlan
from w2vbert.data.manifest import AUDIO_EXTENSIONS, read_manifest
from w2vbert.data.sampler import LengthGroupedBatchSampler
from w2vbert.inference.engine import Pipeline, ReadyWindow, Recording, as_clip, window_features
from w2vbert.inference.pipelines import (
    AudioClassificationPipeline,
    AutomaticSpeechRecognitionPipeline,
    FeatureExtractionPipeline,
)
from w2vbert.loading.devices import MAX_BATCH_SECONDS
from w2vbert.utils.files import atomic_output, atomic_write_text, read_json_object

logger = logging.getLogger("w2vbert")

RUN_NAME = "run.json"
DATA, FRAMES, PARTIAL_STATS = "data", "frames", "partial-stats"  # the shards' folders
MANIFEST_NAME = "manifest.json"
FAILURES_NAME = "failures.parquet"
STATS_NAME = "stats.safetensors"
FORMAT_VERSION = 1
PYARROW_HINT = "bulk runs write Parquet with pyarrow: pip install 'w2vbert[bulk]'"
TRIM_EVERY = 16  # batches between handing freed memory back to the system (return_freed_memory)


# ------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Input:
    """One corpus entry: its id (unique in the run), its audio file (an absolute path), and its duration if the
    manifest states it (else the file's header is read when its shard comes up)."""

    id: str
    audio: str
    seconds: float | None = None


def inputs_from_manifest(
    path: str | os.PathLike, audio_column: str = "audio", id_column: str = "id", duration_column: str = "duration"
) -> list[Input]:
    """A CSV/TSV/JSONL manifest's rows: ids from `id_column` if it has one, else the audio column's paths; paths
    relative to the manifest; durations (seconds) from `duration_column` if it has one, as NeMo manifests do. A
    malformed row stops the run naming its line; a missing file is a failure of its row, in the failures table."""
    folder = Path(path).parent
    entries = []
    for source, row in read_manifest(path, [audio_column]):
        if not row[audio_column]:
            raise ValueError(f"{source}: the {audio_column!r} column is empty")
        audio = Path(os.path.expanduser(row[audio_column]))
        audio = audio if audio.is_absolute() else folder / audio
        seconds = None
        if row.get(duration_column):
            try:
                seconds = float(row[duration_column])
            except ValueError:
                raise ValueError(f"{source}: {duration_column!r} must be a number of seconds, got "
                                 f"{row[duration_column]!r}") from None
        entries.append((Input(row.get(id_column) or row[audio_column], os.path.abspath(audio), seconds), source))
    return _unique(entries)


def inputs_from_directory(directory: str | os.PathLike) -> list[Input]:
    """Every audio file below `directory` (by extension, recursively, sorted); ids are the relative paths."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: --input-dir must be a directory")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"{directory}: no audio files below it (looked for {', '.join(AUDIO_EXTENSIONS)})")
    return _unique([(Input(str(p.relative_to(directory)), os.path.abspath(p)), str(p)) for p in files])


def inputs_from_files(files: list[str]) -> list[Input]:
    """Files named on the command line; ids are the paths as given."""
    return _unique([(Input(f, os.path.abspath(f)), f) for f in files])


def check_unique(inputs: list[Input]) -> list[Input]:
    """`inputs` (from several sources) if their ids are unique; else a ValueError naming the repeated ones."""
    return _unique([(entry, entry.audio) for entry in inputs])


def _unique(entries: list[tuple[Input, str]]) -> list[Input]:
    """The inputs of (input, where it was named) pairs, refused with the first repeats when an id repeats: outputs
    are keyed by id."""
    seen: dict[str, str] = {}
    repeats = []
    for entry, source in entries:
        if entry.id in seen:
            repeats.append(f"{entry.id!r} ({seen[entry.id]} and {source})")
        seen.setdefault(entry.id, source)
    if repeats:
        raise ValueError(f"ids must be unique in a run, and {len(repeats)} repeat: {', '.join(repeats[:3])}")
    return [entry for entry, _ in entries]


def input_seconds(entry: Input) -> float:
    """The input's duration for batching: stated, or from its header; 0 when it cannot be read (its worker then
    says why, in the failures table)."""
    if entry.seconds is not None:
        return entry.seconds
    try:
        return audio_seconds(entry.audio)
    except (OSError, ValueError, av.FFmpegError):
        return 0.0


# ----------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class BulkSettings:
    """What a bulk run computes; a rerun into the same directory must say the same (see `check_run`)."""

    task: str  # "automatic-speech-recognition", "audio-classification" or "feature-extraction"
    model: str
    dtype: str = "float32"
    quantize: str | None = None
    layer: int | None = None  # feature-extraction
    pool: str | None = None  # feature-extraction: "mean", or None for every frame
    timestamps: str | None = None  # speech recognition: "word" or "char" adds a `chunks` column
    decoding: str | None = None  # speech recognition: the beam search and language model, or None for greedy
    top_k: int = 1  # classification: labels kept per input
    chunk_length_s: float | None = None
    stride_length_s: float | None = None
    shard_size: int = 1000  # inputs per shard
    max_batch_seconds: float = MAX_BATCH_SECONDS["cpu"]  # padded audio per model batch
    stats: bool = False  # feature-extraction: per-dimension mean and std over all valid frames
    vad: VadOptions | None = None  # speech recognition: only the speech went to the model (the pipeline's vad)

    @property
    def frames(self) -> bool:
        """Whether the run keeps every frame (feature extraction without pooling), in safetensors shards."""
        return self.task == "feature-extraction" and self.pool is None


def check_run(output_dir: Path, settings: BulkSettings, inputs: list[Input], overwrite: bool) -> None:
    """Refuse a directory holding another run's outputs (other settings or inputs) unless `overwrite`, which
    clears them; record this run's settings (rank 0)."""
    listing = hashlib.sha256("".join(f"{entry.id}\t{entry.audio}\n" for entry in inputs).encode()).hexdigest()
    record = {"format_version": FORMAT_VERSION, "settings": dataclasses.asdict(settings),
              "inputs": len(inputs), "first_id": inputs[0].id if inputs else None, "inputs_sha256": listing}
    record = json.loads(json.dumps(record))  # as stored: a tuple (stride_length_s) reads back as a list
    path = output_dir / RUN_NAME
    if path.is_file() and not overwrite:
        stored = read_json_object(path)
        if stored != record:
            before = stored.get("settings", {})
            differ = sorted(k for k in record["settings"] if before.get(k) != record["settings"][k])
            differ += [k for k in ("inputs", "first_id", "inputs_sha256") if stored.get(k) != record[k]]
            raise ValueError(
                f"{output_dir} holds the outputs of another run ({', '.join(differ)} differ): pass --overwrite to "
                "replace them, or choose another --output-dir"
            )
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


# --------------------------------------------------------------------------------------- worker processes
class WindowedInputs(torch.utils.data.Dataset):
    """Input i -> (i, its windows with their features), or (i, why it cannot be read). Runs in the DataLoader's
    workers: decoding, the voice-activity detector and the fbank happen beside the model, not in its thread."""

    def __init__(
        self, inputs: list[Input], extractor: SeamlessM4TFeatureExtractor, plan: WindowPlan, vad: VadOptions | None
    ) -> None:
        self.inputs, self.extractor, self.plan, self.vad = inputs, extractor, plan, vad

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[int, list | str]:
        try:
            clip = as_clip(self.inputs[index].audio)
            # Features only, not the audio: what crosses to the model's process is what it reads.
            return index, [(window.without_audio(), window_features(self.extractor, window))
                           for window in speech_windows(clip.blocks(), self.plan, self.vad)]
        except (OSError, ValueError, TypeError) as error:
            return index, str(error)


def _items(batch: list) -> list:
    return batch


# ------------------------------------------------------------------------------------------------- the run
@dataclass
class BulkSummary:
    inputs: int = 0  # of the whole run
    failed: int = 0
    hours: float = 0.0  # decoded audio of the inputs that worked
    shards: int = 0
    skipped_shards: int = 0  # finished by an earlier run
    seconds: float = 0.0  # wall time of this process


class _Stats:
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


def run(
    pipe: Pipeline,
    settings: BulkSettings,
    inputs: list[Input],
    output_dir: str | os.PathLike,
    *,
    num_workers: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> BulkSummary:
    """Run `inputs` through `pipe` into the shard layout of `output_dir`; returns the summary (of the whole run,
    from rank 0 once every rank is done; of this rank's shards on the others).

    Under torchrun each rank takes shards k with k % world_size == rank; rank 0 writes the manifest, the failures
    table and the statistics once all ranks are done.
    """
    pa, _ = pyarrow_modules()  # a missing extra is said before any work
    if settings.vad != pipe.vad:  # run.json must record what the pipeline does
        raise ValueError(f"settings.vad must be the pipeline's vad ({pipe.vad}), got {settings.vad}")
    # pyarrow imports pandas, where installed, at its first conversion (~50 MB): done here, before the workers fork,
    # so that the run's memory is all taken in its first seconds rather than at the first shard written.
    pa.array([""])
    started = time.time()
    output_dir = Path(output_dir)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        # Ranks meet at barriers only at the start and the end: a rank whose shards are done (or fewer) waits
        # there for the others, hours on a large corpus, far past gloo's default of 30 minutes.
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        check_run(output_dir, settings, inputs, overwrite)
        for folder, wanted in ((DATA, True), (FRAMES, settings.frames), (PARTIAL_STATS, settings.stats)):
            if wanted:
                (output_dir / folder).mkdir(exist_ok=True)
    _barrier(world)
    shards = [range(start, min(start + settings.shard_size, len(inputs)))
              for start in range(0, len(inputs), settings.shard_size)]
    todo = [k for k in range(rank, len(shards), world) if not _finished(output_dir, k)]
    summary = BulkSummary(shards=len(shards), skipped_shards=len(range(rank, len(shards), world)) - len(todo))
    shard_of = {i: k for k in todo for i in shards[k]}
    rows: dict[int, dict[int, dict]] = {k: {} for k in todo}
    frames: dict[int, dict[str, np.ndarray]] = {k: {} for k in todo}
    stats = {k: _Stats() for k in todo}
    bar = tqdm(total=len(shard_of), unit="file", disable=not progress or rank != 0, dynamic_ncols=True)
    done_seconds, batches_run = 0.0, 0
    with (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="w2vbert-shard-writer") as writer,
          ShardBatches(inputs, [shards[k] for k in todo], settings.max_batch_seconds) as batches):
        loader = torch.utils.data.DataLoader(
            WindowedInputs(inputs, pipe.feature_extractor,
                           pipe.plan(settings.chunk_length_s, settings.stride_length_s), pipe.vad),
            batch_sampler=batches, collate_fn=_items, num_workers=num_workers,
            prefetch_factor=4 if num_workers else None,
        )
        pending: list[concurrent.futures.Future] = []
        # The workers fork when the loop starts. Objects the collector never visits keep their pages shared with
        # the workers instead of being copied into each as a collection touches them (gc.freeze's purpose).
        gc.freeze()
        try:
            with torch.inference_mode():
                for items in loader:
                    for index, recording in _run_batch(pipe, inputs, items, settings.max_batch_seconds):
                        k = shard_of[index]
                        rows[k][index], frames_of = _row(pipe, settings, inputs[index], recording)
                        if frames_of is not None:
                            if settings.stats:
                                stats[k].add(frames_of)
                            if settings.frames:
                                frames[k][inputs[index].id] = frames_of
                        if len(rows[k]) == len(shards[k]):  # whole: written beside the next batches
                            for earlier in pending:  # a disk slower than the model: wait, rather than hold
                                earlier.result()     # every finished shard in memory
                            pending = [writer.submit(_write_shard, output_dir, k, settings, rows.pop(k),
                                                     frames.pop(k), stats.pop(k), pipe.model.config.hidden_size)]
                        done_seconds += recording.samples / SAMPLING_RATE
                        bar.update()
                    _raise_write_errors(pending)
                    batches_run += 1
                    if batches_run % TRIM_EVERY == 0:
                        return_freed_memory()
                    bar.set_postfix_str(f"{done_seconds / 3600:.2f} h of audio, "
                                        f"{done_seconds / max(time.time() - started, 1e-9):.0f}x real time",
                                        refresh=False)
            for future in pending:
                future.result()
        finally:
            gc.unfreeze()
            bar.close()
    _barrier(world)
    summary.seconds = time.time() - started
    if rank == 0:
        summary = _finish(output_dir, settings, inputs, shards, summary)
    _barrier(world)
    return summary


class ShardBatches:
    """The model batches of the shards to do, in order: each shard's inputs grouped by length under the cap of
    padded seconds (the training sampler, unshuffled). Durations not in the manifest come from the file headers,
    read by a thread one shard ahead (about 3 ms per non-WAV file) so that the model never waits for them."""

    def __init__(self, inputs: list[Input], shards: list[range], max_batch_seconds: float) -> None:
        self.inputs, self.shards, self.max_batch_seconds = inputs, shards, max_batch_seconds
        self.headers = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="w2vbert-headers")

    def __enter__(self) -> ShardBatches:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.headers.shutdown(wait=True, cancel_futures=True)

    def _durations(self, shard: range) -> list[float]:
        return [max(input_seconds(self.inputs[i]), 0.01) for i in shard]

    def __iter__(self) -> Iterator[list[int]]:
        ahead = [self.headers.submit(self._durations, shard) for shard in self.shards[:1]]
        for n, shard in enumerate(self.shards):
            if n + 1 < len(self.shards):
                ahead.append(self.headers.submit(self._durations, self.shards[n + 1]))
            sampler = LengthGroupedBatchSampler(ahead[n].result(), self.max_batch_seconds, shuffle=False)
            for batch in sampler.global_batches(0):
                yield [shard[i] for i in batch]


def _run_batch(
    pipe: Pipeline, inputs: list[Input], items: list, max_batch_seconds: float
) -> Iterator[tuple[int, Recording]]:
    """The windows of a loader batch through the model, under the cap of padded seconds; the recordings back."""
    recordings, ready = [], []
    for index, windowed in items:
        recording = Recording(inputs[index].audio)
        if isinstance(windowed, str):
            recording.fail(ValueError(windowed))
        else:
            for window, features in windowed:
                try:
                    checked = pipe.checked(recording, window, features)
                except ValueError as error:
                    recording.fail(error)
                    break
                if checked is not None:
                    ready.append(checked)
        recording.done = True
        recordings.append((index, recording))
    for chunk in _chunks(ready, max_batch_seconds):
        pipe.run_windows(chunk)
    yield from recordings


def _chunks(ready: list[ReadyWindow], max_batch_seconds: float) -> Iterator[list[ReadyWindow]]:
    """Consecutive windows in groups whose padded length (count x longest) stays under the cap (at least one)."""
    group: list[ReadyWindow] = []
    longest = 0
    for window in ready:
        samples = window.window.samples
        if group and max(longest, samples) * (len(group) + 1) / SAMPLING_RATE > max_batch_seconds:
            yield group
            group, longest = [], 0
        group.append(window)
        longest = max(longest, samples)
    if group:
        yield group


def _row(
    pipe: Pipeline, settings: BulkSettings, entry: Input, recording: Recording
) -> tuple[dict[str, Any], np.ndarray | None]:
    """The shard row of one input, and its frames (feature extraction) for the statistics and frame files."""
    row: dict[str, Any] = {"id": entry.id, "audio": entry.audio, "duration": recording.samples / SAMPLING_RATE,
                           "error": None}
    options: dict[str, Any] = {}
    if isinstance(pipe, AutomaticSpeechRecognitionPipeline):
        options["return_timestamps"] = settings.timestamps
    elif isinstance(pipe, AudioClassificationPipeline):
        options["top_k"] = settings.top_k
    elif isinstance(pipe, FeatureExtractionPipeline):
        options["pool"] = "none"  # the frames; pooled here, as the pipeline pools
    result = pipe.result(recording, **options)
    if isinstance(result, Exception):
        return row | {"error": str(result)}, None
    if isinstance(pipe, AutomaticSpeechRecognitionPipeline):
        row["text"] = result["text"]
        if settings.timestamps:
            row["chunks"] = [{"text": c["text"], "start": c["timestamp"][0], "end": c["timestamp"][1]}
                             for c in result["chunks"]]
        return row, None
    if isinstance(pipe, AudioClassificationPipeline):
        row |= {"label": result[0]["label"], "score": result[0]["score"],
                "labels": [r["label"] for r in result], "scores": [r["score"] for r in result]}
        return row, None
    frames = result  # (frames, hidden) float32
    if settings.pool == "mean":
        row["embedding"] = pipe.postprocess(torch.from_numpy(frames), pool="mean")
    else:
        row |= {"frames": len(frames), "embedding_key": entry.id}
    return row, frames


def return_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere). Batches of ever
    other lengths leave glibc's heap fragmented, and a corpus run's resident memory then creeps up for hours
    before it levels off (benchmarks/NOTES.md, "Corpus runs")."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc() -> Any:
    """The C library when it is glibc on Linux (the one with malloc_trim); None elsewhere (Windows, macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):
        return None
    if not hasattr(libc, "malloc_trim"):
        return None
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


_LIBC = _glibc()


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _raise_write_errors(pending: list[concurrent.futures.Future]) -> None:
    for future in pending:
        if future.done() and future.exception() is not None:
            raise future.exception()


# -------------------------------------------------------------------------------------------- shard files
def shard_name(k: int) -> str:
    return f"shard-{k:05d}"


def _finished(output_dir: Path, k: int) -> bool:
    """A shard is done when its Parquet file is in place (written last, under its final name after its frames and
    statistics)."""
    return (output_dir / DATA / f"{shard_name(k)}.parquet").is_file()


def pyarrow_modules() -> tuple[Any, Any]:
    try:
        import pyarrow as pa  # the `bulk` extra
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError(PYARROW_HINT) from error
    return pa, pq


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
    elif settings.pool == "mean":
        fields.append(("embedding", pa.list_(pa.float32(), width)))
    else:
        fields += [("frames", pa.int64()), ("embedding_key", pa.string())]
    fields.append(("error", pa.string()))
    return pa.schema(fields)


def _write_shard(
    output_dir: Path, k: int, settings: BulkSettings, rows: dict[int, dict], frames: dict[str, np.ndarray],
    stats: _Stats,
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
    except (OSError, SafetensorError) as error:
        reason = getattr(error, "strerror", None) or error
        raise OSError(f"cannot write shard {name} in {output_dir}: {reason} (it is not counted as done; rerun the "
                      "same command to redo it)") from error


def _finish(
    output_dir: Path, settings: BulkSettings, inputs: list[Input], shards: list[range], summary: BulkSummary
) -> BulkSummary:
    """Rank 0, every shard written: the failures table, the statistics, and last the manifest."""
    pa, pq = pyarrow_modules()
    entries, failures, hours = [], [], 0.0
    merged = _Stats()
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
    failure_schema = pa.schema([("id", pa.string()), ("audio", pa.string()), ("error", pa.string())])
    with atomic_output(output_dir / FAILURES_NAME) as temporary:
        pq.write_table(pa.Table.from_pylist(failures, schema=failure_schema), temporary)
    if settings.stats and merged.count:
        std = np.sqrt(merged.m2 / max(merged.count - 1, 1))
        with atomic_output(output_dir / STATS_NAME) as temporary:
            save_numpy_file({"mean": merged.mean.astype(np.float32), "std": std.astype(np.float32),
                             "count": np.array([merged.count], dtype=np.int64)}, temporary,
                            metadata={"layer": str(settings.layer), "model": settings.model})
    manifest = {"format_version": FORMAT_VERSION, "settings": dataclasses.asdict(settings), "inputs": len(inputs),
                "failed": len(failures), "hours": hours, "shards": entries,
                "statistics": STATS_NAME if settings.stats else None, "failures": FAILURES_NAME}
    atomic_write_text(output_dir / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return dataclasses.replace(summary, inputs=len(inputs), failed=len(failures), hours=hours)
