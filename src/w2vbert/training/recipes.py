"""Training recipes: `finetune()` / `w2vbert finetune` and `pretrain()` / `w2vbert pretrain`, from manifests (or
a folder of audio) to a trained checkpoint.

In order: `DataConfig` (where examples come from, how targets are cleaned, what happens to bad ones), the
recipe of each task (`CTCRecipe`: transcripts -> character vocabulary -> `Wav2Vec2BertForCTC`;
`ClassificationRecipe`: labels -> `Wav2Vec2BertForSequenceClassification`, and its two variants `FramesRecipe`:
labelled segments -> `Wav2Vec2BertForAudioFrameClassification`, `XVectorRecipe`: speakers ->
`Wav2Vec2BertForXVector`; `PretrainingRecipe`: audio alone -> `Wav2Vec2BertForPreTraining`), `train_recipe()`
and its two faces `finetune()` and `pretrain()`, and the command lines, whose defaults are the config
dataclasses' own. The training loop itself is training/trainer.py's.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2vbert.audio.augment import Augmented
from w2vbert.audio.features import feature_extractor_for
from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.heads import (
    Wav2Vec2BertForAudioFrameClassification,
    Wav2Vec2BertForCTC,
    Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertForXVector,
)
from w2vbert.model.pretraining import Wav2Vec2BertForPreTraining
from w2vbert.text.tokenizer import LABEL_PAD, Wav2Vec2CTCTokenizer, build_vocab
from w2vbert.training.checkpoints import find_checkpoint, seed_everything
from w2vbert.training.config import TrainingConfig
from w2vbert.training.datasets import Collator, SpeechDataset, load_examples, load_unlabeled
from w2vbert.training.examples import (
    BadExamples,
    DataConfig,
    Example,
    describe,
    drop_too_short,
    drop_unmaskable,
    limit_length,
)
from w2vbert.training.trainer import Trainer

logger = logging.getLogger("w2vbert")


@dataclass
class Prepared:
    """What a recipe gives the trainer: the model, how a target becomes what its loss takes, and the files."""

    model: Wav2Vec2BertPreTrainedModel
    encode: Callable[[str], Any]
    tokenizer: Wav2Vec2CTCTokenizer | None = None
    labels: list[str] | None = None  # classify, frames, xvector: the label set, in id order
    background: int = 0  # frames: the id of frames no segment covers


def ctc_tokenizer(examples: list[Example], vocab_file: str | None = None) -> Wav2Vec2CTCTokenizer:
    """The CTC tokenizer of a vocab.json, or of the vocabulary of the (normalised) training transcripts."""
    if vocab_file is not None:
        return Wav2Vec2CTCTokenizer(vocab_file=vocab_file, unk_token="[UNK]", pad_token="[PAD]")
    if not examples:
        raise ValueError("no usable training examples left to build a vocabulary from")
    vocab = build_vocab([e.target for e in examples], lowercase=False)
    # No <s> / </s>: CTC does not use them, and transformers would append them to the vocabulary on loading.
    return Wav2Vec2CTCTokenizer(vocab=vocab, unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|",
                                bos_token=None, eos_token=None)


class CTCRecipe:
    """Speech recognition: the vocabulary (built from the training transcripts unless `data.vocab`) sets
    `vocab_size` and the blank (`pad_token_id`); the adapter, `ctc_zero_infinity` and the per-target-length "mean"
    CTC loss are on unless the overrides say otherwise. A clip too short for its transcript is left out."""

    task = "ctc"

    def prepare(
        self, source: str, train: list[Example], data: DataConfig, resume_from: Path | None, overrides: dict[str, Any]
    ) -> Prepared:
        if resume_from is not None:
            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(resume_from)
        else:
            tokenizer = ctc_tokenizer(train, data.vocab)
        overrides = {"add_adapter": True, "ctc_zero_infinity": True, "ctc_loss_reduction": "mean", **overrides,
                     "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
        model = Wav2Vec2BertForCTC.from_pretrained(source, ignore_mismatched_sizes=True, **overrides)
        return Prepared(model, tokenizer.encode, tokenizer=tokenizer)

    def trainable(self, examples: list[Example], prepared: Prepared, bad: BadExamples) -> list[Example]:
        return drop_too_short(examples, prepared.encode, prepared.model.get_feat_extract_output_lengths, bad)


class ClassificationRecipe:
    """One label per clip: the training labels (sorted) set `num_labels`, `id2label` and `label2id`."""

    task = "classify"
    model_class: type[Wav2Vec2BertPreTrainedModel] = Wav2Vec2BertForSequenceClassification

    def labels(self, train: list[Example], data: DataConfig) -> list[str]:
        return sorted({e.target for e in train})

    def prepare(
        self, source: str, train: list[Example], data: DataConfig, resume_from: Path | None, overrides: dict[str, Any]
    ) -> Prepared:
        if resume_from is not None:
            labels = list(Wav2Vec2BertConfig.from_pretrained(resume_from).label2id)
        else:
            labels = self.labels(train, data)
        label2id = {label: i for i, label in enumerate(labels)}
        overrides = {**overrides, "num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": label2id}
        model = self.model_class.from_pretrained(source, ignore_mismatched_sizes=True, **overrides)
        return Prepared(model, self.encoder(label2id), labels=labels,
                        background=label2id.get(data.background_label, 0))

    def encoder(self, label2id: dict[str, int]) -> Callable[[str], int]:
        return label2id.__getitem__

    def eval_labels(self, prepared: Prepared) -> list[str] | None:
        """The labels an evaluation example may have (others are reported as unknown); None: any."""
        return prepared.labels

    def trainable(self, examples: list[Example], prepared: Prepared, bad: BadExamples) -> list[Example]:
        return examples


class FramesRecipe(ClassificationRecipe):
    """A label per 20 ms frame, from each clip's segments file (text/segments.py: `start end label` lines or RTTM);
    frames outside every segment take `data.background_label`, which is one of the labels."""

    task = "frames"
    model_class = Wav2Vec2BertForAudioFrameClassification

    def labels(self, train: list[Example], data: DataConfig) -> list[str]:
        return sorted({s.label for e in train for s in e.segments or ()} | {data.background_label})


class XVectorRecipe(ClassificationRecipe):
    """Speaker embeddings: the training speakers (the label column) are the AM-softmax classes; the evaluation
    clips are other speakers, scored on trials (data/verification.py), so their labels are not checked against them."""

    task = "xvector"
    model_class = Wav2Vec2BertForXVector

    def encoder(self, label2id: dict[str, int]) -> Callable[[str], int]:
        return lambda speaker: label2id.get(speaker, LABEL_PAD)  # a held-out speaker has no training class

    def eval_labels(self, prepared: Prepared) -> list[str] | None:
        return None


class PretrainingRecipe:
    """Continued pre-training (or from scratch): audio alone; the quantizer and projections come from Meta's
    conformer_shaw.pt, or start fresh (and are reported) from a Hugging Face checkpoint, which has none. A clip
    with no more steps than a masked span is left out."""

    task = "pretrain"

    def __init__(self, from_scratch: bool = False) -> None:
        self.from_scratch = from_scratch

    def examples(self, source: str, data: DataConfig, bad: BadExamples) -> list[Example]:
        return load_unlabeled(source, bad, audio_column=data.audio_column)

    def prepare(
        self, source: str, train: list[Example], data: DataConfig, resume_from: Path | None, overrides: dict[str, Any]
    ) -> Prepared:
        if self.from_scratch and resume_from is None:
            config = Wav2Vec2BertConfig.from_pretrained(source, **overrides)
            config.architectures = None
            logger.info("pre-training from scratch: a %d-layer model of %s's config", config.num_hidden_layers, source)
            return Prepared(Wav2Vec2BertForPreTraining(config), _no_target)
        return Prepared(Wav2Vec2BertForPreTraining.from_pretrained(source, **overrides), _no_target)

    def trainable(self, examples: list[Example], prepared: Prepared, bad: BadExamples) -> list[Example]:
        return drop_unmaskable(examples, prepared.model.config.mask_time_length, bad)


def _no_target(target: str) -> None:
    return None


RECIPES: dict[str, CTCRecipe | ClassificationRecipe | PretrainingRecipe] = {
    "ctc": CTCRecipe(), "classify": ClassificationRecipe(), "frames": FramesRecipe(), "xvector": XVectorRecipe(),
    "pretrain": PretrainingRecipe(),
}


def finetune(
    model: str,
    data: DataConfig,
    config: TrainingConfig,
    resume: bool = False,
    model_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune the checkpoint `model` (hub id or directory) on manifests; returns the run summary.

    The task's recipe (`RECIPES[config.task]`: "ctc", "classify", "frames" or "xvector") builds the targets and
    the model. Resuming
    takes weights, vocabulary and labels from `output_dir/last`. Examples that cannot train are reported with file
    and line and counted (or stop the run, with `data.on_bad_example="fail"`): missing or unreadable audio, empty
    targets, unknown labels, clips longer than the batch cap (`data.long_clips`), and clips that fail to decode
    while training (counted under "bad_examples_in_training"). With `config.lora`, LoRA adapters train on the frozen
    encoder and the head trains whole; the checkpoints are merged plain models (training/lora.py).
    """
    if config.task == "pretrain":
        raise ValueError("task 'pretrain' is pre-training: call pretrain(...) (w2vbert pretrain)")
    return train_recipe(RECIPES[config.task], model, data, config, resume, model_overrides)


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
    audio files. `from_scratch` takes only `model`'s config. The run directory and its guarantees are fine-tuning's
    (training/trainer.py); `output_dir/last` loads as an encoder into any head class (the pre-training tensors
    reported as unused), here and in transformers. Returns the run summary."""
    if config.task != "pretrain":
        config = dataclasses.replace(config, task="pretrain")
    return train_recipe(PretrainingRecipe(from_scratch), model, data, config, resume, model_overrides)


def train_recipe(
    recipe: CTCRecipe | ClassificationRecipe | PretrainingRecipe,
    model: str,
    data: DataConfig,
    config: TrainingConfig,
    resume: bool,
    model_overrides: dict[str, Any] | None,
) -> dict[str, Any]:
    """The run both `finetune` and `pretrain` are: examples, the recipe's model, the trainer, the summary."""
    if data.long_clips == "crop" and config.task == "ctc":
        raise ValueError("long_clips='crop' would cut audio away from under its transcript: use 'skip' for ctc")
    output_dir = Path(config.output_dir)
    resume_from = find_checkpoint(output_dir)
    if resume_from is not None and not resume:
        raise ValueError(f"{output_dir} already holds a checkpoint: pass --resume to continue it, or another folder")
    source = str(resume_from) if resume_from is not None else model
    bad = BadExamples(data.on_bad_example)

    def examples(manifest: str, labels: list[str] | None = None) -> list[Example]:
        if isinstance(recipe, PretrainingRecipe):
            found = recipe.examples(manifest, data, bad)
        else:
            found = load_examples(manifest, config.task, bad, data.normalizer, labels=labels,
                                  audio_column=data.audio_column, target_column_name=data.target_column)
        return limit_length(found, config.max_batch_seconds, data.long_clips, bad)

    train = examples(data.train_manifest)
    feature_extractor = feature_extractor_for(source)
    seed_everything(config.seed)  # what the checkpoint lacks (a new head, a fresh quantizer) starts the same each run
    prepared = recipe.prepare(source, train, data, resume_from, dict(model_overrides or {}))
    train = recipe.trainable(train, prepared, bad)
    evaluation = None
    if data.eval_manifest is not None:
        known = recipe.eval_labels(prepared) if isinstance(recipe, ClassificationRecipe) else prepared.labels
        eval_examples = recipe.trainable(examples(data.eval_manifest, known), prepared, bad)
        evaluation = SpeechDataset(eval_examples, prepared.encode, data.cache_audio, data.on_bad_example)
        logger.info("evaluation data: %s", describe(eval_examples))
    if not train:
        raise ValueError(f"{data.train_manifest}: no usable training examples ({dict(bad.counts)} left out)")
    logger.info("training data: %s; left out: %s", describe(train), dict(bad.counts) or "none")
    train_data = SpeechDataset(train, prepared.encode, data.cache_audio, data.on_bad_example)
    trainer = Trainer(
        prepared.model, config, train_data if data.augmentation is None else Augmented(train_data, data.augmentation),
        Collator(feature_extractor, config.task, prepared.background), evaluation, tokenizer=prepared.tokenizer,
        feature_extractor=feature_extractor,
    )
    summary = trainer.train(resume=resume)
    summary |= {"train_examples": len(train), "bad_examples": dict(bad.counts), "bad_examples_total": bad.total,
                "output_dir": str(output_dir)}
    if trainer.env.main:
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
