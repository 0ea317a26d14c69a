"""The training tasks, one `Task` each in one table (`TASKS`): "ctc", "classify", "frames", "xvector" and
"pretrain". What differs between them is a field of their `Task`, and the code that differs asks the task it
looked up once (`task_named`), never its name: the examples reader and the collator (training/datasets.py), the
recipe run (training/recipes.py), the trainer (training/trainer.py) and the command line (cli/train.py).

In order: the manifest columns of targets, the `Batches` of each kind of target (how the collator labels a
batch, what the model takes from it, what its loss averages over, and a stand-in clip for a rank whose share of a
batch is empty), `Task`, the table, then `unknown_task` and `task_named`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.pretraining import example_seeds
from w2vbert.text.encoding import LABEL_PAD, pad_labels
from w2vbert.text.segments import frame_labels
from w2vbert.training.examples import TextNormalizer
from w2vbert.training.preparation import (
    ClassificationRecipe,
    CTCRecipe,
    FramesRecipe,
    PretrainingRecipe,
    Recipe,
    XVectorRecipe,
)
from w2vbert.training.scorers import (
    AccuracyScorer,
    CTCScorer,
    FrameScorer,
    PretrainingScorer,
    Scorer,
    VerificationScorer,
)

TEXT_COLUMN = "text"  # the transcript, for task "ctc"
LABEL_COLUMN = "label"  # the class name, for tasks "classify" and "xvector" (the speaker)
SEGMENTS_COLUMN = "segments"  # a file of labelled time segments (`start end label` lines, or RTTM), task "frames"
STAND_IN_FRAMES = 64  # the length of the zero clip a rank with no clip of a batch runs, to keep collectives in step


# ------------------------------------------------------------------------------------------------ batches
class Batches:
    """How the batches of a kind of target are labelled by the collator, fed to the model and counted: one clip,
    one example (the loss averages over clips), and the collated labels are the model's targets."""

    def labels(
        self, targets: list[Any], mask: torch.Tensor, seconds_per_frame: float, background: int
    ) -> torch.Tensor | None:
        """The batch's "labels" from its items' encoded targets (`mask`: (B, T) valid 20 ms frames); None: none."""
        raise NotImplementedError

    def inputs(
        self, batch: dict[str, Any], model: Wav2Vec2BertPreTrainedModel, seed: int, epoch: int
    ) -> dict[str, torch.Tensor]:
        """What `model` is called with on `batch` (a run seeded `seed`, in `epoch`)."""
        return {name: batch[name] for name in ("input_features", "attention_mask", "labels")}

    def count(self, inputs: dict[str, torch.Tensor]) -> float:
        """What the model's loss on `inputs` averages over."""
        return float(inputs["input_features"].shape[0])

    def stand_in(self, batch: dict[str, Any], model: Wav2Vec2BertPreTrainedModel) -> dict[str, Any]:
        """One clip of zeros for a rank whose share of a batch is empty (its clips were bad)."""
        return {"input_features": torch.zeros(1, STAND_IN_FRAMES, model.config.feature_projection_input_dim),
                "attention_mask": torch.ones(1, STAND_IN_FRAMES, dtype=torch.long), "indices": [0]}


class TranscriptBatches(Batches):
    """ctc: each clip's label ids, padded with LABEL_PAD into (B, L)."""

    def labels(
        self, targets: list[Any], mask: torch.Tensor, seconds_per_frame: float, background: int
    ) -> torch.Tensor | None:
        return pad_labels(targets)

    def stand_in(self, batch: dict[str, Any], model: Wav2Vec2BertPreTrainedModel) -> dict[str, Any]:
        return super().stand_in(batch, model) | {"labels": torch.zeros((1, 1), dtype=torch.long)}


class ClipLabelBatches(Batches):
    """classify and xvector: one class id per clip, (B,). Held-out speakers of an x-vector evaluation have no class
    of the training set (label -100): such a batch runs without labels, for its embeddings."""

    def labels(
        self, targets: list[Any], mask: torch.Tensor, seconds_per_frame: float, background: int
    ) -> torch.Tensor | None:
        return torch.tensor(targets, dtype=torch.long)

    def inputs(
        self, batch: dict[str, Any], model: Wav2Vec2BertPreTrainedModel, seed: int, epoch: int
    ) -> dict[str, torch.Tensor]:
        if bool((batch["labels"] == LABEL_PAD).any()):
            return {name: batch[name] for name in ("input_features", "attention_mask")}
        return super().inputs(batch, model, seed, epoch)

    def stand_in(self, batch: dict[str, Any], model: Wav2Vec2BertPreTrainedModel) -> dict[str, Any]:
        return super().stand_in(batch, model) | {"labels": torch.zeros((1,), dtype=torch.long)}


