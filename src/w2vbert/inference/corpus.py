"""Bulk inference: a corpus through `transcribe`, `embed`, `classify` or `units extract`, into Parquet shards,
resumable, and shared out over `torchrun` ranks (`units fit` draws its sample of frames as an `embed` run does).

The output directory is corpus_files.py's (read it with pandas, pyarrow or `datasets.load_dataset("parquet", ...)`;
no w2vbert needed); what a run is given and reports is corpus_settings.py's, whose names this module offers too
(`Input`, `inputs_from_manifest`, `BulkSettings`, `BulkSummary`, ...). A shard is written under a temporary name
and renamed when whole, so a run killed at any point and started again with the same command skips the finished
shards and ends with the files of an uninterrupted run.

Within a shard, inputs are decoded and their features computed in DataLoader worker processes (`num_workers`,
`WindowedInputs`), batched by length under a cap of padded seconds (the training sampler, `ShardBatches`), and the
windows of each loader batch run through the inference engine (engine.py: checked, batched under the same cap, the
task's model), whose windows serve long files; a finished shard is written by a thread while the model runs the
next batch.

In order: the worker dataset, the run (its ranks, its loop, the shards in progress, the loader's batches, a loader
batch through the engine, an input's row) and the ranks' barrier; the process's memory is utils/memory.py's.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import gc
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from w2vbert.audio.decode import SAMPLING_RATE
from w2vbert.audio.features import SeamlessM4TFeatureExtractor
from w2vbert.audio.vad import VadOptions, speech_windows
from w2vbert.audio.windows import WindowPlan
from w2vbert.data.sampler import LengthGroupedBatchSampler
from w2vbert.inference.corpus_files import (
    DATA,
    FAILURES_NAME,
    FRAMES,
    MANIFEST_NAME,
    PARTIAL_STATS,
    RUN_NAME,
    STATS_NAME,
    FrameStats,
    _finish,
    _finished,
    _write_shard,
    check_run,
    pyarrow_modules,
    shard_name,
    write_failures,
    write_statistics,
)
from w2vbert.inference.corpus_settings import (
    BulkSettings,
    BulkSummary,
    Input,
    check_unique,
    input_seconds,
    inputs_from_directory,
    inputs_from_files,
    inputs_from_manifest,
)
from w2vbert.inference.engine import (
    Batches,
    Pipeline,
    ReadyWindow,
    Recording,
    as_clip,
    checked_windows,
    featured_windows,
    in_order,
)
from w2vbert.inference.pipelines import (
    AudioClassificationPipeline,
    AutomaticSpeechRecognitionPipeline,
    FeatureExtractionPipeline,
    SpeechUnitsPipeline,
)
from w2vbert.utils.files import write_error
from w2vbert.utils.memory import return_freed_memory

__all__ = [
    "BulkSettings",
    "BulkSummary",
    "FrameStats",
    "Input",
    "ShardBatches",
    "WindowedInputs",
    "check_run",
    "check_unique",
    "input_seconds",
    "inputs_from_directory",
    "inputs_from_files",
    "inputs_from_manifest",
    "return_freed_memory",
    "run",
    "shard_name",
    "write_failures",
    "write_statistics",
    # the output directory's names (corpus_files.py)
    "DATA",
    "FAILURES_NAME",
    "FRAMES",
    "MANIFEST_NAME",
    "PARTIAL_STATS",
    "RUN_NAME",
    "STATS_NAME",
]

TRIM_EVERY = 16  # batches between handing freed memory back to the system (return_freed_memory)


# ------------------------------------------------------------------------------------------- worker processes
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
            return index, list(featured_windows(self.extractor, speech_windows(clip.blocks(), self.plan, self.vad)))
        except (OSError, ValueError, TypeError) as error:
            return index, str(error)


def _items(batch: list) -> list:
    return batch


# ---------------------------------------------------------------------------------------------------- the run
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
    rank, world = _ranks()
    if rank == 0:
        _make_output_dir(output_dir, settings, inputs, overwrite)
    _barrier(world)
    shards = [range(start, min(start + settings.shard_size, len(inputs)))
              for start in range(0, len(inputs), settings.shard_size)]
    todo = [k for k in range(rank, len(shards), world) if not _finished(output_dir, k)]
    summary = BulkSummary(shards=len(shards), skipped_shards=len(range(rank, len(shards), world)) - len(todo))
    open_shards = _OpenShards(pipe, settings, inputs, output_dir, {k: shards[k] for k in todo})
    bar = tqdm(total=len(open_shards.shard_of), unit="file", disable=not progress or rank != 0, dynamic_ncols=True)
    _run_shards(pipe, settings, inputs, open_shards, num_workers, bar, started)
    _barrier(world)
    summary.seconds = time.time() - started
    if rank == 0:
        summary = _finish(output_dir, settings, inputs, shards, summary)
    _barrier(world)
    return summary


def _ranks() -> tuple[int, int]:
    """This process's rank and the world size (torchrun's environment; 0 and 1 alone), the group joined."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        # Ranks meet at barriers only at the start and the end: a rank whose shards are done (or fewer) waits
        # there for the others, hours on a large corpus, far past gloo's default of 30 minutes.
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    return rank, world


def _make_output_dir(output_dir: Path, settings: BulkSettings, inputs: list[Input], overwrite: bool) -> None:
    """Rank 0, before any rank writes: the directory checked for another run's outputs, and its folders made."""
    _make_folder(output_dir, parents=True)
    check_run(output_dir, settings, inputs, overwrite)
    for folder, wanted in ((DATA, True), (FRAMES, settings.frames), (PARTIAL_STATS, settings.stats)):
        if wanted:
            _make_folder(output_dir / folder)


