"""Small file helpers every writer and reader of the package shares: atomic outputs and JSON objects.

- `atomic_output(path)`: a temporary name beside `path`, unique to this writer, renamed onto `path` when the
  block ends without error. The rename is the commit: readers see the old file or the new one, never a mix, and
  two processes writing the same file never share a temporary name. The file gets the mode `open()` would give
  it (0o666 less the umask), and a failed write is an OSError naming `path` (`write_error`).
- `atomic_write_text(path, text)`: the same for a text file.
- `new_directory_beside(path)`: the same for a folder assembled whole, then renamed onto `path` by its caller.
- `write_error(path, error)`: the OSError that says which file or folder could not be written, and that the disk
  is full when it is.
- `read_json_object(path)`: a JSON file that must hold an object, with errors that name the file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

DISK_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up"}


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path in `path`'s folder; on success it replaces `path`, on error it is removed.
    What the block's writer raises (an OSError, or safetensors' own error) comes out as `write_error(path, ...)`."""
    path = Path(path)
    try:
        temporary = _new_temporary(path)
        mode = stat.S_IMODE(temporary.stat().st_mode)  # 0o666 less the umask, read without changing the umask
    except OSError as error:
        raise write_error(path, error) from error
    try:
        yield temporary
        os.chmod(temporary, mode)  # the writer may have put a file of its own there (safetensors: 0o600)
        os.replace(temporary, path)
    except (OSError, SafetensorError) as error:
        raise write_error(path, error) from error
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


def write_error(path: str | os.PathLike, error: OSError | SafetensorError) -> OSError:
    """An OSError (errno kept) saying that `path` could not be written and why, in words a user acts on: a full
    disk is named as such. The error of a write names no file (`[Errno 28] No space left on device`), and pyarrow's
    and safetensors' name only the temporary."""
    number = error.errno if isinstance(error, OSError) else _rust_errno(str(error))
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    if number in DISK_FULL:
        reason = f"{DISK_FULL[number]} ({os.strerror(number)})"
    written = OSError(f"cannot write {path}: {reason}")
    written.errno = number
    return written


def _rust_errno(message: str) -> int | None:
    """The errno in the text of an error from Rust (safetensors): "... No space left on device (os error 28)"."""
    found = re.search(r"\(os error (\d+)\)", message)
    return int(found.group(1)) if found else None


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
