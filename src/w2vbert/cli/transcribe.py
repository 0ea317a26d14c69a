"""`w2vbert transcribe` (speech to text with a CTC model) and `w2vbert align` (a known transcript's words and
characters with their times): their arguments and runs.

In order: `configure`, transcribe (`run_transcribe` and how each format shows a result), align (`configure_align`,
`run_align`, `alignment_document`). transcribe runs over files or a corpus as cli/jobs.py describes; align over
an AUDIO and its TEXT, or a manifest of both. What loads torch is imported inside the runs, so that `--help` answers
without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from w2vbert.cli.arguments import (
    UsageError,
    add_files_arguments,
    add_run_options,
    add_vad_option,
    add_window_options,
    positive_int,
)
from w2vbert.data.manifest import read_manifest
from w2vbert.text.writers import (
    FORMATS,
    format_transcript,
    output_path,
    to_textgrid,
    words_from_chars,
    write_transcript,
)
from w2vbert.utils.files import atomic_output

if TYPE_CHECKING:
    from w2vbert.audio.vad import VadOptions

SUBTITLES = ("srt", "vtt", "tsv")  # formats made of word-timed segments
ALIGN_FORMATS = ("json", "srt", "vtt", "tsv", "textgrid")


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `transcribe` or `align` (cli.COMMANDS) to its parser."""
    if name == "align":
        configure_align(parser)
        return
    add_files_arguments(parser, output_required=False)
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
    add_vad_option(parser, "times stay in the recording's time")
    parser.add_argument("--streaming", action="store_true",
                        help="transcribe as the live stream does, chunk by chunk with cached state (a model "
                             "fine-tuned with --streaming; greedy, text only): the text the live WebSocket gives")
    parser.set_defaults(run=run_transcribe)


