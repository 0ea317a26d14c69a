"""What each task's model is made of: a `Recipe` turns a checkpoint and the training examples into the model with
its head, the encoding of targets into what its loss takes, and the files saved beside it (`Prepared`).

In order: `Prepared`, `ctc_tokenizer`, the `Recipe` interface, then one recipe per kind of head: `CTCRecipe`
(transcripts -> character vocabulary -> `Wav2Vec2BertForCTC`), `ClassificationRecipe` (labels ->
`Wav2Vec2BertForSequenceClassification`) and its two variants `FramesRecipe` (labelled segments ->
`Wav2Vec2BertForAudioFrameClassification`) and `XVectorRecipe` (speakers -> `Wav2Vec2BertForXVector`), and
`PretrainingRecipe` (audio alone -> `Wav2Vec2BertForPreTraining`, on the encoder of any checkpoint: `ENCODER_ALONE`,
`encoder_tensors`). Which task uses which recipe is its `Task`'s (training/tasks.py); running one is
training/recipes.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from w2vbert.loading.weights import load_weights
from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.heads import (
    Wav2Vec2BertForAudioFrameClassification,
    Wav2Vec2BertForCTC,
    Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertForXVector,
)
from w2vbert.model.loader import align_prefix, is_fairseq2_file
from w2vbert.model.pretraining import Wav2Vec2BertForPreTraining
from w2vbert.text.encoding import LABEL_PAD
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
from w2vbert.text.vocab import build_vocab
from w2vbert.training.examples import BadExamples, DataConfig, Example, drop_too_short, drop_unmaskable

logger = logging.getLogger("w2vbert")

# The adapter stack on the encoder's output, off: pre-training reads the Conformer blocks' states, and what sits
# above them belongs to a head (the adapter strides for CTC; SeamlessM4T v2's FFN and LayerNorm around it).
ENCODER_ALONE = {"add_adapter": False, "use_intermediate_ffn_before_adapter": False, "add_inner_layer_norm": False}


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


class Recipe:
    """How a task's model is made (`prepare`), and which of its examples it can train and evaluate on."""

    def prepare(
        self, source: str, train: list[Example], data: DataConfig, resume_from: Path | None, overrides: dict[str, Any]
    ) -> Prepared:
        """The model of checkpoint `source` (or of the run's `resume_from`) for this task, with `overrides` of its
        config, and what goes with it."""
        raise NotImplementedError

    def trainable(self, examples: list[Example], prepared: Prepared, bad: BadExamples) -> list[Example]:
        """The examples the prepared model can train on; the others are reported to `bad`."""
        return examples

    def eval_labels(self, prepared: Prepared) -> list[str] | None:
        """The labels an evaluation example may have (others are reported as unknown); None: any."""
        return prepared.labels


class CTCRecipe(Recipe):
    """Speech recognition: the vocabulary (built from the training transcripts unless `data.vocab`) sets
    `vocab_size` and the blank (`pad_token_id`); the adapter, `ctc_zero_infinity` and the per-target-length "mean"
    CTC loss are on unless the overrides say otherwise. A clip too short for its transcript is left out."""

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


class ClassificationRecipe(Recipe):
    """One label per clip: the training labels (sorted) set `num_labels`, `id2label` and `label2id`."""

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


class FramesRecipe(ClassificationRecipe):
    """A label per 20 ms frame, from each clip's segments file (text/segments.py: `start end label` lines or RTTM);
    frames outside every segment take `data.background_label`, which is one of the labels."""

    model_class = Wav2Vec2BertForAudioFrameClassification

    def labels(self, train: list[Example], data: DataConfig) -> list[str]:
        return sorted({s.label for e in train for s in e.segments or ()} | {data.background_label})


