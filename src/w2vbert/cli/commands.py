"""The inference subcommands of the `w2vbert` command line: transcribe, align, classify, embed, verify, info.

Before any audio is read, everything that can be checked is: the arguments (bad values exit 2), the output
directory (a file, or not writable), outputs that would overwrite each other (two inputs with one stem), the
model (a checkpoint whose weights were partly missing, so newly initialised, is refused: it would print random
text), and the language model. Then multi-file jobs go on past a file that fails: its error is one line on
stderr, naming it, and the exit code is 1 at the end. Results go to stdout (and to files with `--output-dir`);
a progress bar of audio seconds goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from w2vbert.audio.decode import SAMPLING_RATE, audio_seconds
from w2vbert.audio.features import PREPROCESSOR_CONFIG_NAME, feature_extractor_for
from w2vbert.audio.vad import VadOptions
from w2vbert.cli.arguments import (
    UsageError,
    device_name,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from w2vbert.data.manifest import read_manifest
from w2vbert.inference import corpus
from w2vbert.inference.pipelines import AUTO_CHUNK_S, load_task_model, pipeline
from w2vbert.loading import devices
from w2vbert.loading.devices import DTYPE_CHOICES, DTYPE_HELP, max_batch_seconds, rank_device
from w2vbert.loading.hub import resolve_optional_file
from w2vbert.model.auto import model_class_for
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.heads import Wav2Vec2BertForCTC
from w2vbert.model.quantization import QUANTIZE, int8_engine
from w2vbert.text.alignment import align_words
from w2vbert.text.decoding import BeamSearchDecoder
from w2vbert.text.vocab import TOKENIZER_CONFIG_NAME, VOCAB_NAME
from w2vbert.text.writers import (
    EMBEDDING_FORMATS,
    FORMATS,
    format_transcript,
    output_path,
    to_textgrid,
    words_from_chars,
    write_embedding,
    write_labels,
    write_transcript,
)
from w2vbert.utils.files import atomic_output

SUBTITLES = ("srt", "vtt", "tsv")  # formats made of word-timed segments


# ------------------------------------------------------------------------------------------ arguments
def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the arguments of subcommand `name` (cli.COMMANDS) to its parser."""
    if name == "info":
        parser.add_argument("model", nargs="?", help="a model directory or hub repo id")
        parser.add_argument("--system", action="store_true",
                            help="this machine instead: CPU, the instruction sets that decide speed, torch's threads, "
                                 "GPUs, and the mode --dtype auto picks")
        parser.set_defaults(run=run_info)
        return
    if name == "align":
        configure_align(parser)
        return
    if name == "verify":
        configure_verify(parser)
        return
    _common(parser, output_required=name == "embed")
    if name == "transcribe":
        parser.add_argument("--timestamps", choices=["none", "char", "word"], default="none",
                            help="print json with char or word times (json files always carry word times, or char "
                                 "times when asked; srt/vtt/tsv use words)")
        parser.add_argument("-f", "--output-format", choices=[*FORMATS, "all"], default=None,
                            help="txt (default), json, srt, vtt, tsv, or all of them (with --output-dir); without "
                                 "--output-dir the format is printed")
        parser.add_argument("--lm", help="KenLM n-gram (.arpa or .bin) for beam search")
        parser.add_argument("--beam-size", type=positive_int, default=None,
                            help="beam search with this beam (default: greedy; 50 with --lm)")
        parser.add_argument("--lm-weight", type=float, default=0.5, help="weight of the n-gram score (alpha)")
        parser.add_argument("--word-score", type=float, default=1.0, help="score added per word (beta)")
        parser.add_argument("--vad", action="store_true",
                            help="skip non-speech before the model (Silero VAD: pip install 'w2vbert[vad]'); "
                                 "times stay in the recording's time")
        parser.set_defaults(run=run_transcribe)
    elif name == "classify":
        parser.add_argument("--top-k", type=positive_int, default=1, help="labels printed per file (default: 1)")
        parser.add_argument("--frames", action="store_true",
                            help="a frame classifier (finetune --task frames): labelled segments with times, one "
                                 "'file start end label score' line each")
        parser.set_defaults(run=run_classify)
    elif name == "embed":
        parser.add_argument("--layer", type=int, default=-1, help="0 = projected input, k = block k, -1 = last")
        parser.add_argument("--pool", choices=["none", "mean"], default="mean", help="per frame, or the mean")
        parser.add_argument("--format", choices=EMBEDDING_FORMATS, default="npy", dest="file_format")
        parser.add_argument("--stats", action="store_true",
                            help="corpus runs: per-dimension mean and std over all valid frames (stats.safetensors)")
        parser.set_defaults(run=run_embed)


