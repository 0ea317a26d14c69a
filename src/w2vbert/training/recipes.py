"""Training runs: `finetune()` / `w2vbert finetune` and `pretrain()` / `w2vbert pretrain`, from manifests (or a
folder of audio) to a trained checkpoint.

In order: `finetune()` and `pretrain()`, the two faces of `train_recipe()`, which reads the examples of the run's
`Task` (training/tasks.py), has the task's recipe make the model (training/preparation.py), trains it
(training/trainer.py) and writes the run summary. Their command lines are cli/train.py's.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from w2vbert.audio.augment import Augmented
from w2vbert.audio.decode import load_audio
from w2vbert.audio.features import SeamlessM4TFeatureExtractor, default_feature_extractor, feature_extractor_for
from w2vbert.model.loader import is_fairseq2_file
from w2vbert.training.checkpoints import find_checkpoint, seed_everything
from w2vbert.training.config import TrainingConfig
from w2vbert.training.datasets import Collator, SpeechDataset, load_examples, load_unlabeled
from w2vbert.training.examples import BadExamples, DataConfig, Example, describe, limit_length
from w2vbert.training.preparation import PretrainingRecipe, Recipe
from w2vbert.training.tasks import task_named
from w2vbert.training.trainer import Trainer

logger = logging.getLogger("w2vbert")

STATISTICS_CLIPS = 400  # training clips a streaming model's fixed feature statistics are measured on


def finetune(
    model: str,
    data: DataConfig,
    config: TrainingConfig,
    resume: bool = False,
    model_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune the checkpoint `model` (hub id or directory) on manifests; returns the run summary.

    The recipe of the task (`TASKS[config.task]`: "ctc", "classify", "frames" or "xvector") builds the targets
    and the model. Resuming takes weights, vocabulary and labels from `output_dir/last`. Examples that cannot
    train are reported with file and line and counted (or stop the run, with `data.on_bad_example="fail"`):
    missing or unreadable audio, empty targets, unknown labels, clips longer than the batch cap
    (`data.long_clips`), and clips that fail to decode while training (counted under "bad_examples_in_training").
    With `config.lora`, LoRA adapters train on the frozen encoder and the head trains whole; the checkpoints are
    merged plain models (training/lora.py).
    """
    recipe = task_named(config.task).recipe
    if isinstance(recipe, PretrainingRecipe):
        raise ValueError(f"task {config.task!r} is pre-training: call pretrain(...) (w2vbert pretrain)")
    return train_recipe(recipe, model, data, config, resume, model_overrides)


def pretrain(
    model: str,
    data: DataConfig,
    config: TrainingConfig,
    resume: bool = False,
    model_overrides: dict[str, Any] | None = None,
    from_scratch: bool = False,
) -> dict[str, Any]:
    """Continue the self-supervised w2v-BERT pre-training of `model` (a hub id, a directory, or Meta's
    conformer_shaw.pt) on unlabeled audio: `data.train_manifest` is a manifest (its audio column) or a folder of
    audio files. Any checkpoint of the family will do: pre-training runs on its encoder, and a head or an adapter
    is left out (said in one line). `from_scratch` takes only `model`'s config. The run directory and its
    guarantees are fine-tuning's (training/trainer.py); `output_dir/last` loads as an encoder into any head class
    (the pre-training tensors reported as unused), here and in transformers. Returns the run summary."""
    if config.task != "pretrain":
        config = dataclasses.replace(config, task="pretrain")
    return train_recipe(PretrainingRecipe(from_scratch), model, data, config, resume, model_overrides)


def checkpoint_feature_extractor(source: str) -> SeamlessM4TFeatureExtractor:
    """The front end of checkpoint `source`: its own, or W2v-BERT 2.0's for Meta's .pt file, which holds weights
    alone (the front end `w2vbert convert` writes beside them)."""
    return default_feature_extractor() if is_fairseq2_file(source) else feature_extractor_for(source)