class XVectorRecipe(ClassificationRecipe):
    """Speaker embeddings: the training speakers (the label column) are the AM-softmax classes; the evaluation
    clips are other speakers, scored on trials (data/verification.py), so their labels are not checked against them."""

    model_class = Wav2Vec2BertForXVector

    def encoder(self, label2id: dict[str, int]) -> Callable[[str], int]:
        return lambda speaker: label2id.get(speaker, LABEL_PAD)  # a held-out speaker has no training class

    def eval_labels(self, prepared: Prepared) -> list[str] | None:
        return None


class PretrainingRecipe(Recipe):
    """Continued pre-training (or from scratch): audio alone, on the encoder of any checkpoint of the family (a
    head and the adapter stack on its output are left out, in one line); the quantizer and projections come from
    Meta's conformer_shaw.pt or a pre-training checkpoint, or start fresh (and are reported). A clip with no more
    steps than a masked span is left out."""

    def __init__(self, from_scratch: bool = False) -> None:
        self.from_scratch = from_scratch

    def prepare(
        self, source: str, train: list[Example], data: DataConfig, resume_from: Path | None, overrides: dict[str, Any]
    ) -> Prepared:
        fresh = self.from_scratch and resume_from is None
        if is_fairseq2_file(source):  # Meta's file: the encoder and its quantizer, no adapter (model/fairseq2.py)
            model = Wav2Vec2BertForPreTraining.from_pretrained(source, **overrides)
            return Prepared(_from_scratch(model.config, source, []) if fresh else model, _no_target)
        config = Wav2Vec2BertConfig.from_pretrained(source, **overrides)
        stack = sorted(name for name, value in ENCODER_ALONE.items() if getattr(config, name) != value)
        config = Wav2Vec2BertConfig.from_dict(config.to_dict(), **ENCODER_ALONE)
        if fresh:
            return Prepared(_from_scratch(config, source, stack), _no_target)
        tensors = encoder_tensors(source, config)
        return Prepared(Wav2Vec2BertForPreTraining.from_pretrained(None, config=config, state_dict=tensors),
                        _no_target)

    def trainable(self, examples: list[Example], prepared: Prepared, bad: BadExamples) -> list[Example]:
        return drop_unmaskable(examples, prepared.model.config.mask_time_length, bad)


def encoder_tensors(source: str, config: Wav2Vec2BertConfig) -> dict[str, Any]:
    """The tensors of checkpoint `source` (of `config`, less its adapter stack) that `Wav2Vec2BertForPreTraining`
    has a place for: the encoder, and the pre-training parts where the checkpoint has them. What is left out (a
    head, the adapter stack) is said in one line, naming the checkpoint's class."""
    with torch.device("meta"):
        expected = Wav2Vec2BertForPreTraining(config).state_dict()
    prefix = Wav2Vec2BertForPreTraining.base_model_prefix + "."
    tensors = align_prefix(load_weights(source), expected, prefix)  # a bare encoder's names gain the prefix
    left_out = sorted(set(tensors) - set(expected))
    if left_out:
        kind = config.architectures[0] if config.architectures else "Wav2Vec2BertModel"
        logger.warning("pre-training takes the encoder of %s (a %s) and leaves out its head and adapter (%d "
                       "tensors: %s)", source, kind, len(left_out), _listing(left_out))
    return {name: tensor for name, tensor in tensors.items() if name in expected}


def _from_scratch(config: Wav2Vec2BertConfig, source: str, stack: list[str]) -> Wav2Vec2BertForPreTraining:
    """A fresh pre-training model of `config` (`source`'s, less the adapter stack it had: `stack`), said so."""
    config.architectures = None
    if stack:
        logger.warning("pre-training from scratch on the encoder of %s's config: its adapter is left out (%s)",
                       source, ", ".join(stack))
    logger.info("pre-training from scratch: a %d-layer model of %s's config", config.num_hidden_layers, source)
    return Wav2Vec2BertForPreTraining(config)


def _listing(names: list[str]) -> str:
    """A few names, and how many more: what one log line can carry."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _no_target(target: str) -> None:
    return None