def _common(parser: argparse.ArgumentParser, output_required: bool) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="audio files (any format FFmpeg reads)")
    corpus = parser.add_argument_group("corpus runs (Parquet shards in --output-dir; see w2vbert.inference.corpus)")
    corpus.add_argument("--manifest", type=Path, help="CSV/TSV/JSONL with an audio column (and optionally id)")
    corpus.add_argument("--input-dir", type=Path, help="every audio file below this folder, recursively")
    corpus.add_argument("--num-workers", type=non_negative_int, default=2,
                        help="processes decoding audio and computing features beside the model (default: 2)")
    corpus.add_argument("--shard-size", type=positive_int, default=None,
                        help="inputs per shard (default: 1000; 100 with --pool none)")
    corpus.add_argument("--max-batch-seconds", type=positive_float, default=None,
                        help="padded audio per model batch (default: 160 on a GPU, 30 on a CPU)")
    corpus.add_argument("--overwrite", action="store_true", help="replace another run's outputs in --output-dir")
    parser.add_argument("-m", "--model", required=True, help="model directory or hub repo id")
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    parser.add_argument("--quantize", choices=[q for q in QUANTIZE if q], default=None,
                        help="int8 weights; on CPU the rest of the model in --dtype: float32, or bfloat16 (oneDNN's "
                             "int8 matmul: the fastest CPU mode where bf16 is native); bitsandbytes on CUDA")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="windows run together (default: 4)")
    parser.add_argument("--chunk-length", type=positive_float, default=None, metavar="S",
                        help=f"window length in seconds for long audio (default: {AUTO_CHUNK_S:.0f})")
    parser.add_argument("--stride-length", type=non_negative_float, default=None, metavar="S",
                        help="context on each side of a window (default: chunk / 6)")
    parser.add_argument("-o", "--output-dir", type=Path, default=None, required=output_required,
                        help="write one file per input here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


# ------------------------------------------------------------------------------------- checks first
def prepare_output_dir(path: Path | None) -> None:
    """Create the output directory and prove it writable now, before the first result is computed."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output-dir {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise UsageError(f"--output-dir {path} is not writable: {error.strerror or error}") from None


def check_distinct_outputs(files: list[str], output_dir: Path | None, extensions: Iterable[str]) -> None:
    """Two inputs whose outputs share a name (a/clip.wav and b/clip.wav, s1.wav and s1.mp3) would overwrite each
    other: refused before anything runs."""
    if output_dir is None:
        return
    extension = next(iter(extensions))
    targets = Counter(output_path(f, output_dir, extension) for f in files)
    clashes = sorted(str(t) for t, n in targets.items() if n > 1)
    if clashes:
        owners = [f for f in files if str(output_path(f, output_dir, extension)) == clashes[0]]
        raise UsageError(
            f"{', '.join(owners)} would all be written to {clashes[0]} (one file name per stem): rename them, or run "
            "them into separate --output-dir folders"
        )


@dataclass
class Outcome:
    """Which files of a job worked: (file, result) pairs as they come, failures reported and counted."""

    failed: int = 0

    def results(self, files: list[str], results: Iterator[Any], bar: tqdm) -> Iterator[tuple[str, Any]]:
        for path, result in zip(files, results, strict=True):
            bar.set_postfix_str(Path(path).name, refresh=False)
            if isinstance(result, Exception):
                self.failed += 1
                tqdm.write(f"w2vbert: error: {result}", file=sys.stderr)
            else:
                yield path, result

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def progress_bar(files: list[str], args: argparse.Namespace) -> tqdm:
    """A bar of audio seconds done over the files' total (from their headers: nothing is decoded for it)."""
    total = 0.0
    for path in files:
        try:
            total += audio_seconds(path)
        except (OSError, ValueError):
            pass  # the file will fail in its turn, with its own error
    return tqdm(total=total, unit="s", disable=args.no_progress, file=sys.stderr,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}, {rate_fmt}]{postfix}")


