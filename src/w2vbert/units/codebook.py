"""A codebook: the centroids units are the indices of, the normalisation frames get before, and a card of where it
came from; how frames become units and units their run-length form.

    codebook/                   what `units fit` (and `Codebook.save`) writes
        centroids.safetensors   centroids (k, dim) float32; mean and std (dim,) when frames are normalised first
        codebook.json           the card: model, layer, normalisation, k, frames, inertia, seed, ...

`load_codebook` reads that folder (or its safetensors file alone), and a `.npy` of (k, dim) centroids, the layout
SeamlessM4T's unit extractor ships (`np.load(allow_pickle=False)`). A pickled scikit-learn / joblib model is refused
with the one line that converts it where its source is trusted: loading a pickle runs code.

In order: the names, `Codebook`, `load_codebook`, `run_lengths`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from w2vbert.units.kmeans import assign
from w2vbert.utils.files import atomic_output, atomic_write_text, read_json_object

CENTROIDS_NAME = "centroids.safetensors"
CARD_NAME = "codebook.json"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
INT16_UNITS = 32767  # up to this many units, ids fit an int16
STD_FLOOR = 1e-5  # a dimension constant over the corpus is divided by this, not by 0


@dataclass
class Codebook:
    """k centroids of `dim` dimensions, in the space of (frames - mean) / std when `mean` is set."""

    centroids: torch.Tensor  # (k, dim) float32
    mean: torch.Tensor | None = None  # (dim,) per-dimension statistics of the layer (embed --stats)
    std: torch.Tensor | None = None  # (dim,)
    card: dict[str, Any] = field(default_factory=dict)  # model, layer, normalisation, k, frames, inertia, seed

    def __post_init__(self) -> None:
        if self.centroids.ndim != 2 or self.centroids.shape[0] < 1:
            raise ValueError(f"expected centroids of shape (k, dim), got {tuple(self.centroids.shape)}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("a codebook's normalisation needs both mean and std, or neither")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (self.dim,):
                raise ValueError(f"the codebook's {name} has shape {tuple(value.shape)}, its centroids ({self.k}, "
                                 f"{self.dim}): expected ({self.dim},)")
        if not bool(torch.isfinite(self.centroids).all()):
            raise ValueError("the codebook's centroids hold NaN or infinite values")

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def layer(self) -> int | None:
        """The layer the codebook was fitted on (its card's), None when unknown (a `.npy`)."""
        layer = self.card.get("layer")
        return None if layer is None else int(layer)

    @property
    def unit_dtype(self) -> np.dtype:
        """int16 when every id fits, else int32."""
        return np.dtype(np.int16 if self.k <= INT16_UNITS else np.int32)

    def to(self, device: torch.device | str) -> Codebook:
        move = lambda t: None if t is None else t.to(device=device, dtype=torch.float32)
        return Codebook(move(self.centroids), move(self.mean), move(self.std), dict(self.card))

    def check_dim(self, dim: int, what: str) -> None:
        """A ValueError when frames of `dim` dimensions (from `what`) cannot be compared with the centroids."""
        if dim != self.dim:
            raise ValueError(f"the codebook's centroids have {self.dim} dimensions but {what} gives {dim}: was the "
                             "codebook fitted on another model or layer?")

    def normalized(self, frames: torch.Tensor) -> torch.Tensor:
        """(frames, dim) in the centroids' space: (frames - mean) / std, or as they are."""
        frames = frames.float()
        if self.mean is None:
            return frames
        return (frames - self.mean) / self.std.clamp_min(STD_FLOOR)

    def units(self, frames: torch.Tensor) -> torch.Tensor:
        """(frames, dim) hidden states -> (frames,) int64 unit ids, on the centroids' device."""
        self.check_dim(frames.shape[-1], "the frames")
        return assign(self.normalized(frames.to(self.centroids.device)), self.centroids)[0]

    def digest(self) -> str:
        """A SHA-256 of the centroids and normalisation: what a corpus run records to tell a changed codebook."""
        hasher = hashlib.sha256()
        for tensor in (self.centroids, self.mean, self.std):
            if tensor is not None:
                hasher.update(tensor.float().contiguous().cpu().numpy().tobytes())
        return hasher.hexdigest()

    def save(self, directory: str | os.PathLike) -> Path:
        """Write `centroids.safetensors` and `codebook.json` into `directory` (made if missing); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"centroids": self.centroids.float().contiguous().cpu()}
        if self.mean is not None:
            tensors |= {"mean": self.mean.float().contiguous().cpu(), "std": self.std.float().contiguous().cpu()}
        with atomic_output(directory / CENTROIDS_NAME) as temporary:
            save_file(tensors, temporary, metadata={"format": "w2vbert-codebook"})
        card = {"k": self.k, "dim": self.dim, "normalised": self.mean is not None} | self.card
        atomic_write_text(directory / CARD_NAME, json.dumps(card, indent=2) + "\n")
        return directory


def load_codebook(path: str | os.PathLike) -> Codebook:
    """A codebook from a folder `Codebook.save` wrote, its `centroids.safetensors`, or a `.npy` of (k, dim)
    centroids. Pickled models are refused with the line that converts them."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(
            f"{path}: a pickled k-means model is not loaded (unpickling runs whatever code the file holds); convert "
            "it once, where you trust the file: python -c \"import joblib, numpy; numpy.save('centroids.npy', "
            f"joblib.load('{path}').cluster_centers_)\" and pass centroids.npy"
        )
    if path.is_dir():
        card = read_json_object(path / CARD_NAME) if (path / CARD_NAME).is_file() else {}
        return _from_safetensors(path / CENTROIDS_NAME, card)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such codebook (a folder of {CARD_NAME} and {CENTROIDS_NAME}, a "
                                ".safetensors or a .npy)")
    if path.suffix.lower() == ".npy":
        try:
            centroids = np.load(path, allow_pickle=False)
        except ValueError as error:  # an object array: a pickle inside the .npy
            raise ValueError(f"{path}: expected a .npy of float centroids (k, dim), got what needs unpickling "
                             f"({error})") from None
        if centroids.ndim != 2 or not np.issubdtype(centroids.dtype, np.floating):
            raise ValueError(f"{path}: expected float centroids of shape (k, dim), got {centroids.dtype} "
                             f"{centroids.shape}")
        return Codebook(torch.from_numpy(centroids.astype(np.float32)), card={"source": str(path)})
    if path.suffix.lower() == ".safetensors":
        card_path = path.parent / CARD_NAME
        return _from_safetensors(path, read_json_object(card_path) if card_path.is_file() else {})
    raise ValueError(f"{path}: expected a codebook folder, a .safetensors or a .npy of centroids, got a "
                     f"{path.suffix or 'file without a suffix'}")


def _from_safetensors(path: Path, card: dict[str, Any]) -> Codebook:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file: is {path.parent} a codebook folder (w2vbert units fit)?")
    tensors = load_file(path)
    if "centroids" not in tensors:
        raise ValueError(f"{path}: expected a 'centroids' tensor, got {sorted(tensors)}")
    return Codebook(tensors["centroids"].float(), tensors.get("mean"), tensors.get("std"), card)


def run_lengths(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of one unit as (unit, frames it lasts): [5, 5, 5, 2, 5] -> ([5, 2, 5], [3, 1, 1]), in `units`' dtype
    and int32."""
    units = np.asarray(units)
    if len(units) == 0:
        return units, np.zeros(0, np.int32)
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])  # where each run begins
    return units[starts], np.diff(np.r_[starts, len(units)]).astype(np.int32)
