"""What the subcommands' command lines share: `UsageError` (a command line that cannot run as given: exit code
2, reported as argparse reports its own), the argument types whose refusals are bad usage too, and the options
defined once for every command that takes them.

In order: `UsageError`, the types (`positive_int` ... `device_name`), then the shared options: `add_run_options`
(--device, --dtype, --no-progress: every command that runs a model over audio), `add_window_options` (how long
audio is cut), `add_files_arguments` (the inputs, model and outputs of transcribe, classify and embed).

Every module here, and every module whose names the options show, is torch-free: each command's `--help` answers
without loading torch. `device_name` reads torch's devices only when a --device is parsed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from w2vbert.inference.names import AUTO_CHUNK_S
from w2vbert.loading.names import DTYPE_CHOICES, DTYPE_HELP
from w2vbert.model.names import FRAME_MS, QUANTIZE


class UsageError(ValueError):
    """A command line that cannot run as given: reported like argparse's own errors, exit code 2."""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def chunk_frames(text: str) -> int:
    """A streaming chunk in milliseconds (a multiple of the 20 ms frame) -> frames."""
    value = int(text)
    if value < FRAME_MS or value % FRAME_MS:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of {FRAME_MS} ms (one frame), got {value}")
    return value // FRAME_MS


def chunk_frames_list(text: str) -> tuple[int, ...]:
    """Comma-separated chunk sizes in milliseconds -> frames each."""
    return tuple(chunk_frames(part) for part in text.split(","))


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def device_name(text: str) -> str:
    """A device that exists on this machine (checked while parsing: a wrong one is bad usage, exit 2). The text
    is what the command passes on: the load decides the device from it, once (`model.loader.Placement`)."""
    from w2vbert.loading.devices import resolve_device  # torch: loaded only when a --device is parsed

    try:
        resolve_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


# ------------------------------------------------------------------------------------------ shared options
def add_run_options(parser: argparse.ArgumentParser, *, dtype: bool = True, progress: bool = True) -> None:
    """The options of every command that runs a model over audio: where it runs (--device), in which dtype
    (--dtype; training has --precision instead) and, for work that takes a while, --no-progress."""
    parser.add_argument("--device", type=device_name, default=None,
                        help="cpu, cuda, cuda:1 (default: cuda when available; under torchrun, each rank's GPU)")
    if dtype:
        parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def add_window_options(parser: argparse.ArgumentParser) -> None:
    """--chunk-length and --stride-length: how long audio is cut into windows."""
    parser.add_argument("--chunk-length", type=positive_float, default=None, metavar="S",
                        help=f"window length in seconds for long audio (default: {AUTO_CHUNK_S:.0f})")
    parser.add_argument("--stride-length", type=non_negative_float, default=None, metavar="S",
                        help="context on each side of a window (default: chunk / 6)")


def add_vad_option(parser: argparse.ArgumentParser, what: str) -> None:
    """--vad: skip non-speech before the model; `what` ends the help with what it means for this command."""
    parser.add_argument("--vad", action="store_true",
                        help="skip non-speech before the model (Silero VAD, the vad extra: pip install "
                             f"'w2vbert[vad]', or '.[vad]' in a clone); {what}")


def add_files_arguments(parser: argparse.ArgumentParser, output_required: bool) -> None:
    """The arguments transcribe, classify and embed share, before their own: the files or a corpus, the model and
    how it runs, the output (`output_required`: embed writes files only). Their runs are cli/jobs.py's."""
    parser.add_argument("files", nargs="*", metavar="FILE", help="audio files (any format FFmpeg reads)")
    runs = parser.add_argument_group("corpus runs (Parquet shards in --output-dir; see w2vbert.inference.corpus)")
    runs.add_argument("--manifest", type=Path, help="CSV/TSV/JSONL with an audio column (and optionally id)")
    runs.add_argument("--input-dir", type=Path, help="every audio file below this folder, recursively")
    runs.add_argument("--num-workers", type=non_negative_int, default=2,
                      help="processes decoding audio and computing features beside the model (default: 2)")
    runs.add_argument("--shard-size", type=positive_int, default=None,
                      help="inputs per shard (default: 1000; 100 with --pool none)")
    runs.add_argument("--max-batch-seconds", type=positive_float, default=None,
                      help="padded audio per model batch (default: 160 on a GPU, 30 on a CPU)")
    runs.add_argument("--overwrite", action="store_true", help="replace another run's outputs in --output-dir")
    parser.add_argument("-m", "--model", required=True, help="model directory or hub repo id")
    add_run_options(parser)
    parser.add_argument("--quantize", choices=[q for q in QUANTIZE if q], default=None,
                        help="int8 weights; on CPU the rest of the model in --dtype: float32, or bfloat16 (oneDNN's "
                             "int8 matmul: the fastest CPU mode where bf16 is native); bitsandbytes on CUDA")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="windows run together (default: 4)")
    add_window_options(parser)
    parser.add_argument("-o", "--output-dir", type=Path, default=None, required=output_required,
                        help="write one file per input here")