def advance(bar: tqdm) -> Callable[[float], None]:
    """The pipelines' progress callback for `bar`: seconds of audio done (the header's total is not passed, as a
    decoder may give a few samples more than a header announces)."""
    return lambda seconds: bar.update(min(seconds, max(bar.total - bar.n, 0.0)))


# ------------------------------------------------------------------------------------------ commands
def corpus_inputs(args: argparse.Namespace) -> list[corpus.Input] | None:
    """The inputs of a corpus run (--manifest / --input-dir), or None for a run over the files named."""
    if args.manifest is None and args.input_dir is None:
        if not args.files:
            raise UsageError("name audio files, or a --manifest or --input-dir")
        return None
    if args.output_dir is None:
        raise UsageError("a corpus run (--manifest / --input-dir) writes shards: pass --output-dir")
    inputs = []
    if args.manifest is not None:
        inputs += corpus.inputs_from_manifest(args.manifest)
    if args.input_dir is not None:
        inputs += corpus.inputs_from_directory(args.input_dir)
    if args.files:
        inputs += corpus.inputs_from_files(args.files)
    return corpus.check_unique(inputs)


def run_corpus(
    task: str,
    args: argparse.Namespace,
    inputs: list[corpus.Input],
    decoding: str | None = None,
    **pipeline_options: Any,
) -> int:
    """A corpus run of `task`: shards in --output-dir (corpus.py), one summary line; exit 1 when an input failed.
    `decoding` describes a speech recognition run's beam search (None: greedy)."""
    layer, pool = getattr(args, "layer", None), getattr(args, "pool", None)
    pool = None if pool == "none" else pool
    timestamps = getattr(args, "timestamps", "none")
    device = args.device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun each rank runs on its own GPU
        device = str(rank_device(device, int(os.environ.get("LOCAL_RANK", "0"))))
    model = load_task_model(task, args.model, device, args.dtype, args.quantize)
    if task == "feature-extraction":  # as the hidden states count: 0 the input, k block k (-1 and 24 are one run)
        layer = model.base_model.layer_index(layer)
    settings = corpus.BulkSettings(
        task=task, model=str(Path(args.model).resolve()) if Path(args.model).is_dir() else str(args.model),
        dtype=str(model.dtype).removeprefix("torch."), quantize=args.quantize,  # "auto" as resolved here
        layer=layer if task == "feature-extraction" else None, pool=pool if task == "feature-extraction" else None,
        timestamps=None if timestamps == "none" else timestamps, decoding=decoding, top_k=getattr(args, "top_k", 1),
        chunk_length_s=args.chunk_length, stride_length_s=args.stride_length,
        shard_size=args.shard_size or (100 if task == "feature-extraction" and pool is None else 1000),
        max_batch_seconds=args.max_batch_seconds or max_batch_seconds(model.device),
        stats=getattr(args, "stats", False), vad=pipeline_options.get("vad"),
    )
    pipe = pipeline(task, model, feature_extractor=feature_extractor_for(args.model),
                    tokenizer=args.model if task == "automatic-speech-recognition" else None,
                    chunk_length_s=args.chunk_length, stride_length_s=args.stride_length, **pipeline_options)
    summary = corpus.run(pipe, settings, inputs, args.output_dir, num_workers=args.num_workers,
                       overwrite=args.overwrite, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{summary.inputs} inputs ({summary.hours:.2f} h of audio), {summary.failed} failed, "
              f"{summary.shards} shards ({summary.skipped_shards} done before) in {summary.seconds:.1f} s: "
              f"{args.output_dir / corpus.MANIFEST_NAME}", flush=True)
    return 1 if summary.failed else 0


