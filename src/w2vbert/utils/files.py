"""Small file helpers every writer and reader of the package shares: atomic outputs and JSON objects.

- `atomic_output(path)`: a temporary name beside `path`, unique to this writer, renamed onto `path` when the
  block ends without error. The rename is the commit: readers see the old file or the new one, never a mix, and
  two processes writing the same file never share a temporary name.
- `atomic_write_text(path, text)`: the same for a text file.
- `read_json_object(path)`: a JSON file that must hold an object, with errors that name the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path in `path`'s folder; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a UTF-8 text file under a temporary name of its own, then rename it into place."""
    path = Path(path)
    with atomic_output(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def read_json_object(path: str | os.PathLike) -> dict[str, Any]:
    """The object a JSON file holds (config.json and friends); errors name the file and what is wrong."""
    path = Path(path)
    try:
        values = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text (byte {error.start}: {error.reason}), expected JSON") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise ValueError(f"{path} nests JSON arrays or objects too deeply to read (over ~1000 levels)") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(values).__name__}")
    return values
