"""`w2vbert info`: a checkpoint's summary from its config alone (class, sizes, parameters, processor files), or with
`--system` this machine's (what decides the speed of each mode). In order: `configure`, `checkpoint_summary`,
`system_summary`, `run_info`. The summaries import what loads torch, so that `--help` answers without it.
"""

from __future__ import annotations

import argparse
import os

from w2vbert.cli.arguments import UsageError


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `info` (cli.COMMANDS) to its parser."""
    parser.add_argument("model", nargs="?", help="a model directory or hub repo id")
    parser.add_argument("--system", action="store_true",
                        help="this machine instead: CPU, the instruction sets that decide speed, torch's threads, "
                             "GPUs, and the mode --dtype auto picks")
    parser.set_defaults(run=run_info)


def checkpoint_summary(model: str) -> dict[str, object]:
    """What `w2vbert info` prints, as a dict: built from config.json alone, no weights are read."""
    from w2vbert.audio.decode import SAMPLING_RATE
    from w2vbert.audio.features import PREPROCESSOR_CONFIG_NAME
    from w2vbert.loading.hub import resolve_optional_file
    from w2vbert.model.auto import model_class_for
    from w2vbert.model.config import Wav2Vec2BertConfig
    from w2vbert.model.heads import Wav2Vec2BertForCTC
    from w2vbert.model.meta_count import count_parts
    from w2vbert.text.vocab import TOKENIZER_CONFIG_NAME, VOCAB_NAME

    config = Wav2Vec2BertConfig.from_pretrained(model)
    cls = model_class_for(config)
    parameters = sum(count_parts(cls, config).values())  # meta builds without init: no memory, no compiler import
    files = (PREPROCESSOR_CONFIG_NAME, VOCAB_NAME, TOKENIZER_CONFIG_NAME)
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
            if config.add_adapter
            else "none"
        ),
        "seconds_per_output_frame": config.inputs_to_logits_ratio / SAMPLING_RATE,
    }
    if issubclass(cls, Wav2Vec2BertForCTC):
        summary["vocab_size"] = config.vocab_size
    elif cls.__name__ != "Wav2Vec2BertModel":
        summary["labels"] = ", ".join(config.id2label[i] for i in sorted(config.id2label))
    summary["processor_files"] = ", ".join(f for f in files if resolve_optional_file(model, f)) or "none"
    return summary


def system_summary() -> dict[str, object]:
    """What decides the speed of each mode on this machine (through the module, which tests can simulate)."""
    import torch

    from w2vbert.loading import devices
    from w2vbert.model.quantization import int8_engine

    features = devices.cpu_features()
    auto = devices.fastest_dtype(torch.device("cpu"))  # what --dtype auto picks, and so --quantize int8's kind
    summary: dict[str, object] = {
        "cpu": devices.cpu_name(),
        "cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "torch": torch.__version__,
        **{name: "yes" if present else "no" for name, present in features.items()},
        "cpu bfloat16": {True: "native", False: "emulated (slow)", None: "not known on this CPU"}[
            devices.native(torch.device("cpu"), torch.bfloat16)],
        "cpu --dtype auto": str(auto).removeprefix("torch."),
        "cpu --quantize int8": (  # with --dtype auto (quantization.quantize_int8)
            "oneDNN int8 matmuls, the rest bfloat16" if auto == torch.bfloat16
            else f"PyTorch dynamic int8 ({int8_engine()} engine), float32 activations"),
    }
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        device = torch.device(f"cuda:{index}")
        summary[f"cuda:{index}"] = torch.cuda.get_device_name(index)
        summary[f"cuda:{index} --dtype auto"] = str(devices.fastest_dtype(device)).removeprefix("torch.")
    return summary


def run_info(args: argparse.Namespace) -> int:
    if args.system == (args.model is not None):
        raise UsageError("name a model, or pass --system (not both)")
    summary = system_summary() if args.system else checkpoint_summary(args.model)
    width = max(map(len, summary))
    for key, value in summary.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        print(f"{key:<{width}}  {shown}")
    return 0
