"""A fingerprint of a model's weights: how a corpus run resumed days later knows that the weights in place are still
the ones its finished shards came from, without reading gigabytes at each start.

`weights_fingerprint(path_or_repo_id)` -> {file name: digest} for the files `load_weights` reads (its order of
layouts), each digest taken from a few KiB of the file:

- safetensors: the header (names, dtypes, shapes, offsets) and the first 4 KiB of every tensor. The header alone
  would miss the common case, a model trained further and saved in place, whose header is the same byte for byte;
  a tensor trained at all changes in its first bytes. What it cannot see: a few values edited past a tensor's
  first 4 KiB, by hand, in place (hashing whole files would, at seconds per gigabyte on every start).
- PyTorch zip files (.bin/.pt since torch 1.6): the size, the first and last MiB, and the zip's directory, which
  holds the CRC-32 of every tensor storage as torch wrote it: the whole content, read without unpickling anything.
- older PyTorch files: the size and the first and last MiB.

Nothing depends on modification times: a copy or a `touch` of the same weights is the same model.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from w2vbert.loading.hub import HubOptions, resolve_file, resolve_optional_file
from w2vbert.loading.weights import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

TENSOR_PREFIX = 4096  # bytes of each safetensors tensor read
PYTORCH_ENDS = 2**20  # bytes read at each end of a PyTorch file
CACHED = HubOptions(local_files_only=True)  # a hub model was just loaded: its files are in the cache


def weights_fingerprint(path_or_repo_id: str | os.PathLike) -> dict[str, str]:
    """{file name: sha256 of its sampled bytes} of the weight files `load_weights` would read from a model
    directory or a hub repo in the local cache (or of a checkpoint file named itself); {} when there are none."""
    if Path(path_or_repo_id).is_file():  # a fairseq2 checkpoint, loaded as `from_pretrained` of a .pt file does
        return {Path(path_or_repo_id).name: file_fingerprint(Path(path_or_repo_id))}
    try:
        for single, index in ((SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME), (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)):
            path = resolve_optional_file(path_or_repo_id, single, CACHED)
            if path is not None:
                return {single: file_fingerprint(path)}
            index_path = resolve_optional_file(path_or_repo_id, index, CACHED)
            if index_path is not None:
                shards = sorted(set(json.loads(index_path.read_text(encoding="utf-8"))["weight_map"].values()))
                return {index: file_fingerprint(index_path)} | {
                    shard: file_fingerprint(resolve_file(path_or_repo_id, shard, CACHED)) for shard in shards}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # not a model directory or a cached repo, or a layout the load refuses anyway
    return {}


def file_fingerprint(path: Path) -> str:
    """The sha256 of a weight file's sampled bytes (the module docstring says which), or of a small file whole."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        if path.suffix == ".safetensors":
            pieces = _safetensors_sample(f)
        elif path.suffix == ".json":
            pieces = iter([f.read()])
        else:
            pieces = _pytorch_sample(f, path)
        for piece in pieces:
            digest.update(piece)
    return digest.hexdigest()


def _safetensors_sample(f: BinaryIO) -> Iterator[bytes]:
    """The header, then the first TENSOR_PREFIX bytes of each tensor (data offsets count from the header's end)."""
    (length,) = struct.unpack("<Q", f.read(8))  # the header's size, little-endian u64
    header = f.read(length)
    yield header
    spans = [entry["data_offsets"] for name, entry in json.loads(header).items() if name != "__metadata__"]
    for start, end in sorted(spans):
        f.seek(8 + length + start)
        yield f.read(min(end - start, TENSOR_PREFIX))


def _pytorch_sample(f: BinaryIO, path: Path) -> Iterator[bytes]:
    """The size, both ends, and a zip's directory of entries with their CRC-32s."""
    size = os.fstat(f.fileno()).st_size
    yield str(size).encode()
    yield f.read(PYTORCH_ENDS)
    f.seek(max(size - PYTORCH_ENDS, 0))
    yield f.read(PYTORCH_ENDS)
    if zipfile.is_zipfile(f):
        with zipfile.ZipFile(f) as archive:
            yield "".join(f"{i.filename}\t{i.CRC}\t{i.file_size}\n" for i in archive.infolist()).encode()
