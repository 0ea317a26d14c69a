"""Small file helpers every writer and reader of the package shares: atomic outputs and JSON objects.

- `atomic_output(path)`: a temporary name beside `path`, unique to this writer, renamed onto `path` when the
  block ends without error. The rename is the commit: readers see the old file or the new one, never a mix, and
  two processes writing the same file never share a temporary name. The file gets the mode `open()` would give
  it (0o666 less the umask).
- `atomic_write_text(path, text)`: the same for a text file.
- `new_directory_beside(path)`: the same for a folder assembled whole, then renamed onto `path` by its caller.
- `read_json_object(path)`: a JSON file that must hold an object, with errors that name the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path in `path`'s folder; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    temporary = _new_temporary(path)
    mode = stat.S_IMODE(temporary.stat().st_mode)  # 0o666 less the umask, read without changing the umask
    try:
        yield temporary
        os.chmod(temporary, mode)  # the writer may have put a file of its own there (safetensors: 0o600)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _new_temporary(path: Path) -> Path:
    """An empty file beside `path` under a name no other writer holds, created as `open()` creates a file: mode
    0o666 less the umask (`tempfile.mkstemp` makes 0o600, which the rename would hand on to every output)."""
    return _fresh_sibling(path, lambda name: os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))


def new_directory_beside(path: str | os.PathLike) -> Path:
    """An empty folder beside `path` under a name no other writer holds, made as `mkdir` makes one (0o777 less the
    umask): a folder assembled there and renamed onto `path` is what `mkdir` would have made there
    (`tempfile.mkdtemp` makes 0o700)."""
    return _fresh_sibling(Path(path), os.mkdir)


def _fresh_sibling(path: Path, create: Callable[[Path], object]) -> Path:
    """`.NAME.<random>.tmp` beside `path`, made by `create`, which fails if the name exists (taken: another one)."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            create(temporary)
        except FileExistsError:
            continue
        return temporary


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
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(values).__name__}")
    return values
