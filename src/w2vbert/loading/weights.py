"""Weight files (model.safetensors and friends): read and write the Hugging Face layouts, never unpickling code.

Read order: `model.safetensors`, sharded `model.safetensors.index.json`, then `pytorch_model.bin` (and its
sharded index) through `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
Writes are safetensors, each file written under a temporary name and renamed, so a kill mid-write never
leaves a file that loads wrong.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from w2vbert.loading.hub import DEFAULT_HUB, OFFLINE_HINT, HubOptions, resolve_file, resolve_optional_file
from w2vbert.utils.files import atomic_output, atomic_write_text

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
WEIGHTS_NAME = "pytorch_model.bin"
WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of one `.safetensors` or `.bin`/`.pt` file, on CPU. Corrupt files raise `ValueError`."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from None
    state = torch_load_weights_only(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    return state


def torch_load_weights_only(path: str | os.PathLike, allowed_globals: Sequence[type] = ()) -> object:
    """`torch.load` of tensors and plain containers only (plus `allowed_globals`), never code.

    Memory-mapped (tensors are read on use) unless the file predates the zip format mmap needs (torch < 1.6).
    A pickle that asks for another global is refused naming it; a truncated or corrupt file says so.
    """
    path = Path(path)
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as error:
                if "mmap can only be used" not in str(error):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        if found is None:
            raise _not_weights(path) from None
        raise ValueError(
            f"refusing to load {path}: it asks to unpickle {found.group(1)}, which is not a tensor or a plain "
            "container (only weights are read, never code). Convert it to safetensors where you trust its source"
        ) from None
    except FileNotFoundError:
        raise
    except Exception:  # noqa: BLE001 - bytes that are no torch.save file fail anywhere in its reader (KeyError, ...)
        raise _not_weights(path) from None


def _not_weights(path: Path) -> ValueError:
    """The one line for a file torch.load cannot read. torch's own text is left out: several paragraphs, and for
    a pickle it cannot read it advises retrying with weights_only=False, which would run whatever code it holds."""
    return ValueError(f"{path} is not a valid weights file (not a readable PyTorch file: truncated or corrupt?)")


def load_weights(path_or_repo_id: str | os.PathLike, hub: HubOptions = DEFAULT_HUB) -> dict[str, torch.Tensor]:
    """All weights of a model directory or hub repo, in any of the Hugging Face layouts."""
    def resolve(name: str) -> Path | None:
        return resolve_optional_file(path_or_repo_id, name, hub)

    for single, index in ((SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME), (WEIGHTS_NAME, WEIGHTS_INDEX_NAME)):
        path = resolve(single)
        if path is not None:
            return load_weights_file(path)
        index_path = resolve(index)
        if index_path is not None:
            return _load_sharded(index_path, lambda name: resolve_file(path_or_repo_id, name, hub))
    hint = "" if Path(path_or_repo_id).is_dir() else f" (if it is a hub repo: {OFFLINE_HINT})"
    raise FileNotFoundError(
        f"{path_or_repo_id} has no weights: expected {SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME}, "
        f"{WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME}{hint}"
    )


def _load_sharded(index_path: Path, resolve: Callable[[str], Path]) -> dict[str, torch.Tensor]:
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RecursionError) as error:
        raise ValueError(f"{index_path} is not a valid shard index (needs a 'weight_map'): {error}") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ValueError(f"{index_path}: 'weight_map' must map tensor names to shard file names")
    shards = sorted(set(weight_map.values()))
    # A shard is a file next to the index: a name with a folder in it (../../etc/passwd, /abs/path) could make a
    # crafted repo open any file on the machine.
    outside = [shard for shard in shards if shard in ("", ".", "..") or Path(shard).name != shard or "\\" in shard]
    if outside:
        raise ValueError(
            f"{index_path} names shard files outside the model directory: {outside[:4]}; shard names must be plain "
            "file names next to the index"
        )
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(load_weights_file(resolve(shard)))
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise ValueError(f"{index_path} lists tensors that no shard holds: {missing[:10]}")
    return state


def parse_size(size: int | str) -> int:
    """Bytes from 5000000 or "5GB" / "500MB" / "10KiB"."""
    if isinstance(size, int):
        return size
    text = size.strip().upper()
    units = {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def save_weights(
    state_dict: dict[str, torch.Tensor], save_directory: str | os.PathLike, max_shard_size: int | str = "5GB"
) -> list[Path]:
    """Write safetensors (sharded with an index above `max_shard_size`); returns the files written."""
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    state_dict = {name: tensor.detach().contiguous().cpu() for name, tensor in state_dict.items()}
    limit = parse_size(max_shard_size)
    shards: list[dict[str, torch.Tensor]] = [{}]
    shard_bytes = 0
    for name, tensor in state_dict.items():
        size = tensor.numel() * tensor.element_size()
        if shards[-1] and shard_bytes + size > limit:
            shards.append({})
            shard_bytes = 0
        shards[-1][name] = tensor
        shard_bytes += size
    if len(shards) == 1:
        written = [_atomic_save(shards[0], directory / SAFE_WEIGHTS_NAME)]
    else:
        written, weight_map = [], {}
        for number, shard in enumerate(shards, start=1):
            name = f"model-{number:05d}-of-{len(shards):05d}.safetensors"
            written.append(_atomic_save(shard, directory / name))
            weight_map.update(dict.fromkeys(shard, name))
        total = sum(t.numel() * t.element_size() for t in state_dict.values())
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        written.append(atomic_write_text(directory / SAFE_WEIGHTS_INDEX_NAME, json.dumps(index, indent=2) + "\n"))
    # Only now, with the new files in place, remove what an earlier save of another layout left: a stale
    # file would shadow the new ones (a single file is read before an index).
    stale = {SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME}
    stale |= {path.name for path in directory.glob("model-*-of-*.safetensors")}
    for name in stale - {path.name for path in written}:
        (directory / name).unlink(missing_ok=True)
    return written


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path) -> Path:
    with atomic_output(path) as temporary:
        save_file(tensors, temporary, metadata={"format": "pt"})  # transformers requires format=pt
    return path
