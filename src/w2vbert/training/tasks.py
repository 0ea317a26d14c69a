"""How the trainer feeds each task's batches to its model: the inputs, what the loss averages over, and a stand-in
clip for a rank whose share of a batch is empty."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from w2vbert.model.pretraining import example_seeds
from w2vbert.text.tokenizer import LABEL_PAD
from w2vbert.training.scorers import (
    AccuracyScorer,
    CTCScorer,
    FrameScorer,
    PretrainingScorer,
    Scorer,
    VerificationScorer,
)

if TYPE_CHECKING:
    from w2vbert.training.trainer import Trainer


class SupervisedTask:
    """ctc, classify and xvector: the collated labels are the model's targets, and a loss averages over the clips.
    Held-out speakers of an x-vector evaluation have no class of the training set (label -100): such a batch runs
    without labels, for its embeddings."""

    def __init__(self, scorer: type[Scorer]) -> None:
        self.scorer = scorer

    def inputs(self, trainer: Trainer, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        if batch["labels"].ndim == 1 and bool((batch["labels"] == LABEL_PAD).any()):
            return {name: batch[name] for name in ("input_features", "attention_mask")}
        return {name: batch[name] for name in ("input_features", "attention_mask", "labels")}

    def count(self, inputs: dict[str, torch.Tensor]) -> float:
        return float(inputs["input_features"].shape[0])

    def stand_in(self, trainer: Trainer, batch: dict[str, Any]) -> dict[str, Any]:
        """One clip of zeros for a rank whose share of a batch is empty (its clips were bad)."""
        labels = batch["labels"]
        return {"input_features": torch.zeros(1, 64, trainer.model.config.feature_projection_input_dim),
                "attention_mask": torch.ones(1, 64, dtype=torch.long),
                "labels": torch.zeros((1, 1) if labels.ndim == 2 else (1,), dtype=torch.long), "indices": [0]}


class FramesTask(SupervisedTask):
    """frames: a label per 20 ms frame; the loss averages over the valid frames of the global batch."""

    def __init__(self) -> None:
        super().__init__(FrameScorer)

    def count(self, inputs: dict[str, torch.Tensor]) -> float:
        return float((inputs["labels"] != LABEL_PAD).sum())

    def stand_in(self, trainer: Trainer, batch: dict[str, Any]) -> dict[str, Any]:
        stand_in = super().stand_in(trainer, batch)
        return stand_in | {"labels": torch.zeros(1, 64, dtype=torch.long)}


class PretrainingTask:
    """pretrain: masked spans, distractors and Gumbel noise drawn per clip from (run seed, epoch, clip index), so
    that a resumed run and several processes draw what one uninterrupted process does; a loss averages over the
    masked frames."""

    scorer = PretrainingScorer

    def inputs(self, trainer: Trainer, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        seeds = example_seeds(trainer.config.seed, epoch, list(batch["indices"]))
        mask, negatives = trainer.model.sample_masks(batch["attention_mask"], seeds)
        return {"input_features": batch["input_features"], "attention_mask": batch["attention_mask"],
                "mask_time_indices": mask, "sampled_negative_indices": negatives, "gumbel_seeds": seeds}

    def count(self, inputs: dict[str, torch.Tensor]) -> float:
        return float(inputs["mask_time_indices"].sum())

    def stand_in(self, trainer: Trainer, batch: dict[str, Any]) -> dict[str, Any]:
        return {"input_features": torch.zeros(1, 64, trainer.model.config.feature_projection_input_dim),
                "attention_mask": torch.ones(1, 64, dtype=torch.long), "indices": [0]}


TRAINING_TASKS: dict[str, SupervisedTask | PretrainingTask] = {
    "ctc": SupervisedTask(CTCScorer), "classify": SupervisedTask(AccuracyScorer), "frames": FramesTask(),
    "xvector": SupervisedTask(VerificationScorer), "pretrain": PretrainingTask(),
}
