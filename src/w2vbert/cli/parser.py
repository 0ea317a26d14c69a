"""The `w2vbert` command line (also `python -m w2vbert`).

Exit codes a script can rely on: 0 success, 1 a job failed (for multi-file jobs: at least one file failed,
the others were still processed), 2 bad usage, 130 interrupted. Errors print one line on stderr:
`w2vbert: error: <file>: <problem>`.

`COMMANDS` lists each subcommand with the module that runs it. Only the module of the command being run is
imported (`configure(name, parser)` adds its arguments and sets `run=<function(args) -> exit code>`), and it
imports torch only in its run function, so `w2vbert --help`, `--version` and every `w2vbert COMMAND --help` answer
without loading torch. A missing optional dependency (`utils.extras.MissingExtra`) is a failed job's one line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from w2vbert import __version__
from w2vbert.cli.arguments import UsageError

# name -> (module that runs it, one-line help), in the order `--help` lists them.
COMMANDS = {
    "transcribe": ("w2vbert.cli.transcribe", "speech to text with a CTC model"),
    "align": ("w2vbert.cli.transcribe", "forced alignment of a known transcript: words and characters with times"),
    "classify": ("w2vbert.cli.classify", "one label per file, or labelled segments with a frame classifier (--frames)"),
    "embed": ("w2vbert.cli.embed", "hidden states of one layer, per frame or mean-pooled"),
    "verify": (
        "w2vbert.cli.embed",
        "speaker verification: the cosine score of two files' x-vectors, and a decision",
    ),
    "units": (
        "w2vbert.cli.units",
        "speech units: fit a k-means codebook on one layer over a corpus (fit), unit ids per file (extract)",
    ),
    "info": ("w2vbert.cli.info", "summarise a checkpoint: class, sizes, parameters, processor files"),
    "finetune": (
        "w2vbert.cli.train",
        "fine-tune a checkpoint: speech recognition (CTC), clip or frame labels, x-vectors",
    ),
    "pretrain": ("w2vbert.cli.train", "continue the w2v-BERT self-supervised pre-training on unlabeled audio"),
    "serve": (
        "w2vbert.cli.serve",
        "serve a model over HTTP: OpenAI's transcription API, live transcription, a web page",
    ),
    "export": (
        "w2vbert.cli.export",
        "export a model (the encoder or any head) to ONNX for ONNX Runtime: fp32, fp16 or int8",
    ),
    "convert": (
        "w2vbert.cli.convert",
        "convert Meta's fairseq2 conformer_shaw.pt (or a SeamlessM4T v2 .pt) to a model directory",
    ),
}

logger = logging.getLogger("w2vbert")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; `command` (the subcommand about to run) gets its arguments, the others only their help line.
    None configures every subcommand (what a test or a full `--help` of each command needs)."""
    parser = argparse.ArgumentParser(
        prog="w2vbert",
        description="Wav2Vec2-BERT / W2v-BERT 2.0: transcribe, classify, embed, fine-tune, convert.",
    )
    parser.add_argument("--version", action="version", version=f"w2vbert {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log loading details and warnings")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        subparser = subparsers.add_parser(name, help=help_text, description=help_text)
        if command is None or name == command:
            importlib.import_module(module).configure(name, subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="w2vbert: %(levelname)s: %(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("w2vbert: interrupted", file=sys.stderr)
        return 130
    except UsageError as error:
        print(f"w2vbert {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError, ImportError, NotImplementedError, RuntimeError) as error:
        if args.verbose:
            logger.exception("failed")
        print(f"w2vbert: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
