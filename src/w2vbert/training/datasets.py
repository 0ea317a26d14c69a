"""A task's examples and batches: manifests (or a `datasets` object) read into examples, the torch dataset that
decodes them, and the collator that pads them into batches.

A manifest is a CSV, TSV or JSON-lines file with one clip per row: an `audio` column (a path, relative to the
manifest's folder unless absolute) and the task's target column (`Task.target_column`: `text` for CTC, `label`
for classification, `segments` for frames, none for pre-training). Rows that cannot train (missing audio, empty
transcript, unknown label, bad segments) are reported with file and line (training/examples.py's `BadExamples`).

In order: `target_column`, `load_examples` and its helpers, `load_unlabeled`, `examples_from_dataset`,
`SpeechDataset`, `Collator`. Batches are grouped by length elsewhere (data/sampler.py) and capped by padded
seconds of audio, not by count: a batch of ten 2 s clips costs what a batch of one 20 s clip costs, so the cap is
what keeps memory flat.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch

from w2vbert.audio.decode import SAMPLING_RATE, audio_seconds, load_audio
from w2vbert.audio.fbank import HOP_LENGTH
from w2vbert.audio.features import SeamlessM4TFeatureExtractor
from w2vbert.data.manifest import AUDIO_EXTENSIONS, read_manifest
from w2vbert.text.segments import check_within, read_segments
from w2vbert.training.examples import AUDIO_COLUMN, BadExamples, Example, TextNormalizer
from w2vbert.training.tasks import task_named

logger = logging.getLogger("w2vbert")

FRAME_SECONDS = 2 * HOP_LENGTH / SAMPLING_RATE  # 20 ms: one encoder frame (two stacked 10 ms fbank frames)


def load_examples(
    manifest: str | os.PathLike,
    task: str,
    bad: BadExamples,
    normalizer: TextNormalizer | None = None,
    labels: Iterable[str] | None = None,
    audio_column: str = AUDIO_COLUMN,
    target_column_name: str | None = None,
) -> list[Example]:
    """Read a manifest into `Example`s, reporting rows with missing/unreadable audio, empty text, unknown labels.

    `labels` (classify, xvector, frames) is the label set the model knows; a row with another label is bad.
    Transcripts go through `normalizer` (default `TextNormalizer()`); class names are only stripped. For frames,
    the segments file (relative to the manifest, like the audio) is read and checked against the clip's length.
    """
    task = task_named(task)
    column = target_column_name or task.target_column
    normalizer = normalizer or TextNormalizer()
    known = None if labels is None else set(labels)
    folder = Path(manifest).parent
    examples = []
    for source, row in read_manifest(manifest, [audio_column] if column is None else [audio_column, column]):
        target = ""
        if column is not None:
            target = task.target(row[column], normalizer)
            if not target:
                bad.report(task.empty_target, source, f"{task.empty_target} (raw: {row[column]!r})")
                continue
        if known is not None and not task.segments and target not in known:
            bad.report("unknown label", source, f"label {target!r} is not in the label set {sorted(known)}")
            continue
        example = _audio_example(_relative_to(folder, row[audio_column]), target, source, bad)
        if example is not None and task.segments:
            example = _with_segments(example, _relative_to(folder, target), known, bad)
        if example is not None:
            examples.append(example)
    return examples


def _relative_to(folder: Path, name: str) -> Path:
    path = Path(os.path.expanduser(name))
    return path if path.is_absolute() else folder / path


def _with_segments(example: Example, path: Path, known: set[str] | None, bad: BadExamples) -> Example | None:
    """A frames example with its segments read and checked (text/segments.py); None (reported) when they are bad."""
    if not path.is_file():
        bad.report("missing segments", example.source, f"segments file {path} does not exist")
        return None
    try:
        segments = read_segments(path, recording=Path(str(example.audio)).stem)
        check_within(segments, example.seconds, FRAME_SECONDS, str(path))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        bad.report("bad segments", example.source, str(error))
        return None
    unknown = sorted({s.label for s in segments} - known) if known is not None else []
    if unknown:
        bad.report("unknown label", example.source, f"labels {unknown} are not in the label set {sorted(known)}")
        return None
    return dataclasses.replace(example, target=str(path), segments=tuple(segments))


def _audio_example(path: Path, target: str, source: str, bad: BadExamples) -> Example | None:
    """The example of one audio file, its length read from the header; None (reported) when it cannot be read."""
    if not path.is_file():
        bad.report("missing audio", source, f"audio file {path} does not exist")
        return None
    try:
        seconds = audio_seconds(path)
    except (OSError, ValueError, av.FFmpegError) as error:
        bad.report("unreadable audio", source, f"cannot read {path}: {error}")
        return None
    return Example(str(path), target, seconds, source)


def load_unlabeled(source: str | os.PathLike, bad: BadExamples, audio_column: str = AUDIO_COLUMN) -> list[Example]:
    """Audio for pre-training: a manifest's audio column (its other columns, text included, are ignored and said
    so once), or every audio file below a directory (by extension, sorted, recursively)."""
    source = Path(source)
    if not source.is_dir():
        if source.is_file():
            columns = next(iter(read_manifest(source, [audio_column])), ("", {}))[1]
            ignored = sorted(set(columns) - {audio_column})
            if ignored:
                logger.info("%s: pre-training reads audio only; columns %s are ignored", source, ignored)
        return load_examples(source, "pretrain", bad, audio_column=audio_column)
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"{source}: no audio files below it (looked for {', '.join(AUDIO_EXTENSIONS)})")
    examples = [_audio_example(path, "", str(path), bad) for path in files]
    return [example for example in examples if example is not None]


def examples_from_dataset(
    dataset: Iterable[dict[str, Any]],
    task: str,
    bad: BadExamples,
    normalizer: TextNormalizer | None = None,
    audio_column: str = AUDIO_COLUMN,
    target_column_name: str | None = None,
    name: str = "dataset",
) -> list[Example]:
    """`Example`s from a Hugging Face `datasets` object (or any iterable of dicts), held in memory.

    The audio column holds what `datasets.Audio` decodes to: {"array": samples, "sampling_rate": rate}, or a
    {"path": file} / plain path. No `datasets` import is needed: rows are read as dicts.
    """
    task = task_named(task)
    column = target_column_name or task.target_column
    if task.segments:
        raise ValueError("frames examples come from a manifest whose segments column names segment files; a "
                         "datasets object has none: write a manifest (audio, segments)")
    normalizer = normalizer or TextNormalizer()
    examples = []
    for index, row in enumerate(dataset):
        source = f"{name}[{index}]"
        missing = [c for c in (audio_column, column) if c not in row]
        if missing:
            raise ValueError(
                f"{source} lacks column(s) {missing}: expected {[audio_column, column]}, found {list(row)}"
            )
        raw = str(row[column])
        target = task.target(raw, normalizer)
        if not target:
            bad.report(task.empty_target, source, "empty target")
            continue
        audio = row[audio_column]
        if isinstance(audio, dict) and audio.get("array") is not None:
            samples = load_audio(np.asarray(audio["array"]), source_sampling_rate=int(audio["sampling_rate"]))
        else:
            path = audio.get("path") if isinstance(audio, dict) else audio
            if not path or not Path(path).is_file():
                bad.report("missing audio", source, f"audio file {path} does not exist")
                continue
            samples = load_audio(path)
        examples.append(Example(samples, target, len(samples) / SAMPLING_RATE, source))
    return examples


# ------------------------------------------------------------------------------------------------ datasets
class SpeechDataset(torch.utils.data.Dataset):
    """Examples -> {"audio": float32 samples, "target": label ids (ctc) or class id, "text", "seconds"}.

    `encode` maps a target to what the loss takes. A clip that fails to decode (corrupt past its header, NaN
    samples) is reported with its manifest line: with `on_bad="skip"` the item is None, which the collator leaves
    out and counts; with "fail" (the default) it raises. `cache=True` keeps decoded audio in memory after the first read
    (small data sets; the demo), so later epochs do not decode again. The cache lives in the process that reads:
    with DataLoader workers (`num_workers` > 0) each worker fills its own and loses it at the epoch's end.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        encode: Callable[[str], Any],
        cache: bool = False,
        on_bad: str = "fail",
    ) -> None:
        self.examples = list(examples)
        self.encode = encode
        self.bad = BadExamples(on_bad)  # its counts stay in the reading process: the collator's "bad" carries them
        self._cache: dict[int, np.ndarray] | None = {} if cache else None
        # what trial files name a clip by: its resolved path (or, for samples held in memory, where it came from)
        self.clips = [str(Path(e.audio).resolve()) if isinstance(e.audio, str) else e.source for e in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        example = self.examples[index]
        if self._cache is not None and index in self._cache:
            audio = self._cache[index]
        else:
            try:
                audio = load_audio(example.audio)  # a file decoded, or samples checked: NaN and inf are bad
            except (OSError, ValueError) as error:
                self.bad.report("unreadable audio", example.source, str(error))
                return None
            if example.crop:
                audio = audio[: int(example.seconds * SAMPLING_RATE)]
            if self._cache is not None:
                self._cache[index] = audio
        if example.segments is not None:  # frames: (start, end, label id) per segment, framed by the collator
            target = [(s.start, s.end, self.encode(s.label)) for s in example.segments]
        else:
            target = self.encode(example.target)
        return {"audio": audio, "target": target, "text": example.target, "clip": self.clips[index],
                "seconds": len(audio) / SAMPLING_RATE, "source": example.source, "index": index}

    @property
    def seconds(self) -> list[float]:
        return [example.seconds for example in self.examples]


class Collator:
    """A list of dataset items -> one padded batch: features, mask, labels, the audio seconds it holds, and under
    "bad" the kinds of the items it left out (None: failed to decode; clips the recipe's length rule refuses on
    their decoded length; features that came out non-finite)."""

    def __init__(
        self,
        feature_extractor: SeamlessM4TFeatureExtractor,
        task: str,
        background: int = 0,
        trainable: Callable[..., list[Example]] | None = None,
        on_bad: str = "skip",
    ) -> None:
        self.feature_extractor = feature_extractor
        self.task = task_named(task)
        self.background = background  # frames: the label id of frames no segment covers
        # The recipe's rule of which clips can train (`Recipe.trainable`, its model bound), called as
        # trainable(examples, bad=...): applied again to each clip as decoded. None: every decoded clip can.
        self.trainable = trainable
        self.bad = BadExamples(on_bad)  # reports clips too short once decoded; the batch's "bad" carries the counts

    def __call__(self, items: list[dict[str, Any] | None]) -> dict[str, Any]:
        bad = ["unreadable audio"] * sum(item is None for item in items)
        items = self._long_enough([item for item in items if item is not None], bad)
        try:
            inputs = self._features(items)
        except ValueError:  # one clip's features are non-finite (samples far outside [-1, 1]): find it, drop it
            kept = []
            for item in items:
                try:
                    self._features([item])
                except ValueError as error:
                    logger.warning("skipped %s: %s", item["source"], error)
                    bad.append("unusable features")
                else:
                    kept.append(item)
            items = kept
            inputs = self._features(items)
        batch = {
            "input_features": inputs["input_features"],
            "attention_mask": inputs["attention_mask"],
            "seconds": float(sum(item["seconds"] for item in items)),
            "texts": [item["text"] for item in items],
            "clips": [item["clip"] for item in items],  # the resolved audio path: what trial files name
            "indices": [item["index"] for item in items],
            "bad": bad,
        }
        seconds_per_frame = self.feature_extractor.stride * HOP_LENGTH / SAMPLING_RATE
        labels = self.task.batches.labels([item["target"] for item in items], inputs["attention_mask"],
                                          seconds_per_frame, self.background)
        if labels is not None:
            batch["labels"] = labels
        return batch

    def _long_enough(self, items: list[dict[str, Any]], bad: list[str]) -> list[dict[str, Any]]:
        """The items the recipe's rule keeps on their decoded length; the kinds of the others go to `bad`.

        The rule ran before the run on the lengths headers announce; a file cut short decodes to less (a WAV whose
        data chunk runs past the file's end), and only its samples tell."""
        if self.trainable is None:
            return items
        kept = []
        for item in items:
            before = Counter(self.bad.counts)
            decoded = Example(item["audio"], item["text"], item["seconds"], item["source"])
            if self.trainable([decoded], bad=self.bad):
                kept.append(item)
            else:
                bad.extend((self.bad.counts - before).elements())  # the kind the rule reported it as
        return kept

    def _features(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not items:  # all of this rank's clips were bad: an empty batch the trainer knows to pass over
            dim = self.feature_extractor.num_mel_bins * self.feature_extractor.stride
            return {"input_features": torch.zeros(0, 1, dim), "attention_mask": torch.zeros(0, 1, dtype=torch.int32)}
        return self.feature_extractor(
            [item["audio"] for item in items], sampling_rate=SAMPLING_RATE, return_tensors="pt", padding=True,
            return_attention_mask=True,
        )

