"""What the subcommands' command lines share: `UsageError` (a command line that cannot run as given: exit code
2, reported as argparse reports its own) and the argument types whose refusals are bad usage too.

Imported by cli/parser.py before any subcommand's module, so it imports nothing heavy at the top: `device_name` reads
torch's devices only when a command with --device is parsed.
"""

from __future__ import annotations

import argparse


class UsageError(ValueError):
    """A command line that cannot run as given: reported like argparse's own errors, exit code 2."""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


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
    from w2vbert.loading.devices import (
        resolve_device,  # torch: loaded only when a --device is parsed (see the module map)
    )

    try:
        resolve_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text