def streaming_front_end(
    extractor: SeamlessM4TFeatureExtractor, model_config: Any, train: list[Example]
) -> SeamlessM4TFeatureExtractor:
    """The front end a chunked model trains with: fixed feature statistics, measured over (at most
    STATISTICS_CLIPS of) the training clips when the checkpoint's extractor has none. Per-clip statistics would
    need the whole clip, which a stream never has; training and streaming use the same ones."""
    if model_config.streaming_chunk_size is None or extractor.mel_mean is not None:
        return extractor
    every = max(1, len(train) // STATISTICS_CLIPS)
    clips = [e.audio if isinstance(e.audio, np.ndarray) else load_audio(e.audio) for e in train[::every]]
    logger.info("streaming: fixed feature statistics from %d training clips", len(clips))
    return extractor.with_fixed_statistics(clips)


def train_recipe(
    recipe: Recipe,
    model: str,
    data: DataConfig,
    config: TrainingConfig,
    resume: bool,
    model_overrides: dict[str, Any] | None,
) -> dict[str, Any]:
    """The run both `finetune` and `pretrain` are: examples, the recipe's model, the trainer, the summary."""
    task = task_named(config.task)
    if data.long_clips == "crop" and task.transcripts:
        raise ValueError("long_clips='crop' would cut audio away from under its transcript: "
                         f"use 'skip' for {task.name}")
    output_dir = Path(config.output_dir)
    resume_from = find_checkpoint(output_dir)
    if resume_from is not None and not resume:
        raise ValueError(f"{output_dir} already holds a checkpoint: pass --resume to continue it, or another folder")
    source = str(resume_from) if resume_from is not None else model
    bad = BadExamples(data.on_bad_example)

    def examples(manifest: str, labels: list[str] | None = None) -> list[Example]:
        if task.target_column is None:  # audio alone: a manifest's audio column, or a folder of audio
            found = load_unlabeled(manifest, bad, audio_column=data.audio_column)
        else:
            found = load_examples(manifest, config.task, bad, data.normalizer, labels=labels,
                                  audio_column=data.audio_column, target_column_name=data.target_column)
        return limit_length(found, config.max_batch_seconds, data.long_clips, bad)

    train = examples(data.train_manifest)
    feature_extractor = checkpoint_feature_extractor(source)
    seed_everything(config.seed)  # what the checkpoint lacks (a new head, a fresh quantizer) starts the same each run
    prepared = recipe.prepare(source, train, data, resume_from, dict(model_overrides or {}))
    train = recipe.trainable(train, prepared, bad)
    feature_extractor = streaming_front_end(feature_extractor, prepared.model.base_model.config, train)
    evaluation = None
    if data.eval_manifest is not None:
        eval_examples = recipe.trainable(examples(data.eval_manifest, recipe.eval_labels(prepared)), prepared, bad)
        evaluation = SpeechDataset(eval_examples, prepared.encode, data.cache_audio, data.on_bad_example)
        logger.info("evaluation data: %s", describe(eval_examples))
    if not train:
        raise ValueError(f"{data.train_manifest}: no usable training examples ({dict(bad.counts)} left out)")
    logger.info("training data: %s; left out: %s", describe(train), dict(bad.counts) or "none")
    train_data = SpeechDataset(train, prepared.encode, data.cache_audio, data.on_bad_example)
    collator = Collator(feature_extractor, config.task, prepared.background,
                        functools.partial(recipe.trainable, prepared=prepared), data.on_bad_example)
    trainer = Trainer(
        prepared.model, config, train_data if data.augmentation is None else Augmented(train_data, data.augmentation),
        collator, evaluation, tokenizer=prepared.tokenizer, feature_extractor=feature_extractor,
    )
    summary = trainer.train(resume=resume)
    summary |= {"train_examples": len(train), "bad_examples": dict(bad.counts), "bad_examples_total": bad.total,
                "output_dir": str(output_dir)}
    if trainer.env.main:
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