def run_transcribe(args: argparse.Namespace) -> int:
    inputs = corpus_inputs(args)
    if (args.lm_weight != 0.5 or args.word_score != 1.0) and not args.lm:
        raise UsageError("--lm-weight and --word-score weigh a language model: pass --lm")
    decoder = None
    if args.beam_size or args.lm:
        decoder = BeamSearchDecoder(lm=args.lm, beam_size=args.beam_size or 50, lm_weight=args.lm_weight,
                                    word_score=args.word_score, quiet=args.no_progress)
    if inputs is not None:
        decoding = None if decoder is None else (f"beam {args.beam_size or 50}, lm {args.lm}, lm weight "
                                                 f"{args.lm_weight}, word score {args.word_score}")
        return run_corpus("automatic-speech-recognition", args, inputs, decoding=decoding, decoder=decoder,
                          vad=_vad(args))
    fmt = args.output_format or ("json" if args.timestamps != "none" else "txt")
    formats = FORMATS if fmt == "all" else (fmt,)
    if fmt == "all" and args.output_dir is None:
        raise UsageError("-f all writes one file per format: pass --output-dir")
    prepare_output_dir(args.output_dir)
    check_distinct_outputs(args.files, args.output_dir, formats)
    model = load_task_model("automatic-speech-recognition", args.model, args.device, args.dtype, args.quantize)
    pipe = pipeline("automatic-speech-recognition", model, feature_extractor=feature_extractor_for(args.model),
                    tokenizer=args.model, decoder=decoder, batch_size=args.batch_size,
                    chunk_length_s=args.chunk_length, stride_length_s=args.stride_length, vad=_vad(args))
    asked = None if args.timestamps == "none" else args.timestamps
    timestamps = asked or ("word" if any(f in (*SUBTITLES, "json") for f in formats) else None)
    outcome, bar = Outcome(), progress_bar(args.files, args)
    results = pipe.iterate(args.files, return_timestamps=timestamps, progress=advance(bar))
    for path, result in outcome.results(args.files, results, bar):
        documents = {f: format_transcript(_as_asked(result, f, asked), f) for f in formats}
        if args.output_dir is not None:
            for f in formats:
                write_transcript(_as_asked(result, f, asked), path, args.output_dir, f)
            tqdm.write(result["text"] if len(args.files) == 1 else f"{path}\t{result['text']}", file=sys.stdout)
        elif fmt == "txt":
            tqdm.write(result["text"] if len(args.files) == 1 else f"{path}\t{result['text']}", file=sys.stdout)
        elif fmt == "json" and len(args.files) > 1:
            tqdm.write(json.dumps({"file": path} | _as_asked(result, fmt, asked), ensure_ascii=False), file=sys.stdout)
        else:
            header = f"==> {path} <==\n" if len(args.files) > 1 else ""
            tqdm.write(header + documents[fmt].rstrip("\n"), file=sys.stdout)
    bar.close()
    return outcome.exit_code


def _vad(args: argparse.Namespace) -> VadOptions | None:
    """--vad: the detector's defaults (its thresholds are settings of the Python API, VadOptions)."""
    return VadOptions() if args.vad else None


ALIGN_FORMATS = ("json", "srt", "vtt", "tsv", "textgrid")


def configure_align(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="?", help="an audio file (any format FFmpeg reads)")
    parser.add_argument("text", nargs="?", help="its transcript, or a .txt file holding it")
    parser.add_argument("--manifest", type=Path, help="CSV/TSV/JSONL with audio and text columns, instead")
    parser.add_argument("-m", "--model", required=True, help="a CTC model directory or hub repo id")
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    parser.add_argument("--chunk-length", type=positive_float, default=None, metavar="S",
                        help=f"window length in seconds for long audio (default: {AUTO_CHUNK_S:.0f})")
    parser.add_argument("--stride-length", type=non_negative_float, default=None, metavar="S",
                        help="context on each side of a window (default: chunk / 6)")
    parser.add_argument("-f", "--output-format", choices=[*ALIGN_FORMATS, "all"], default="json")
    parser.add_argument("-o", "--output-dir", type=Path, default=None,
                        help="write <stem>.<format> here (default: print the format)")
    parser.set_defaults(run=run_align, quantize=None)


