"""`w2vbert finetune` and `w2vbert pretrain`: their arguments, and the run of a recipe from them.

In order: `configure` and its argument groups (what a run starts from, the run directory and bad examples, the
fine-tuning targets and head, the optimizer, batches and cadence, LoRA), then the arguments turned into configs
(`training_config`, `data_config`, `lora_settings`) and the two runs (`run_finetune`, `run_pretrain`). The defaults
are the dataclasses' (`TrainingConfig`, `DataConfig`): an option not given is left out of the config it makes, so the
command line and the Python API cannot drift apart. The choices come from training/names.py, and the configs and
runs are imported when a command runs: they load torch, which `--help` does without.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from w2vbert.cli.arguments import (
    UsageError,
    add_run_options,
    chunk_frames,
    chunk_frames_list,
    non_negative_int,
    positive_float,
    positive_int,
)
from w2vbert.training.names import (
    DEFAULT_TARGETS,
    FINETUNING_TASKS,
    LONG_CLIPS,
    ON_BAD,
    PRECISIONS,
    PRETRAINING_TASK,
    SCHEDULES,
    SHARDINGS,
)

DEFAULT_LEFT_CHUNKS = 4  # --streaming's left context: 4 chunks (2.56 s at 640 ms chunks)

if TYPE_CHECKING:
    from w2vbert.training.config import TrainingConfig
    from w2vbert.training.lora import LoraSettings
    from w2vbert.training.recipes import DataConfig


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
    parser.add_argument("--task", choices=FINETUNING_TASKS, help="default: TrainingConfig's, speech recognition (ctc)")
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
    parser.add_argument("--audio-column")
    parser.add_argument("--on-bad-example", choices=ON_BAD,
                        help="skip (report and count) or fail at an example that cannot train, also one that "
                             "fails to decode during training")
    parser.add_argument("--long-clips", choices=LONG_CLIPS,
                        help="clips longer than --max-batch-seconds: skip them (counted), or crop them to it "
                             "(not for ctc)")


def _finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """Fine-tuning only: the target columns, how transcripts are cleaned, and the head's options."""
    parser.add_argument("--text-column", help="transcript column (ctc; default 'text')")
    parser.add_argument("--label-column", help="label column (classify, xvector: the speaker; default 'label')")
    parser.add_argument("--segments-column",
                        help="frames: column of segment files, 'start end label' lines or RTTM (default "
                             "'segments'); overlapping segments: the one starting later labels the frames")
    parser.add_argument("--background-label",
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
    parser.add_argument("--streaming", type=chunk_frames, metavar="MS",
                        help="train a chunked model that streams: attention chunks of MS milliseconds (a multiple "
                        "of 20 and of the adapter's stride), fixed feature statistics measured on the training audio")
    parser.add_argument("--streaming-left-chunks", type=non_negative_int, metavar="N",
                        help="with --streaming: chunks to the left each frame reads (default 4)")
    parser.add_argument("--dynamic-chunks", dest="chunk_sizes", type=chunk_frames_list, metavar="MS,MS",
                        help="with --streaming: each step draws one of these chunk sizes (ms), so that one model "
                        "serves several latencies (WeNet's dynamic chunk training)")
    parser.add_argument("--mask-time-prob", type=float,
                        help="override the model config's SpecAugment time masking")


def _optimization_arguments(parser: argparse.ArgumentParser) -> None:
    """The optimizer, its schedule, precision and what is frozen."""
    parser.add_argument("--layerdrop", type=float, help="override the model config's LayerDrop")
    parser.add_argument("--learning-rate", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--lr-schedule", choices=SCHEDULES)
    parser.add_argument("--warmup-steps", type=int)
    parser.add_argument("--max-steps", type=positive_int)
    parser.add_argument("--gradient-accumulation-steps", type=positive_int)
    parser.add_argument("--max-grad-norm", type=float, help="0 disables clipping")
    parser.add_argument("--precision", choices=PRECISIONS)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--freeze-feature-projection", action="store_true")
    parser.add_argument("--freeze-layers", type=int,
                        help="freeze the lowest K Conformer blocks")


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
    """Batches, the cadence of evaluations, checkpoints and records, data loading and the device."""
    parser.add_argument("--max-batch-seconds", type=positive_float,
                        help="padded audio per global batch")
    parser.add_argument("--max-batch-size", type=int)
    parser.add_argument("--eval-every", type=int)
    parser.add_argument("--save-every", type=int)
    parser.add_argument("--log-every", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--sharding", choices=SHARDINGS)
    parser.add_argument("--cache-audio", action="store_true", help="keep decoded clips in memory")
    parser.add_argument("--augment", action="store_true",
                        help="each read of a training clip: 0-40 ms later start, -12..+6 dB gain, a white-noise "
                             "floor at -90..-35 dBFS (half the reads), 16-bit dither (a quarter); "
                             "see w2vbert.audio.augment")
    add_run_options(parser, dtype=False)  # --precision is training's dtype


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


def training_config(args: argparse.Namespace, task: str | None) -> TrainingConfig:
    """The TrainingConfig of a `finetune` or `pretrain` command line: the options given, under their fields' names
    (--lora RANK and --no-progress as the fields `lora` and `progress`); the dataclass's defaults for the others."""
    from w2vbert.training.config import TrainingConfig

    given = {f.name: getattr(args, f.name) for f in fields(TrainingConfig) if getattr(args, f.name, None) is not None}
    if given.get("max_grad_norm") == 0:
        given["max_grad_norm"] = None  # 0 disables clipping
    if task is not None:
        given["task"] = task
    return TrainingConfig(**given | {"progress": not args.no_progress, "lora": lora_settings(args)})


def data_config(args: argparse.Namespace, **task_options: Any) -> DataConfig:
    """The DataConfig of a `finetune` or `pretrain` command line (`task_options`: finetune's target column and
    text normaliser); the dataclass's defaults for what is not given."""
    from w2vbert.audio.augment import Augmentation
    from w2vbert.training.recipes import DataConfig

    options = ("audio_column", "on_bad_example", "long_clips", "background_label", "vocab")
    given = {name: getattr(args, name) for name in options if getattr(args, name, None) is not None}
    return DataConfig(args.train, args.eval, cache_audio=args.cache_audio, **given, **task_options,
                      augmentation=Augmentation() if args.augment else None)


def lora_settings(args: argparse.Namespace) -> LoraSettings | None:
    """The LoraSettings of a command line with --lora RANK (the others' defaults are LoraSettings' own)."""
    from w2vbert.training.lora import LoraSettings

    given = {name: value for name, value in (("alpha", args.lora_alpha), ("dropout", args.lora_dropout),
                                             ("targets", args.lora_targets), ("save_adapter", args.save_adapter))
             if value not in (None, False)}
    if args.lora is None:
        if given:
            raise UsageError("--lora-alpha, --lora-dropout, --lora-targets and --save-adapter need --lora RANK")
        return None
    return LoraSettings(rank=args.lora, **given)


def run_finetune(args: argparse.Namespace) -> int:
    from w2vbert.training.examples import TextNormalizer
    from w2vbert.training.recipes import finetune
    from w2vbert.training.tasks import LABEL_COLUMN, SEGMENTS_COLUMN, TASKS, TEXT_COLUMN

    config = training_config(args, None)
    given = {TEXT_COLUMN: args.text_column, LABEL_COLUMN: args.label_column, SEGMENTS_COLUMN: args.segments_column}
    column = given[TASKS[config.task].target_column]  # the task's --text-column, --label-column or --segments-column
    normalizer = TextNormalizer(lowercase=not args.keep_case, remove_punctuation=not args.keep_punctuation,
                                allowed_characters=args.allowed_characters)
    data = data_config(args, target_column=column, normalizer=normalizer)
    overrides: dict[str, Any] = {}
    if args.no_adapter:
        overrides["add_adapter"] = False
    if args.layerdrop is not None:
        overrides["layerdrop"] = args.layerdrop
    if args.weighted_layer_sum:
        overrides["use_weighted_layer_sum"] = True
    if args.mask_time_prob is not None:
        overrides["mask_time_prob"] = args.mask_time_prob
    if args.streaming is not None:
        overrides["streaming_chunk_size"] = args.streaming
        overrides["streaming_left_chunks"] = DEFAULT_LEFT_CHUNKS if args.streaming_left_chunks is None \
            else args.streaming_left_chunks
    elif args.streaming_left_chunks is not None or config.chunk_sizes:
        raise UsageError("--streaming-left-chunks and --dynamic-chunks need --streaming MS")
    summary = finetune(args.model, data, config, args.resume, overrides)
    _print_summary(summary)
    return 0


def run_pretrain(args: argparse.Namespace) -> int:
    from w2vbert.training.recipes import pretrain

    overrides = {} if args.layerdrop is None else {"layerdrop": args.layerdrop}
    summary = pretrain(args.model, data_config(args), training_config(args, PRETRAINING_TASK), args.resume, overrides,
                       from_scratch=args.from_scratch)
    _print_summary(summary)
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