def _make_folder(folder: Path, parents: bool = False) -> None:
    try:
        folder.mkdir(parents=parents, exist_ok=True)
    except OSError as error:  # a full disk says so, naming the folder
        raise write_error(folder, error) from error


def _run_shards(
    pipe: Pipeline, settings: BulkSettings, inputs: list[Input], open_shards: _OpenShards, num_workers: int,
    bar: tqdm, started: float,
) -> None:
    """The loop of a rank: its shards' loader batches through the engine, each input's row to its shard, each
    whole shard to the writer thread."""
    done_seconds = 0.0
    with (concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="w2vbert-shard-writer") as writer,
          ShardBatches(inputs, list(open_shards.shards.values()), settings.max_batch_seconds) as batches):
        loader = torch.utils.data.DataLoader(
            WindowedInputs(inputs, pipe.feature_extractor,
                           pipe.plan(settings.chunk_length_s, settings.stride_length_s), pipe.vad),
            batch_sampler=batches, collate_fn=_items, num_workers=num_workers,
            prefetch_factor=4 if num_workers else None,
        )
        # The workers fork when the loop starts. Objects the collector never visits keep their pages shared with
        # the workers instead of being copied into each as a collection touches them (gc.freeze's purpose).
        gc.freeze()
        try:
            with torch.inference_mode():
                for batches_run, items in enumerate(loader, 1):
                    for index, recording in _run_batch(pipe, inputs, items, settings.max_batch_seconds):
                        open_shards.add(index, recording, writer)
                        done_seconds += recording.samples / SAMPLING_RATE
                        bar.update()
                    _raise_write_errors(open_shards.pending)
                    if batches_run % TRIM_EVERY == 0:
                        return_freed_memory()
                    bar.set_postfix_str(f"{done_seconds / 3600:.2f} h of audio, "
                                        f"{done_seconds / max(time.time() - started, 1e-9):.0f}x real time",
                                        refresh=False)
            for future in open_shards.pending:
                future.result()
        finally:
            gc.unfreeze()
            bar.close()


class _OpenShards:
    """This rank's shards to do, in progress: the rows of each, and its frames and statistics (feature
    extraction); a shard is handed to the writer thread once whole."""

    def __init__(
        self, pipe: Pipeline, settings: BulkSettings, inputs: list[Input], output_dir: Path, shards: dict[int, range]
    ) -> None:
        self.pipe, self.settings, self.inputs, self.output_dir, self.shards = pipe, settings, inputs, output_dir, shards
        self.shard_of = {i: k for k, shard in shards.items() for i in shard}
        self.rows: dict[int, dict[int, dict]] = {k: {} for k in shards}
        self.frames: dict[int, dict[str, np.ndarray]] = {k: {} for k in shards}
        self.stats = {k: FrameStats() for k in shards}
        self.pending: list[concurrent.futures.Future] = []  # the shard being written

    def add(self, index: int, recording: Recording, writer: concurrent.futures.Executor) -> None:
        """Input `index`'s row (and frames) to its shard; the shard to `writer` if that made it whole."""
        k, entry = self.shard_of[index], self.inputs[index]
        self.rows[k][index], frames_of = _row(self.pipe, self.settings, entry, recording)
        if frames_of is not None:
            if self.settings.stats:
                self.stats[k].add(frames_of)
            if self.settings.frames:
                self.frames[k][entry.id] = self.settings.kept_frames(entry.id, frames_of)
        if len(self.rows[k]) == len(self.shards[k]):  # whole: written beside the next batches
            for earlier in self.pending:  # a disk slower than the model: wait, rather than hold
                earlier.result()          # every finished shard in memory
            self.pending = [writer.submit(_write_shard, self.output_dir, k, self.settings, self.rows.pop(k),
                                          self.frames.pop(k), self.stats.pop(k),
                                          self.pipe.model.config.hidden_size)]


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
    """The windows of a loader batch through the engine, under the cap of padded seconds (a model batch never
    spans two loader batches); (index, recording) back in the loader's order, each once all its windows have run."""
    recordings = in_order(pipe, _loader_windows(pipe, inputs, items), Batches(max_seconds=max_batch_seconds))
    return zip((index for index, _ in items), recordings, strict=True)


def _loader_windows(
    pipe: Pipeline, inputs: list[Input], items: list
) -> Iterator[tuple[Recording, ReadyWindow | None]]:
    """The engine's stream of a loader batch: each input's windows checked for the model, then its end; an input
    its worker could not read, or too short for the model, fails alone."""
    for index, windowed in items:
        recording = Recording(inputs[index].audio)
        if isinstance(windowed, str):
            recording.fail(ValueError(windowed))
        else:
            try:
                for ready in checked_windows(pipe, recording, windowed):
                    yield recording, ready
            except ValueError as error:
                recording.fail(error)
        yield recording, None


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
    elif isinstance(pipe, SpeechUnitsPipeline):
        options["deduplicate"] = settings.deduplicate
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
    if isinstance(pipe, SpeechUnitsPipeline):
        row |= {"frames": int(recording.frame_count()), "units": result["units"]}
        if settings.deduplicate:
            row["durations"] = result["durations"]
        return row, None
    frames = result  # (frames, hidden) float32
    if settings.pool == "mean":
        row["embedding"] = pipe.postprocess(torch.from_numpy(frames), pool="mean")
    else:
        row |= {"frames": len(frames), "embedding_key": entry.id}
    return row, frames


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _raise_write_errors(pending: list[concurrent.futures.Future]) -> None:
    for future in pending:
        if future.done() and future.exception() is not None:
            raise future.exception()
