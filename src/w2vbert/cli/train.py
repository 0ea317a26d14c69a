"""`w2vbert finetune` and `w2vbert pretrain`: their arguments, and the run of a recipe from them.

In order: `configure` and its argument groups (what a run starts from, the run directory and bad examples, the
fine-tuning targets and head, the optimizer, batches and cadence, LoRA), then the arguments turned into configs
(`training_config`, `lora_settings`) and the two runs (`run_finetune`, `run_pretrain`). The defaults are the
dataclasses' (`TrainingConfig`, `DataConfig`), read from their fields, so the command line and the Python API
cannot drift apart; the task choices and each task's target column are the task table's (training/tasks.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import fields
from typing import Any

from w2vbert.audio.augment import Augmentation
from w2vbert.cli.arguments import UsageError, device_name, positive_float, positive_int
from w2vbert.training.config import PRECISIONS, SCHEDULES, SHARDINGS, TrainingConfig
from w2vbert.training.examples import LONG_CLIPS, ON_BAD, TextNormalizer
from w2vbert.training.lora import DEFAULT_TARGETS, LoraSettings
from w2vbert.training.recipes import DataConfig, finetune, pretrain
from w2vbert.training.tasks import LABEL_COLUMN, SEGMENTS_COLUMN, TASKS, TEXT_COLUMN

TRAINING = {f.name: f.default for f in fields(TrainingConfig) if f.name != "output_dir"}  # the CLI's defaults
DATA = {f.name: f.default for f in fields(DataConfig) if f.name != "train_manifest"}
FINETUNING_TASKS = [name for name, task in TASKS.items() if task.target_column is not None]  # not pretrain


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of `w2vbert finetune` and `w2vbert pretrain`, group by group, in the order --help lists them."""
    if name == "finetune":
        _finetune_sources(parser)
    else:
        _pretrain_sources(parser)
    _run_arguments(parser)
    if name == "finetune":
        _finetune_arguments(parser)
    _optimization_arguments(parser)
    _batch_arguments(parser)
    _lora_arguments(parser)
    parser.set_defaults(run=run_finetune if name == "finetune" else run_pretrain)


def _finetune_sources(parser: argparse.ArgumentParser) -> None:
    """What `finetune` starts from and trains on: the task, the checkpoint, the manifests."""
    parser.description = (
        "Fine-tune on CSV/TSV/JSONL manifests (columns: audio + text, or audio + label; audio paths relative to "
        "the manifest). Several processes or GPUs: launch with torchrun."
    )
    parser.add_argument("--task", choices=FINETUNING_TASKS, default=TRAINING["task"])
    parser.add_argument("--model", required=True, help="hub id or directory of the starting checkpoint")
    parser.add_argument("--train", required=True, help="training manifest")
    parser.add_argument("--eval", help="evaluation manifest")


def _pretrain_sources(parser: argparse.ArgumentParser) -> None:
    """What `pretrain` starts from and trains on: the checkpoint (or its config alone), the audio."""
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


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    """The run directory, and what happens to examples that cannot train."""
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last")
    parser.add_argument("--audio-column", default=DATA["audio_column"])
    parser.add_argument("--on-bad-example", choices=ON_BAD, default=DATA["on_bad_example"],
                        help="skip (report and count) or fail at an example that cannot train, also one that "
                             "fails to decode during training")
    parser.add_argument("--long-clips", choices=LONG_CLIPS, default=DATA["long_clips"],
                        help="clips longer than --max-batch-seconds: skip them (counted), or crop them to it "
                             "(not for ctc)")


def _finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """Fine-tuning only: the target columns, how transcripts are cleaned, and the head's options."""
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


def _optimization_arguments(parser: argparse.ArgumentParser) -> None:
    """The optimizer, its schedule, precision and what is frozen."""
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


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Batches, the cadence of evaluations, checkpoints and records, data loading and the device."""
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
                             "floor at -90..-35 dBFS (half the reads), 16-bit dither (a quarter); "
                             "see w2vbert.audio.augment")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--device", type=device_name, default=TRAINING["device"],
                        help="cpu, cuda (this rank's GPU), cuda:1 (default: cuda when available)")


def _lora_arguments(parser: argparse.ArgumentParser) -> None:
    """LoRA adapters, in a help group of their own."""
    lora = parser.add_argument_group("LoRA (peft): adapters on the frozen encoder, the head trained whole; "
                                     "checkpoints are saved merged, as plain models")
    lora.add_argument("--lora", type=positive_int, metavar="RANK", help="train LoRA adapters of this rank")
    lora.add_argument("--lora-alpha", type=positive_float, help="the adapters' scale is alpha / rank (default: 2 rank)")
    lora.add_argument("--lora-dropout", type=float, help="dropout on the adapters' input (default 0)")
    lora.add_argument("--lora-targets", type=lambda text: tuple(text.split(",")), metavar="NAME,NAME",
                      help=f"the encoder's linear layers to adapt (default {','.join(DEFAULT_TARGETS)})")
    lora.add_argument("--save-adapter", action="store_true",
                      help="each checkpoint also holds the adapter alone, as peft writes it")


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
    given = {TEXT_COLUMN: args.text_column, LABEL_COLUMN: args.label_column, SEGMENTS_COLUMN: args.segments_column}
    column = given[TASKS[args.task].target_column]  # the task's --text-column, --label-column or --segments-column
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