def run_align(args: argparse.Namespace) -> int:
    if args.manifest is not None:
        if args.audio is not None:
            raise UsageError("give an AUDIO and its TEXT, or --manifest, not both")
        jobs = [(str(args.manifest.parent / row["audio"]), row["text"])  # paths relative to the manifest
                for _, row in read_manifest(args.manifest, ("audio", "text"))]
    elif args.audio is None or args.text is None:
        raise UsageError("give an AUDIO file and its TEXT (or a .txt file), or a --manifest with audio and text")
    else:
        text = Path(args.text).read_text(encoding="utf-8") if args.text.endswith(".txt") else args.text
        jobs = [(args.audio, text)]
    formats = ALIGN_FORMATS if args.output_format == "all" else (args.output_format,)
    if len(formats) > 1 and args.output_dir is None:
        raise UsageError("-f all writes one file per format: pass --output-dir")
    prepare_output_dir(args.output_dir)
    check_distinct_outputs([audio for audio, _ in jobs], args.output_dir, formats)
    model = load_task_model("automatic-speech-recognition", args.model, args.device, args.dtype)
    pipe = pipeline("automatic-speech-recognition", model, feature_extractor=feature_extractor_for(args.model),
                    tokenizer=args.model, chunk_length_s=args.chunk_length, stride_length_s=args.stride_length)
    seconds = pipe.frame_samples() / SAMPLING_RATE
    failed = 0
    for audio, text in jobs:
        try:
            log_probs = pipe.log_probs(audio)
            result = {"text": " ".join(text.split())} | align_words(log_probs, text, pipe.tokenizer, seconds)
        except (OSError, ValueError) as error:
            message = str(error)
            print(f"w2vbert: error: {message if message.startswith(str(audio)) else f'{audio}: {message}'}",
                  file=sys.stderr)
            failed += 1
            continue
        if result["unknown"]:
            print(f"w2vbert: warning: {audio}: characters the vocabulary lacks, aligned as its unknown token: "
                  f"{' '.join(result['unknown'])}", file=sys.stderr)
        duration = len(log_probs) * seconds
        for fmt in formats:
            document = alignment_document(result, fmt, duration)
            if args.output_dir is None:
                header = f"==> {audio} <==\n" if len(jobs) > 1 else ""
                print(header + document.rstrip("\n"))
            else:
                with atomic_output(output_path(audio, args.output_dir, fmt)) as temporary:
                    Path(temporary).write_text(document, encoding="utf-8")
    return 1 if failed else 0


def alignment_document(result: dict[str, Any], fmt: str, duration: float) -> str:
    """An alignment as the text of a `fmt` file: json whole, tsv a row per word, srt/vtt subtitles of its words,
    TextGrid a words tier and a characters tier."""
    if fmt == "json":
        return json.dumps(result, ensure_ascii=False, indent=2) + "\n"
    if fmt == "textgrid":
        tiers = {"words": [{"text": w["word"], "start": w["start"], "end": w["end"]} for w in result["words"]],
                 "chars": [{"text": c["char"], "start": c["start"], "end": c["end"]} for c in result["chars"]]}
        return to_textgrid(tiers, duration)
    if fmt == "tsv":  # a row per word, what data preparation reads (start and end in milliseconds, as Whisper's)
        rows = [f"{round(w['start'] * 1000)}\t{round(w['end'] * 1000)}\t{w['word']}" for w in result["words"]]
        return "start\tend\ttext\n" + "".join(row + "\n" for row in rows)
    chunks = [{"text": w["word"], "timestamp": (w["start"], w["end"])} for w in result["words"]]
    return format_transcript({"text": result["text"], "chunks": chunks}, fmt)


def _as_asked(result: dict[str, Any], fmt: str, asked: str | None) -> dict[str, Any]:
    """The result as format `fmt` shows it: json carries word times (character times with --timestamps char),
    whichever other formats are written beside it; subtitles are made of words."""
    if fmt in SUBTITLES and asked == "char":
        return {**result, "chunks": words_from_chars(result["chunks"])}
    return result