class FrameLabelBatches(Batches):
    """frames: a label per 20 ms frame, (B, T); the loss averages over the valid frames of the global batch."""

    def labels(
        self, targets: list[Any], mask: torch.Tensor, seconds_per_frame: float, background: int
    ) -> torch.Tensor | None:
        """One label id per valid frame (segments.frame_labels, `background` outside every segment), LABEL_PAD
        past each clip's end."""
        labels = torch.full(mask.shape, LABEL_PAD, dtype=torch.long)  # (B, T)
        for row, (segments, length) in enumerate(zip(targets, mask.sum(-1).tolist(), strict=True)):
            labels[row, :length] = frame_labels(segments, length, seconds_per_frame, background)
        return labels

    def count(self, inputs: dict[str, torch.Tensor]) -> float:
        return float((inputs["labels"] != LABEL_PAD).sum())

    def stand_in(self, batch: dict[str, Any], model: Wav2Vec2BertPreTrainedModel) -> dict[str, Any]:
        return super().stand_in(batch, model) | {"labels": torch.zeros(1, STAND_IN_FRAMES, dtype=torch.long)}


class PretrainingBatches(Batches):
    """pretrain: no labels; masked spans, distractors and Gumbel noise drawn per clip from (run seed, epoch, clip
    index), so that a resumed run and several processes draw what one uninterrupted process does; a loss averages
    over the masked frames."""

    def labels(
        self, targets: list[Any], mask: torch.Tensor, seconds_per_frame: float, background: int
    ) -> torch.Tensor | None:
        return None

    def inputs(
        self, batch: dict[str, Any], model: Wav2Vec2BertPreTrainedModel, seed: int, epoch: int
    ) -> dict[str, torch.Tensor]:
        seeds = example_seeds(seed, epoch, list(batch["indices"]))
        mask, negatives = model.sample_masks(batch["attention_mask"], seeds)
        return {"input_features": batch["input_features"], "attention_mask": batch["attention_mask"],
                "mask_time_indices": mask, "sampled_negative_indices": negatives, "gumbel_seeds": seeds}

    def count(self, inputs: dict[str, torch.Tensor]) -> float:
        return float(inputs["mask_time_indices"].sum())


# --------------------------------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class Task:
    """Everything a training task is made of, from the manifest column to the checkpoint kept as best."""

    name: str
    target_column: str | None  # the manifest column of the targets; None: audio alone (pre-training)
    # Targets are transcripts: they go through the TextNormalizer (other targets are only stripped), an empty one is
    # an "empty transcript", and a clip is never cropped from under one.
    transcripts: bool
    segments: bool  # a target names a file of labelled time segments, read and checked beside its clip
    recipe: Recipe  # the model with its head, how targets are encoded, which examples it can train on
    batches: Batches  # how batches are labelled, fed to the model and counted
    scorer: type[Scorer]  # what an evaluation measures, and which checkpoint is best

    @property
    def empty_target(self) -> str:
        """What an example with an empty target is reported as."""
        return "empty transcript" if self.transcripts else "empty label"

    def target(self, raw: str, normalizer: TextNormalizer) -> str:
        """A manifest's target as it trains: a transcript normalised, a label or a file name stripped."""
        return normalizer(raw) if self.transcripts else raw.strip()


TASKS: dict[str, Task] = {task.name: task for task in (
    Task("ctc", TEXT_COLUMN, transcripts=True, segments=False, recipe=CTCRecipe(), batches=TranscriptBatches(),
         scorer=CTCScorer),
    Task("classify", LABEL_COLUMN, transcripts=False, segments=False, recipe=ClassificationRecipe(),
         batches=ClipLabelBatches(), scorer=AccuracyScorer),
    Task("frames", SEGMENTS_COLUMN, transcripts=False, segments=True, recipe=FramesRecipe(),
         batches=FrameLabelBatches(), scorer=FrameScorer),
    Task("xvector", LABEL_COLUMN, transcripts=False, segments=False, recipe=XVectorRecipe(),
         batches=ClipLabelBatches(), scorer=VerificationScorer),
    Task("pretrain", None, transcripts=False, segments=False, recipe=PretrainingRecipe(),
         batches=PretrainingBatches(), scorer=PretrainingScorer),
)}


def unknown_task(name: str) -> str:
    """The message that refuses a task name not in `TASKS`."""
    return f"task must be one of {tuple(TASKS)}, got {name!r}"


def task_named(name: str) -> Task:
    """The `Task` called `name`; a ValueError naming the tasks there are for any other name."""
    if name not in TASKS:
        raise ValueError(unknown_task(name))
    return TASKS[name]
