"""The inference subcommands of the `w2vbert` command line: `info` (and, with the pipelines, the jobs on audio)."""

from __future__ import annotations

import argparse

import torch

from .auto import model_class_for
from .config import Wav2Vec2BertConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    info = subparsers.add_parser("info", help="summarise a checkpoint: class, sizes, parameters, processor files")
    info.add_argument("model", help="a model directory or hub repo id")
    info.set_defaults(run=run_info)


def checkpoint_summary(model: str) -> dict[str, object]:
    """What `w2vbert info` prints, as a dict: built from config.json alone, no weights are read."""
    from .hub import resolve_optional_file

    config = Wav2Vec2BertConfig.from_pretrained(model)
    cls = model_class_for(config)
    with torch.device("meta"):  # shapes only: counting 600M parameters costs no memory
        parameters = cls(config).num_parameters()
    files = ("preprocessor_config.json", "vocab.json", "tokenizer_config.json")
    summary = {
        "model": model,
        "class": cls.__name__,
        "parameters": parameters,
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "attention_heads": config.num_attention_heads,
        "position_embeddings": config.position_embeddings_type or "none",
        "adapter": (
            f"{config.num_adapter_layers} layer(s), stride {config.adapter_stride}, output {config.output_hidden_size}"
            if config.add_adapter else "none"
        ),
        "seconds_per_output_frame": config.inputs_to_logits_ratio / 16000,
    }
    if cls.__name__ == "Wav2Vec2BertForCTC":
        summary["vocab_size"] = config.vocab_size
    elif cls.__name__ != "Wav2Vec2BertModel":
        summary["labels"] = ", ".join(config.id2label[i] for i in sorted(config.id2label))
    summary["processor_files"] = ", ".join(f for f in files if resolve_optional_file(model, f)) or "none"
    return summary


def run_info(args: argparse.Namespace) -> int:
    summary = checkpoint_summary(args.model)
    width = max(map(len, summary))
    for key, value in summary.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        print(f"{key:<{width}}  {shown}")
    return 0
