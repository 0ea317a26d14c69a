"""Manifests: the list of a corpus's recordings (and their transcripts or labels) as CSV, TSV or JSON lines.

Read by training (`training.datasets`) and by corpus runs (`inference.corpus`) alike. A manifest has one clip per
row; `read_manifest` yields each row with its "file:line" so that every later error can name where it came from.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

MANIFEST_FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".json": None}
FIELD_SIZE_CAP = 2**31 - 1  # the largest limit csv takes everywhere (a C long; 32 bits on Windows)
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".aac", ".wma")  # a directory's audio


def read_manifest(path: str | os.PathLike, columns: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    """Rows of a CSV/TSV/JSONL manifest as ("file:line", row), checking the header holds `columns`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MANIFEST_FORMATS:
        raise ValueError(
            f"{path}: manifest must end in one of {sorted(MANIFEST_FORMATS)}, got {suffix or 'no suffix'!r}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text ({error.reason} at byte {error.start}): save the manifest "
                         "as UTF-8") from None
    with io.StringIO(text, newline="") as f:
        if MANIFEST_FORMATS[suffix] is None:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{number}: not a JSON object: {error}") from None
                if not isinstance(row, dict):
                    raise ValueError(f"{path}:{number}: expected a JSON object per line, got {type(row).__name__}")
                _check_columns(path, columns, list(row), f"line {number}")
                yield f"{path}:{number}", {k: "" if v is None else str(v) for k, v in row.items()}
            return
        # No field is longer than the file: the csv module's cap (131,072 characters; the process's, so raised and
        # never lowered here) would refuse a long transcript.
        csv.field_size_limit(max(csv.field_size_limit(), min(len(text), FIELD_SIZE_CAP)))
        reader = csv.DictReader(f, delimiter=MANIFEST_FORMATS[suffix])
        try:
            _check_columns(path, columns, reader.fieldnames or [], "header")
            for row in reader:  # reader.line_num counts the header, so it is the file's line number
                yield f"{path}:{reader.line_num}", {k: v or "" for k, v in row.items() if k is not None}
        except csv.Error as error:  # raised before the line it was reading is counted
            raise ValueError(f"{path}:{reader.line_num + 1}: not a {suffix[1:].upper()} row: {error}") from None


def _check_columns(path: Path, expected: Sequence[str], found: Sequence[str], where: str) -> None:
    missing = [c for c in expected if c not in found]
    if missing:
        raise ValueError(
            f"{path}: {where} lacks column(s) {missing}: expected {list(expected)}, found {list(found)} "
            "(rename the columns, or pass --audio-column / --text-column / --label-column)"
        )