# ------------------------------------------------------------------------------------------ transcribe
def run_transcribe(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from w2vbert.audio.features import feature_extractor_for
    from w2vbert.cli import jobs
    from w2vbert.inference.pipelines import load_task_model, pipeline
    from w2vbert.text.decoding import BeamSearchDecoder

    inputs = jobs.corpus_inputs(args)
    if (args.lm_weight != 0.5 or args.word_score != 1.0) and not args.lm:
        raise UsageError("--lm-weight and --word-score weigh a language model: pass --lm")
    decoder = None
    if args.beam_size or args.lm:
        decoder = BeamSearchDecoder(lm=args.lm, beam_size=args.beam_size or 50, lm_weight=args.lm_weight,
                                    word_score=args.word_score, quiet=args.no_progress)
    if inputs is not None and args.streaming:
        raise UsageError("--streaming transcribes files: leave out --manifest / corpus inputs")
    if inputs is not None:
        decoding = None if decoder is None else (f"beam {args.beam_size or 50}, lm {args.lm}, lm weight "
                                                 f"{args.lm_weight}, word score {args.word_score}")
        return jobs.run_corpus("automatic-speech-recognition", args, inputs, decoding=decoding, decoder=decoder,
                          vad=_vad(args))
    fmt = args.output_format or ("json" if args.timestamps != "none" else "txt")
    formats = FORMATS if fmt == "all" else (fmt,)
    if fmt == "all" and args.output_dir is None:
        raise UsageError("-f all writes one file per format: pass --output-dir")
    jobs.prepare_output_dir(args.output_dir)
    jobs.check_distinct_outputs(args.files, args.output_dir, formats)
    if args.streaming and (decoder is not None or args.vad or fmt != "txt" or args.timestamps != "none"):
        raise UsageError("--streaming decodes greedily to text: leave out --lm, --beam-size, --vad, --timestamps "
                         "and formats other than txt")
    model = load_task_model("automatic-speech-recognition", args.model, args.device, args.dtype, args.quantize)
    pipe = pipeline("automatic-speech-recognition", model, feature_extractor=feature_extractor_for(args.model),
                    tokenizer=args.model, decoder=decoder, batch_size=args.batch_size,
                    chunk_length_s=args.chunk_length, stride_length_s=args.stride_length, vad=_vad(args))
    if args.streaming:
        return _transcribe_streaming(pipe, args)
    asked = None if args.timestamps == "none" else args.timestamps
    timestamps = asked or ("word" if any(f in (*SUBTITLES, "json") for f in formats) else None)
    outcome, bar = jobs.Outcome(), jobs.progress_bar(args.files, args)
    results = pipe.iterate(args.files, return_timestamps=timestamps, progress=jobs.advance(bar))
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


def _transcribe_streaming(pipe: Any, args: argparse.Namespace) -> int:
    """Each file through the streaming path (inference/streaming.py); a model that cannot stream is refused."""
    from w2vbert.cli import jobs
    from w2vbert.inference.streaming import StreamingTranscription, transcribe_streaming

    try:
        StreamingTranscription(pipe)  # the model and its front end can stream, or the reason they cannot
    except ValueError as error:
        raise UsageError(f"--streaming: {error}") from None

    def results() -> Iterator[Any]:
        for path in args.files:
            try:
                yield {"text": transcribe_streaming(pipe, path)}
            except (OSError, ValueError) as error:
                yield ValueError(f"{path}: {error}")

    outcome, bar = jobs.Outcome(), jobs.progress_bar(args.files, args)
    for path, result in outcome.results(args.files, results(), bar):
        if args.output_dir is not None:
            write_transcript(result, path, args.output_dir, "txt")
        print(result["text"] if len(args.files) == 1 else f"{path}\t{result['text']}")
    bar.close()
    return outcome.exit_code


def _vad(args: argparse.Namespace) -> VadOptions | None:
    """--vad: the detector's defaults (its thresholds are settings of the Python API, VadOptions)."""
    from w2vbert.audio.vad import VadOptions

    return VadOptions() if args.vad else None


def _as_asked(result: dict[str, Any], fmt: str, asked: str | None) -> dict[str, Any]:
    """The result as format `fmt` shows it: json carries word times (character times with --timestamps char),
    whichever other formats are written beside it; subtitles are made of words."""
    if fmt in SUBTITLES and asked == "char":
        return {**result, "chunks": words_from_chars(result["chunks"])}
    return result


# ----------------------------------------------------------------------------------------------- align
def configure_align(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", nargs="?", help="an audio file (any format FFmpeg reads)")
    parser.add_argument("text", nargs="?", help="its transcript, or a .txt file holding it")
    parser.add_argument("--manifest", type=Path, help="CSV/TSV/JSONL with audio and text columns, instead")
    parser.add_argument("-m", "--model", required=True, help="a CTC model directory or hub repo id")
    add_run_options(parser)
    add_window_options(parser)
    parser.add_argument("-f", "--output-format", choices=[*ALIGN_FORMATS, "all"], default="json")
    parser.add_argument("-o", "--output-dir", type=Path, default=None,
                        help="write <stem>.<format> here (default: print the format)")
    parser.set_defaults(run=run_align, quantize=None)


def run_align(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from w2vbert.audio.decode import SAMPLING_RATE
    from w2vbert.audio.features import feature_extractor_for
    from w2vbert.cli import jobs
    from w2vbert.inference.pipelines import load_task_model, pipeline
    from w2vbert.text.alignment import align_words

    pairs = _align_pairs(args)
    formats = ALIGN_FORMATS if args.output_format == "all" else (args.output_format,)
    if len(formats) > 1 and args.output_dir is None:
        raise UsageError("-f all writes one file per format: pass --output-dir")
    jobs.prepare_output_dir(args.output_dir)
    jobs.check_distinct_outputs([audio for audio, _ in pairs], args.output_dir, formats)
    model = load_task_model("automatic-speech-recognition", args.model, args.device, args.dtype)
    pipe = pipeline("automatic-speech-recognition", model, feature_extractor=feature_extractor_for(args.model),
                    tokenizer=args.model, chunk_length_s=args.chunk_length, stride_length_s=args.stride_length)
    seconds = pipe.frame_samples() / SAMPLING_RATE
    failed, bar = 0, jobs.progress_bar([audio for audio, _ in pairs], args)
    for audio, text in pairs:
        try:
            log_probs = pipe.log_probs(audio)
            result = {"text": " ".join(text.split())} | align_words(log_probs, text, pipe.tokenizer, seconds)
        except (OSError, ValueError) as error:
            message = str(error)
            tqdm.write(f"w2vbert: error: {message if message.startswith(str(audio)) else f'{audio}: {message}'}",
                       file=sys.stderr)
            failed += 1
            continue
        if result["unknown"]:
            tqdm.write(f"w2vbert: warning: {audio}: characters the vocabulary lacks, aligned as its unknown token: "
                       f"{' '.join(result['unknown'])}", file=sys.stderr)
        duration = len(log_probs) * seconds
        bar.update(min(duration, max(bar.total - bar.n, 0.0)))
        for fmt in formats:
            document = alignment_document(result, fmt, duration)
            if args.output_dir is None:
                header = f"==> {audio} <==\n" if len(pairs) > 1 else ""
                tqdm.write(header + document.rstrip("\n"), file=sys.stdout)
            else:
                with atomic_output(output_path(audio, args.output_dir, fmt)) as temporary:
                    Path(temporary).write_text(document, encoding="utf-8")
    bar.close()
    return 1 if failed else 0


def _align_pairs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(audio, transcript) pairs: the AUDIO and TEXT named, or a manifest's rows."""
    if args.manifest is not None:
        if args.audio is not None:
            raise UsageError("give an AUDIO and its TEXT, or --manifest, not both")
        return [(str(args.manifest.parent / row["audio"]), row["text"])  # paths relative to the manifest
                for _, row in read_manifest(args.manifest, ("audio", "text"))]
    if args.audio is None or args.text is None:
        raise UsageError("give an AUDIO file and its TEXT (or a .txt file), or a --manifest with audio and text")
    text = Path(args.text).read_text(encoding="utf-8") if args.text.endswith(".txt") else args.text
    return [(args.audio, text)]


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
