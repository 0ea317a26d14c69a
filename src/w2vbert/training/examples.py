"""Training examples and what is required of them: `DataConfig`, the text normaliser, bad-example reports, and
the checks that leave out clips that cannot train.

In order: `TextNormalizer`, `DataConfig` (where examples come from, how targets are cleaned, what happens to bad
ones: the accepted policies, `ON_BAD` and `LONG_CLIPS`, are training/names.py's), `Example`, `BadExamples`
(reported with file and line, then skipped and counted per kind, or refused with `on_bad="fail"`), then the length
checks: `output_frames_for_seconds`, `ctc_frames_needed`, `drop_too_short` (CTC), `drop_unmaskable` (pre-training),
`limit_length` (the batch cap), and `describe`. Nothing here depends on the task: reading a task's examples is
training/datasets.py's.
"""

from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from w2vbert.audio.augment import Augmentation
from w2vbert.audio.decode import SAMPLING_RATE
from w2vbert.audio.features import num_frames
from w2vbert.text.segments import Segment
from w2vbert.training.names import LONG_CLIPS, ON_BAD

logger = logging.getLogger("w2vbert")

AUDIO_COLUMN = "audio"
MAX_BAD_WARNINGS = 20  # warnings printed per file; the summary still counts every bad example


# ------------------------------------------------------------------------------------------ text normalisation
@dataclass(frozen=True)
class TextNormalizer:
    """What transcripts go through before the vocabulary is built and before scoring (train and eval alike)."""

    lowercase: bool = True  # "Hello" and "hello" are one word to a character CTC model
    remove_punctuation: bool = True  # Unicode punctuation (category P*) except the apostrophe of "don't"
    allowed_characters: str | None = None  # keep only these (plus space); None keeps everything
    collapse_whitespace: bool = True  # runs of spaces/tabs/newlines -> one space, trimmed

    def __call__(self, text: str) -> str:
        text = unicodedata.normalize("NFC", text)
        if self.lowercase:
            text = text.lower()
        if self.remove_punctuation:
            text = "".join(" " if _is_punctuation(c) else c for c in text)
        if self.allowed_characters is not None:
            allowed = set(self.allowed_characters) | {" "}
            text = "".join(c for c in text if c in allowed or c.isspace())
        if self.collapse_whitespace:
            text = " ".join(text.split())
        return text


