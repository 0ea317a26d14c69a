"""What a corpus run is given: its inputs (`Input`, from a manifest, a directory or files on the command line) and
its settings (`BulkSettings`), and what it reports (`BulkSummary`).

In order: the inputs, their ids kept unique, their durations; the settings; the summary.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from w2vbert.audio.decode import audio_seconds
from w2vbert.audio.vad import VadOptions
from w2vbert.data.manifest import AUDIO_EXTENSIONS, read_manifest
from w2vbert.loading.devices import MAX_BATCH_SECONDS
from w2vbert.units.sampling import sampled_frames


# ----------------------------------------------------------------------------------------------------- inputs
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


# --------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class BulkSettings:
    """What a bulk run computes; a rerun into the same directory must say the same (see `check_run`)."""

    task: str  # "automatic-speech-recognition", "audio-classification", "feature-extraction" or "speech-units"
    model: str
    dtype: str = "float32"
    quantize: str | None = None
    layer: int | None = None  # feature-extraction and speech-units
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
    sample_fraction: float | None = None  # feature-extraction: frames kept per input (units/sampling.py), or all
    sample_seed: int = 0  # ... and the seed of their keys
    codebook: str | None = None  # speech-units: the codebook's path
    codebook_sha256: str | None = None  # ... and a digest of its centroids (a codebook changed in place is another run)
    units: int | None = None  # speech-units: the codebook's k (ids are int16 up to 32767, else int32)
    deduplicate: bool = False  # speech-units: runs of a unit merged, with their durations in frames

    @property
    def frames(self) -> bool:
        """Whether the run keeps every frame (feature extraction without pooling), in safetensors shards."""
        return self.task == "feature-extraction" and self.pool is None

    def kept_frames(self, entry_id: str, frames: np.ndarray) -> np.ndarray:
        """The frames of an input that go to its frames file: all of them, or the sample (`sample_fraction`)."""
        if self.sample_fraction is None:
            return frames
        return frames[sampled_frames(entry_id, len(frames), self.sample_seed, self.sample_fraction)]


# ---------------------------------------------------------------------------------------------------- summary
@dataclass
class BulkSummary:
    """What `corpus.run` returns (its docstring says what each rank counts)."""

    inputs: int = 0  # of the whole run
    failed: int = 0
    hours: float = 0.0  # decoded audio of the inputs that worked
    shards: int = 0
    skipped_shards: int = 0  # finished by an earlier run
    seconds: float = 0.0  # wall time of this process

