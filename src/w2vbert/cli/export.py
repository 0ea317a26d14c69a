"""`w2vbert export`: its arguments, and the export of a model directory from them (export/onnx.py, imported when
the command runs: it loads torch, which `--help` does without).
"""

from __future__ import annotations

import argparse

from w2vbert.cli.arguments import UsageError
from w2vbert.export.names import EXPORT_DTYPE_NAMES, QUANTIZATIONS


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of `w2vbert export`."""
    parser.add_argument("model", help="model directory or hub id (the encoder or any head)")
    parser.add_argument("out", help="output directory: model.onnx, config.json and the processor files")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="the export format (default: onnx)")
    parser.add_argument("--dtype", choices=tuple(EXPORT_DTYPE_NAMES), default="fp32",
                        help="the graph's compute and input dtype (default: fp32)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                        help="int8: dynamic int8 weights for the matrix products (from the fp32 graph)")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from w2vbert.export.onnx import check_destination, export_directory

    try:
        check_destination(args.model, args.out)  # an output the command line names wrongly: bad usage
    except ValueError as error:
        raise UsageError(str(error)) from None
    path = export_directory(args.model, args.out, dtype=args.dtype, quantize=args.quantize)
    print(path)
    return 0