def run_classify(args: argparse.Namespace) -> int:
    task = "audio-frame-classification" if args.frames else "audio-classification"
    inputs = corpus_inputs(args)
    if inputs is not None:
        if args.frames:
            raise UsageError("--frames runs over the files named; corpus runs (--manifest, --input-dir) give one "
                             "label per file")
        return run_corpus(task, args, inputs, top_k=args.top_k)
    prepare_output_dir(args.output_dir)
    check_distinct_outputs(args.files, args.output_dir, ["json"])
    model = load_task_model(task, args.model, args.device, args.dtype, args.quantize)
    options = {} if args.frames else {"top_k": args.top_k}
    pipe = pipeline(task, model, feature_extractor=feature_extractor_for(args.model), batch_size=args.batch_size,
                    chunk_length_s=args.chunk_length, stride_length_s=args.stride_length, **options)
    outcome, bar = Outcome(), progress_bar(args.files, args)
    for path, labels in outcome.results(args.files, pipe.iterate(args.files, progress=advance(bar)), bar):
        if args.frames:
            lines = [f"{path}\t{s['start']:.2f}\t{s['end']:.2f}\t{s['label']}\t{s['score']:.4f}" for s in labels]
        else:
            lines = [path + "\t" + "\t".join(f"{item['label']}\t{item['score']:.4f}" for item in labels)]
        tqdm.write("\n".join(lines), file=sys.stdout)
        if args.output_dir is not None:
            write_labels(labels, path, args.output_dir)
    bar.close()
    return outcome.exit_code


def run_embed(args: argparse.Namespace) -> int:
    inputs = corpus_inputs(args)
    if inputs is not None:
        return run_corpus("feature-extraction", args, inputs, layer=args.layer,
                          pool=None if args.pool == "none" else args.pool)
    if args.stats:
        raise UsageError("--stats goes with a corpus run (--manifest or --input-dir)")
    prepare_output_dir(args.output_dir)
    check_distinct_outputs(args.files, args.output_dir, [args.file_format])
    model = load_task_model("feature-extraction", args.model, args.device, args.dtype, args.quantize)
    pipe = pipeline("feature-extraction", model, feature_extractor=feature_extractor_for(args.model), layer=args.layer,
                    pool=args.pool, batch_size=args.batch_size, chunk_length_s=args.chunk_length,
                    stride_length_s=args.stride_length)
    metadata = {"layer": str(args.layer), "pool": args.pool, "model": str(args.model)}
    outcome, bar = Outcome(), progress_bar(args.files, args)
    for path, embedding in outcome.results(args.files, pipe.iterate(args.files, progress=advance(bar)), bar):
        target = write_embedding(embedding, path, args.output_dir, args.file_format, metadata)
        tqdm.write(f"{path}\t{target}\t{tuple(embedding.shape)}", file=sys.stdout)
    bar.close()
    return outcome.exit_code


# --------------------------------------------------------------------------------------------- verify
def configure_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("enroll", help="audio of the known speaker")
    parser.add_argument("test", help="audio to check")
    parser.add_argument("-m", "--model", required=True, help="an x-vector model (finetune --task xvector)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="cosine score from which the two are one speaker (default: the one stored with the "
                             "model, the equal-error point of its last evaluation)")
    parser.add_argument("--device", type=device_name, default=None, help="cpu, cuda, cuda:1")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    parser.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Print `enroll test score decision`: the cosine score of the two x-vectors and, at the threshold, "same" or
    "different" speaker."""
    model = load_task_model("speaker-embedding", args.model, args.device, args.dtype)
    threshold = model.config.verification_threshold if args.threshold is None else args.threshold
    pipe = pipeline("speaker-embedding", model, feature_extractor=feature_extractor_for(args.model))
    enroll, test = (torch.from_numpy(embedding) for embedding in pipe([args.enroll, args.test]))
    score = float(torch.nn.functional.cosine_similarity(enroll, test, dim=0))
    if threshold is None:
        print(f"{args.enroll}\t{args.test}\t{score:.4f}")
        print(f"w2vbert verify: {args.model} stores no threshold: pass --threshold for a decision", file=sys.stderr)
        return 0
    decision = "same" if score >= threshold else "different"
    print(f"{args.enroll}\t{args.test}\t{score:.4f}\t{decision} speaker (threshold {threshold:.4f})")
    return 0


# ----------------------------------------------------------------------------------------------- info
def checkpoint_summary(model: str) -> dict[str, object]:
    """What `w2vbert info` prints, as a dict: built from config.json alone, no weights are read."""
    config = Wav2Vec2BertConfig.from_pretrained(model)
    cls = model_class_for(config)
    with torch.device("meta"):  # shapes only: counting 600M parameters costs no memory
        parameters = cls(config).num_parameters()
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
