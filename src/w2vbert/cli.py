"""The `w2vbert` command line (also `python -m w2vbert`).

Exit codes a script can rely on: 0 success, 1 a job failed (for multi-file jobs: at least one file failed,
the others were still processed), 2 bad usage, 130 interrupted. Errors print one line on stderr:
`w2vbert: error: <file>: <problem>`.

Each command lives with the code it drives: a module that owns a job exposes `add_parser(subparsers)`, which
registers its subcommand and sets `run=<function(args) -> exit code>`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import __version__

# Modules that contribute subcommands, in the order `--help` lists them.
COMMAND_MODULES = ["commands", "finetune", "convert"]

logger = logging.getLogger("w2vbert")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="w2vbert",
        description="Wav2Vec2-BERT / W2v-BERT 2.0: transcribe, classify, embed, fine-tune, convert.",
    )
    parser.add_argument("--version", action="version", version=f"w2vbert {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log loading details and warnings")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f".{name}", __package__)
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="w2vbert: %(levelname)s: %(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("w2vbert: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, ImportError, NotImplementedError, RuntimeError) as error:
        if args.verbose:
            logger.exception("failed")
        print(f"w2vbert: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