def _is_punctuation(char: str) -> bool:
    return char != "'" and unicodedata.category(char).startswith("P")


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from, how targets are cleaned, and what happens to examples that cannot train."""

    train_manifest: str
    eval_manifest: str | None = None
    audio_column: str = AUDIO_COLUMN
    target_column: str | None = None  # default "text" (ctc), "label" (classify, xvector), "segments" (frames)
    normalizer: TextNormalizer = TextNormalizer()
    on_bad_example: str = "skip"  # "skip" (report, count and leave out) or "fail" (stop at the first)
    vocab: str | None = None  # an existing vocab.json; default: built from the training transcripts
    cache_audio: bool = False  # keep decoded clips in memory after their first read
    long_clips: str = "skip"  # clips longer than max_batch_seconds: "skip" them, or "crop" them (not ctc)
    background_label: str = "background"  # frames: the label of frames outside every segment
    augmentation: Augmentation | None = None  # offset, gain, noise floor and dither on each read of a training clip

    def __post_init__(self) -> None:
        if self.on_bad_example not in ON_BAD:
            raise ValueError(f"on_bad_example must be one of {ON_BAD}, got {self.on_bad_example!r}")
        if self.long_clips not in LONG_CLIPS:
            raise ValueError(f"long_clips must be one of {LONG_CLIPS}, got {self.long_clips!r}")


# ---------------------------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class Example:
    """One training clip: where its audio is, its normalised target, its length, and where it was declared."""

    audio: str | np.ndarray  # a file path, or 16 kHz mono samples (from a `datasets` object)
    target: str  # normalised transcript (ctc), class or speaker name (classify, xvector), segments file (frames)
    seconds: float  # what is trained on: the clip's length, or the crop's
    source: str  # "manifest.tsv:12", for error messages
    crop: bool = False  # train on the first `seconds` of a longer clip
    segments: tuple[Segment, ...] | None = None  # frames: the labelled segments read from `target`


@dataclass
class BadExamples:
    """Examples left out, by kind; `on_bad="fail"` turns the first one into a ValueError instead."""

    on_bad: str = "skip"
    counts: Counter = field(default_factory=Counter)
    _warned: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.on_bad not in ON_BAD:
            raise ValueError(f"on_bad must be one of {ON_BAD}, got {self.on_bad!r}")

    def report(self, kind: str, source: str, message: str) -> None:
        if self.on_bad == "fail":
            raise ValueError(f"{source}: {message} (pass --on-bad-example skip to leave such examples out)")
        self.counts[kind] += 1
        file = source.rsplit(":", 1)[0]
        self._warned[file] += 1
        if self._warned[file] <= MAX_BAD_WARNINGS:
            logger.warning("skipped %s: %s", source, message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())



def drop_unmaskable(examples: list[Example], min_steps: int, bad: BadExamples) -> list[Example]:
    """Report clips with no more 20 ms steps than a masked span (`min_steps`): pre-training cannot mask them."""
    kept = []
    for example in examples:
        steps = output_frames_for_seconds(example.seconds, lambda n: n)
        if steps <= min_steps:
            bad.report("too short to mask", example.source,
                       f"{example.seconds:.2f} s gives {steps} steps of 20 ms; masking needs more than {min_steps}")
            continue
        kept.append(example)
    return kept


def output_frames_for_seconds(seconds: float, model_lengths: Callable[[int], int]) -> int:
    """Model output frames of a clip: 25 ms / 10 ms fbank frames, stacked in pairs, then `model_lengths`.

    `model_lengths` is `model.get_feat_extract_output_lengths` (the adapter's striding).
    """
    steps = int(num_frames(int(round(seconds * SAMPLING_RATE)))) // 2  # the mask marks pairs of real frames
    return int(model_lengths(steps)) if steps > 0 else 0


def ctc_frames_needed(ids: Sequence[int]) -> int:
    """Frames CTC needs for a label sequence: one per label, plus a blank between each repeated pair."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:], strict=False) if a == b)


def drop_too_short(
    examples: list[Example], encode: Callable[[str], list[int]], model_lengths: Callable[[int], int], bad: BadExamples
) -> list[Example]:
    """Report clips with fewer output frames than CTC needs for their transcript (they would train on inf)."""
    kept = []
    for example in examples:
        frames = output_frames_for_seconds(example.seconds, model_lengths)
        needed = ctc_frames_needed(encode(example.target))
        if frames < needed:
            bad.report(
                "too short for transcript", example.source,
                f"{example.seconds:.2f} s gives {frames} output frames, CTC needs {needed} for {example.target!r}",
            )
            continue
        kept.append(example)
    return kept


def limit_length(examples: list[Example], max_seconds: float, policy: str, bad: BadExamples) -> list[Example]:
    """Clips longer than `max_seconds` (the batch cap): skipped and reported, or (`policy="crop"`) cut to it.

    A batch holds at least one clip, so one clip above the cap would make a batch of its own far above it: one
    5-minute clip under an 8 s cap took a 2.5M-parameter run past 10 GB.
    """
    if policy not in LONG_CLIPS:
        raise ValueError(f"long-clip policy must be one of {LONG_CLIPS}, got {policy!r}")
    kept = []
    for example in examples:
        if example.seconds <= max_seconds:
            kept.append(example)
        elif policy == "crop":
            kept.append(Example(example.audio, example.target, max_seconds, example.source, crop=True))
        else:
            bad.report("longer than the batch cap", example.source,
                       f"{example.seconds:.1f} s is longer than max_batch_seconds={max_seconds:g} (a batch of its own "
                       "would exceed the cap): raise the cap, or crop such clips")
    return kept


def describe(examples: Sequence[Example]) -> str:
    hours = sum(e.seconds for e in examples) / 3600
    return f"{len(examples)} clips, {hours:.2f} h" if hours >= 0.1 else f"{len(examples)} clips, {hours * 60:.1f} min"

