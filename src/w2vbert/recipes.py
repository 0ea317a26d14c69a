"""Training recipes: `finetune()` / `w2vbert finetune` and `pretrain()` / `w2vbert pretrain`, from manifests (or
a folder of audio) to a trained checkpoint.

In order: `DataConfig` (where examples come from, how targets are cleaned, what happens to bad ones), the
recipe of each task (`CTCRecipe`: transcripts -> character vocabulary -> `Wav2Vec2BertForCTC`;
`ClassificationRecipe`: labels -> `Wav2Vec2BertForSequenceClassification`, and its two variants `FramesRecipe`:
labelled segments -> `Wav2Vec2BertForAudioFrameClassification`, `XVectorRecipe`: speakers ->
`Wav2Vec2BertForXVector`; `PretrainingRecipe`: audio alone -> `Wav2Vec2BertForPreTraining`), `train_recipe()`
and its two faces `finetune()` and `pretrain()`, and the command lines, whose defaults are the config
dataclasses' own. The training loop itself is trainer.py's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .arguments import UsageError, device_name, positive_float, positive_int
from .augment import Augmentation, Augmented
from .config import Wav2Vec2BertConfig
from .data import (
    LONG_CLIPS,
    ON_BAD,
    TASKS,
    BadExamples,
    Collator,
    Example,
    SpeechDataset,
    TextNormalizer,
    describe,
    drop_too_short,
    drop_unmaskable,
    limit_length,
    load_examples,
    load_unlabeled,
)
from .features import feature_extractor_for
from .heads import (
    Wav2Vec2BertForAudioFrameClassification,
    Wav2Vec2BertForCTC,
    Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertForXVector,
)
from .lora import DEFAULT_TARGETS, LoraSettings
from .pretrained import Wav2Vec2BertPreTrainedModel
from .pretraining import Wav2Vec2BertForPreTraining
from .tokenizer import LABEL_PAD, Wav2Vec2CTCTokenizer, build_vocab
from .trainer import PRECISIONS, SCHEDULES, SHARDINGS, Trainer, TrainingConfig, find_checkpoint, seed_everything

logger = logging.getLogger("w2vbert")


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from, how targets are cleaned, and what happens to examples that cannot train."""

    train_manifest: str
    eval_manifest: str | None = None
    audio_column: str = "audio"
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
    """A label per 20 ms frame, from each clip's segments file (segments.py: `start end label` lines or RTTM);
    frames outside every segment take `data.background_label`, which is one of the labels."""

    task = "frames"
    model_class = Wav2Vec2BertForAudioFrameClassification

    def labels(self, train: list[Example], data: DataConfig) -> list[str]:
        return sorted({s.label for e in train for s in e.segments or ()} | {data.background_label})


