"""The inference subcommands of the `w2vbert` command line: transcribe, classify, embed, info.

Multi-file jobs go on past a file that fails: its error is one line on stderr, naming it, and the exit code
is 1 at the end. Results go to stdout (and to files with `--output-dir`); progress bars go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .auto import model_class_for
from .config import Wav2Vec2BertConfig
from .pipelines import AUTO_CHUNK_S
from .writers import FORMATS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    transcribe = subparsers.add_parser("transcribe", help="speech to text with a CTC model")
    _common(transcribe)
    transcribe.add_argument(
        "--timestamps",
        choices=["none", "char", "word"],
        default="none",
        help="timestamps in json output (srt/vtt/tsv always use word times)",
    )
    transcribe.add_argument(
        "-f",
        "--output-format",
        default="txt",
        choices=[*FORMATS, "all"],
        help="file format written to --output-dir (default: txt)",
    )
    transcribe.add_argument("--lm", help="KenLM n-gram (.arpa or .bin) for beam search")
    transcribe.add_argument("--beam-size", type=int, default=None, help="beam search with this beam (default: greedy)")
    transcribe.add_argument("--lm-weight", type=float, default=0.5, help="weight of the n-gram score (alpha)")
    transcribe.add_argument("--word-score", type=float, default=1.0, help="score added per word (beta)")
    transcribe.set_defaults(run=run_transcribe)

    classify = subparsers.add_parser("classify", help="one label per file with a sequence classification model")
    _common(classify)
    classify.add_argument("--top-k", type=int, default=1, help="labels printed per file (default: 1)")
    classify.set_defaults(run=run_classify)

    embed = subparsers.add_parser("embed", help="hidden states of one layer, per frame or mean-pooled")
    _common(embed)
    embed.add_argument("--layer", type=int, default=-1, help="0 = projected input, k = block k, -1 = last (default)")
    embed.add_argument("--pool", choices=["none", "mean"], default="mean", help="per frame, or the mean (default)")
    embed.add_argument("--format", choices=["npy", "safetensors"], default="npy", dest="file_format")
    embed.set_defaults(run=run_embed)

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
            if config.add_adapter
            else "none"
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


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (any format FFmpeg reads)")
    parser.add_argument("-m", "--model", required=True, help="model directory or hub repo id")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-size", type=int, default=4, help="windows run together (default: 4)")
    parser.add_argument(
        "--chunk-length",
        type=float,
        default=None,
        metavar="S",
        help=f"window length in seconds for long audio (default: {AUTO_CHUNK_S:.0f})",
    )
    parser.add_argument(
        "--stride-length",
        type=float,
        default=None,
        metavar="S",
        help="context on each side of a window (default: chunk / 6)",
    )
    parser.add_argument("-o", "--output-dir", type=Path, default=None, help="write one file per input here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _pipeline(task: str, args: argparse.Namespace, **options: Any) -> Any:
    from .pipelines import pipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return pipeline(
        task,
        args.model,
        device=device,
        torch_dtype=getattr(torch, args.dtype),
        batch_size=args.batch_size,
        chunk_length_s=args.chunk_length,
        stride_length_s=args.stride_length,
        **options,
    )


def _results(pipe: Any, args: argparse.Namespace, **options: Any) -> Iterator[tuple[str, Any]]:
    """(file, result) for the files that worked; failures are reported on stderr and counted in args.failed."""
    args.failed = 0
    bar = tqdm(total=len(args.files), unit="file", disable=args.no_progress or len(args.files) < 2, file=sys.stderr)
    for path, result in zip(args.files, pipe.iterate(args.files, **options), strict=True):
        bar.update()
        if isinstance(result, Exception):
            args.failed += 1
            tqdm.write(f"w2vbert: error: {result}", file=sys.stderr)
        else:
            yield path, result
    bar.close()


def run_transcribe(args: argparse.Namespace) -> int:
    from .writers import write_transcript

    decoder = None
    if args.beam_size or args.lm:
        from .decoding import BeamSearchDecoder

        decoder = BeamSearchDecoder(
            lm=args.lm, beam_size=args.beam_size or 50, lm_weight=args.lm_weight, word_score=args.word_score
        )
    pipe = _pipeline("automatic-speech-recognition", args, decoder=decoder)
    formats = FORMATS if args.output_format == "all" else (args.output_format,)
    needs_words = args.output_dir is not None and any(f in ("srt", "vtt", "tsv") for f in formats)
    timestamps = args.timestamps if args.timestamps != "none" else ("word" if needs_words else None)
    for path, result in _results(pipe, args, return_timestamps=timestamps):
        print(result["text"] if len(args.files) == 1 else f"{path}\t{result['text']}", flush=True)
        if args.output_dir is not None:
            for fmt in formats:
                write_transcript(result, path, args.output_dir, fmt)
    return 1 if args.failed else 0


def run_classify(args: argparse.Namespace) -> int:
    pipe = _pipeline("audio-classification", args, top_k=args.top_k)
    for path, labels in _results(pipe, args):
        line = "\t".join(f"{item['label']}\t{item['score']:.4f}" for item in labels)
        print(f"{path}\t{line}", flush=True)
        if args.output_dir is not None:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            (args.output_dir / f"{Path(path).stem}.json").write_text(json.dumps(labels, indent=2) + "\n")
    return 1 if args.failed else 0


def run_embed(args: argparse.Namespace) -> int:
    if args.output_dir is None:
        raise ValueError("embed writes one file per input: pass --output-dir")
    pipe = _pipeline("feature-extraction", args, layer=args.layer, pool=args.pool)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for path, embedding in _results(pipe, args):
        target = args.output_dir / f"{Path(path).stem}.{args.file_format}"
        if args.file_format == "npy":
            np.save(target, embedding)
        else:
            from safetensors.numpy import save_file

            save_file({"embedding": np.ascontiguousarray(embedding)}, target, metadata={"layer": str(args.layer)})
        print(f"{path}\t{target}\t{tuple(embedding.shape)}", flush=True)
    return 1 if args.failed else 0