class XVectorRecipe(ClassificationRecipe):
    """Speaker embeddings: the training speakers (the label column) are the AM-softmax classes; the evaluation
    clips are other speakers, scored on trials (verification.py), so their labels are not checked against them."""

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
    encoder and the head trains whole; the checkpoints are merged plain models (lora.py).
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
    (trainer.py); `output_dir/last` loads as an encoder into any head class (the pre-training tensors reported as
    unused), here and in transformers. Returns the run summary."""
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


# ------------------------------------------------------------------------------------------------- CLI
TRAINING = {f.name: f.default for f in fields(TrainingConfig) if f.name != "output_dir"}  # the CLI's defaults
DATA = {f.name: f.default for f in fields(DataConfig) if f.name != "train_manifest"}


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of `w2vbert finetune` and `w2vbert pretrain`."""
    if name == "finetune":
        parser.description = (
            "Fine-tune on CSV/TSV/JSONL manifests (columns: audio + text, or audio + label; audio paths relative to "
            "the manifest). Several processes or GPUs: launch with torchrun."
        )
        parser.add_argument("--task", choices=[t for t in TASKS if t != "pretrain"], default=TRAINING["task"])
        parser.add_argument("--model", required=True, help="hub id or directory of the starting checkpoint")
        parser.add_argument("--train", required=True, help="training manifest")
        parser.add_argument("--eval", help="evaluation manifest")
    else:
        parser.description = (
            "Continue the w2v-BERT self-supervised pre-training on unlabeled audio: a CSV/TSV/JSONL manifest with an "
            "audio column (other columns are ignored), or a folder of audio files. Several processes or GPUs: "
            "launch with torchrun."
        )
        parser.add_argument("--model", required=True,
                            help="hub id, directory, or Meta's conformer_shaw.pt (its quantizer is kept)")
        parser.add_argument("--train", required=True, help="training manifest or folder of audio")
        parser.add_argument("--eval", help="evaluation manifest or folder")
        parser.add_argument("--from-scratch", action="store_true", help="take only the model's config.json")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last")
    parser.add_argument("--audio-column", default=DATA["audio_column"])
    parser.add_argument("--on-bad-example", choices=ON_BAD, default=DATA["on_bad_example"],
                        help="skip (report and count) or fail at an example that cannot train, also one that "
                             "fails to decode during training")
    parser.add_argument("--long-clips", choices=LONG_CLIPS, default=DATA["long_clips"],
                        help="clips longer than --max-batch-seconds: skip them (counted), or crop them to it "
                             "(not for ctc)")
    if name == "finetune":
        parser.add_argument("--text-column", help="transcript column (ctc; default 'text')")
        parser.add_argument("--label-column", help="label column (classify, xvector: the speaker; default 'label')")
        parser.add_argument("--segments-column",
                            help="frames: column of segment files, 'start end label' lines or RTTM (default "
                                 "'segments'); overlapping segments: the one starting later labels the frames")
        parser.add_argument("--background-label", default=DATA["background_label"],
                            help="frames: the label of frames outside every segment")
        parser.add_argument("--trials", help="xvector: 'enroll test target(0/1)' lines of evaluation clips (paths "
                                             "relative to this file); default: every pair of evaluation clips")
        parser.add_argument("--vocab", help="use this vocab.json instead of building one from the transcripts")
        parser.add_argument("--keep-case", action="store_true", help="do not lowercase transcripts")
        parser.add_argument("--keep-punctuation", action="store_true")
        parser.add_argument("--allowed-characters", help="drop every other character from transcripts")
        parser.add_argument("--no-adapter", action="store_true",
                            help="no adapter on top of the encoder: CTC without it (on by default for CTC), and what "
                                 "classification needs from a checkpoint that has one (its head refuses the adapter)")
        parser.add_argument("--weighted-layer-sum", action="store_true",
                            help="classify, frames, xvector: the head reads a learned softmax-weighted sum of every "
                                 "layer's hidden states, not the last (use_weighted_layer_sum)")
        parser.add_argument("--mask-time-prob", type=float,
                            help="override the model config's SpecAugment time masking")
    parser.add_argument("--layerdrop", type=float, help="override the model config's LayerDrop")
    parser.add_argument("--learning-rate", type=float, default=TRAINING["learning_rate"])
    parser.add_argument("--weight-decay", type=float, default=TRAINING["weight_decay"])
    parser.add_argument("--lr-schedule", choices=SCHEDULES, default=TRAINING["lr_schedule"])
    parser.add_argument("--warmup-steps", type=int, default=TRAINING["warmup_steps"])
    parser.add_argument("--max-steps", type=positive_int, default=TRAINING["max_steps"])
    parser.add_argument("--gradient-accumulation-steps", type=positive_int,
                        default=TRAINING["gradient_accumulation_steps"])
    parser.add_argument("--max-grad-norm", type=float, default=TRAINING["max_grad_norm"], help="0 disables clipping")
    parser.add_argument("--precision", choices=PRECISIONS, default=TRAINING["precision"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--freeze-feature-projection", action="store_true")
    parser.add_argument("--freeze-layers", type=int, default=TRAINING["freeze_layers"],
                        help="freeze the lowest K Conformer blocks")
    parser.add_argument("--max-batch-seconds", type=positive_float, default=TRAINING["max_batch_seconds"],
                        help="padded audio per global batch")
    parser.add_argument("--max-batch-size", type=int, default=TRAINING["max_batch_size"])
    parser.add_argument("--eval-every", type=int, default=TRAINING["eval_every"])
    parser.add_argument("--save-every", type=int, default=TRAINING["save_every"])
    parser.add_argument("--log-every", type=int, default=TRAINING["log_every"])
    parser.add_argument("--seed", type=int, default=TRAINING["seed"])
    parser.add_argument("--num-workers", type=int, default=TRAINING["num_workers"])
    parser.add_argument("--sharding", choices=SHARDINGS, default=TRAINING["sharding"])
    parser.add_argument("--cache-audio", action="store_true", help="keep decoded clips in memory")
    parser.add_argument("--augment", action="store_true",
                        help="each read of a training clip: 0-40 ms later start, -12..+6 dB gain, a white-noise "
                             "floor at -90..-35 dBFS (half the reads), 16-bit dither (a quarter); see w2vbert.augment")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--device", type=device_name, default=TRAINING["device"],
                        help="cpu, cuda (this rank's GPU), cuda:1 (default: cuda when available)")
    lora = parser.add_argument_group("LoRA (peft): adapters on the frozen encoder, the head trained whole; "
                                     "checkpoints are saved merged, as plain models")
    lora.add_argument("--lora", type=positive_int, metavar="RANK", help="train LoRA adapters of this rank")
    lora.add_argument("--lora-alpha", type=positive_float, help="the adapters' scale is alpha / rank (default: 2 rank)")
    lora.add_argument("--lora-dropout", type=float, help="dropout on the adapters' input (default 0)")
    lora.add_argument("--lora-targets", type=lambda text: tuple(text.split(",")), metavar="NAME,NAME",
                      help=f"the encoder's linear layers to adapt (default {','.join(DEFAULT_TARGETS)})")
    lora.add_argument("--save-adapter", action="store_true",
                      help="each checkpoint also holds the adapter alone, as peft writes it")
    parser.set_defaults(run=run_finetune if name == "finetune" else run_pretrain)


def training_config(args: argparse.Namespace, task: str) -> TrainingConfig:
    """The TrainingConfig of a `finetune` or `pretrain` command line."""
    return TrainingConfig(
        output_dir=args.output_dir, task=task, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps, max_steps=args.max_steps,
        gradient_accumulation_steps=args.gradient_accumulation_steps, max_grad_norm=args.max_grad_norm or None,
        precision=args.precision, gradient_checkpointing=args.gradient_checkpointing,
        freeze_feature_projection=args.freeze_feature_projection, freeze_layers=args.freeze_layers,
        max_batch_seconds=args.max_batch_seconds, max_batch_size=args.max_batch_size, eval_every=args.eval_every,
        save_every=args.save_every, log_every=args.log_every, seed=args.seed, num_workers=args.num_workers,
        sharding=args.sharding, device=args.device, progress=not args.no_progress, lora=lora_settings(args),
    )


def lora_settings(args: argparse.Namespace) -> LoraSettings | None:
    """The LoraSettings of a command line with --lora RANK (the others' defaults are LoraSettings' own)."""
    given = {name: value for name, value in (("alpha", args.lora_alpha), ("dropout", args.lora_dropout),
                                             ("targets", args.lora_targets), ("save_adapter", args.save_adapter))
             if value not in (None, False)}
    if args.lora is None:
        if given:
            raise UsageError("--lora-alpha, --lora-dropout, --lora-targets and --save-adapter need --lora RANK")
        return None
    return LoraSettings(rank=args.lora, **given)


def run_finetune(args: argparse.Namespace) -> int:
    column = {"ctc": args.text_column, "frames": args.segments_column}.get(args.task, args.label_column)
    normalizer = TextNormalizer(lowercase=not args.keep_case, remove_punctuation=not args.keep_punctuation,
                                allowed_characters=args.allowed_characters)
    data = DataConfig(args.train, args.eval, args.audio_column, column, normalizer, args.on_bad_example, args.vocab,
                      args.cache_audio, args.long_clips, background_label=args.background_label,
                      augmentation=Augmentation() if args.augment else None)
    overrides: dict[str, Any] = {}
    if args.no_adapter:
        overrides["add_adapter"] = False
    if args.layerdrop is not None:
        overrides["layerdrop"] = args.layerdrop
    if args.weighted_layer_sum:
        overrides["use_weighted_layer_sum"] = True
    if args.mask_time_prob is not None:
        overrides["mask_time_prob"] = args.mask_time_prob
    config = dataclasses.replace(training_config(args, args.task), trials=args.trials)
    summary = finetune(args.model, data, config, args.resume, overrides)
    _print_summary(summary)
    return 0


def run_pretrain(args: argparse.Namespace) -> int:
    data = DataConfig(args.train, args.eval, args.audio_column, on_bad_example=args.on_bad_example,
                      cache_audio=args.cache_audio, long_clips=args.long_clips,
                      augmentation=Augmentation() if args.augment else None)
    overrides = {} if args.layerdrop is None else {"layerdrop": args.layerdrop}
    summary = pretrain(args.model, data, training_config(args, "pretrain"), args.resume, overrides,
                       from_scratch=args.from_scratch)
    _print_summary(summary)
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
