"""A run directory: its checkpoints, how each is published whole, the lock that keeps it to one run, and the state
besides tensors that a resumed run needs (`TrainerState`, every RNG).

In order: the file names of a checkpoint, `TrainerState` and its file (`write_trainer_state`, the check of each
field `STATE_FIELDS`, `read_trainer_state`), the random generators (`seed_everything`, `rng_state`,
`set_rng_state`, `rng_file`), then the directory itself: `find_checkpoint`, `publish_directory`, `run_lock`.

Contract: a checkpoint is a folder written whole under a temporary name and published by an atomic swap of the
symbolic link that names it, so `last` and `best` name a complete checkpoint at every moment; the trainer state
file is written last, so a folder without it is never taken for a checkpoint. RNG states hold tensors and plain
values only, which `torch.load(weights_only=True)` reads.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import torch

from w2vbert.training.config import TrainingConfig
from w2vbert.training.distributed import Distributed

TRAINER_STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
LOCK_NAME = ".lock"
LORA_STATE_NAME = "lora_state.safetensors"  # a LoRA run's adapted layers as they train (lora_training_state)


@dataclass
class TrainerState:
    """What, besides tensors, a resumed run needs to continue exactly where the last checkpoint was."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # global batches of `epoch` consumed
    best_metric: float | None = None  # the task scorer's score (WER, -accuracy, EER, the loss): lower is better
    best_step: int | None = None
    audio_seconds: float = 0.0  # trained on, all ranks
    history: list[dict[str, Any]] = field(default_factory=list)  # evaluation results
    bad_examples: dict[str, int] = field(default_factory=dict)  # left out while training, by kind (all ranks)


def write_trainer_state(folder: Path, state: TrainerState, world_size: int, config: TrainingConfig) -> None:
    """`folder/trainer_state.json`: the state, the number of processes it is for, and the run's config."""
    saved = asdict(state) | {"world_size": world_size, "config": asdict(config)}
    (folder / TRAINER_STATE_NAME).write_text(json.dumps(saved, indent=2) + "\n")


def _count(value: Any, minimum: int = 0) -> bool:
    """A whole number (not a bool, which JSON keeps apart) of at least `minimum`."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


DAMAGED = ": the checkpoint is damaged; resume from another one, or start the run again in another folder"
REQUIRED_FIELDS = ("step", "world_size")  # the others have defaults a checkpoint of an older version may lack
STATE_FIELDS = {  # field of trainer_state.json -> (check, what it must be)
    "step": (_count, "a whole number >= 0"),
    "epoch": (_count, "a whole number >= 0"),
    "batches_in_epoch": (_count, "a whole number >= 0"),
    "best_metric": (lambda v: v is None or _finite(v), "a finite number or null"),
    "best_step": (lambda v: v is None or _count(v), "a whole number >= 0 or null"),
    "audio_seconds": (lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "history": (lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v), "a list of objects"),
    "bad_examples": (lambda v: isinstance(v, dict) and all(_count(n) for n in v.values()),
                     "an object of whole numbers >= 0"),
    "world_size": (lambda v: _count(v, 1), "a whole number >= 1"),
}


def read_trainer_state(checkpoint: Path, world_size: int) -> TrainerState:
    """The `TrainerState` of a checkpoint, which must have been written by `world_size` processes.

    The file is checked field by field (`STATE_FIELDS`) before anything is taken from it: a damaged or edited file is
    refused with one line naming it and the field, never half taken (a negative step would skip the schedule)."""
    path = checkpoint / TRAINER_STATE_NAME
    try:
        saved = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a JSON trainer state ({error}){DAMAGED}") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: expected a JSON object of trainer state fields, got {type(saved).__name__}{DAMAGED}")
    for name in REQUIRED_FIELDS:
        if name not in saved:
            raise ValueError(f"{path}: field {name!r} is missing{DAMAGED}")
    for name, (valid, expected) in STATE_FIELDS.items():
        if name in saved and not valid(saved[name]):
            shown = repr(saved[name])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."  # a damaged list may be long: one line
            raise ValueError(f"{path}: field {name!r} must be {expected}, got {shown}{DAMAGED}")
    if saved["world_size"] != world_size:
        raise ValueError(
            f"{checkpoint} was written by {saved['world_size']} process(es), this run has "
            f"{world_size}: resume with the same number (the data position and RNG are per rank)"
        )
    known = set(TrainerState.__dataclass_fields__)
    return TrainerState(**{k: v for k, v in saved.items() if k in known})


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every random generator's state, as tensors and plain values (what `torch.load(weights_only=True)` reads)."""
    name, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def rng_file(folder: Path, rank: int) -> Path:
    """Where a checkpoint keeps the RNG state of process `rank`."""
    return folder / f"rng_state_{rank}.pt"


def find_checkpoint(output_dir: str | os.PathLike, name: str = "last") -> Path | None:
    """The complete checkpoint `name` of a run directory (a folder holding trainer_state.json), or None.

    A run written before checkpoints were published by link may have left `name.old` after a kill between its
    two renames; it is taken when `name` itself is absent.
    """
    for candidate in (Path(output_dir) / name, Path(output_dir) / f"{name}.old"):
        if (candidate / TRAINER_STATE_NAME).is_file():
            return candidate
    return None


def publish_directory(temporary: Path, final: Path) -> None:
    """Make the fully written folder `temporary` the checkpoint `final`, with `final` loadable at every moment.

    The folder is renamed to a name of its own (`final.<n>`), then a symbolic link `final` -> that name replaces
    the previous link in one atomic rename; only then do the earlier folders go. A kill at any point leaves
    `final` naming a complete checkpoint (the old or the new one); leftovers are removed by the next save.
    """
    parent = final.parent

    def versions() -> list[Path]:  # final.<n> folders, and final.old (a real `final` folder moved aside)
        return [p for p in parent.glob(f"{final.name}.*") if p.suffix[1:].isdigit() or p.suffix == ".old"]

    number = 1 + max((int(p.suffix[1:]) for p in versions() if p.suffix[1:].isdigit()), default=0)
    versioned = parent / f"{final.name}.{number}"
    os.replace(temporary, versioned)
    if final.exists() and not final.is_symlink():  # a real folder: a run from before links, or a hand copy
        os.replace(final, parent / f"{final.name}.old")
    link = parent / f".{final.name}.link"
    link.unlink(missing_ok=True)
    link.symlink_to(versioned.name)  # relative: the run directory can be moved or copied whole
    os.replace(link, final)
    for stale in versions():
        if stale != versioned:
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def run_lock(output_dir: Path, env: Distributed) -> Iterator[None]:
    """Hold `output_dir/.lock` for the run (rank 0): a second run on the same directory is refused, not mixed in."""
    if not env.main:
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(output_dir / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise RuntimeError(
            f"{output_dir} is in use by another training run (it holds {output_dir / LOCK_NAME}): wait for it to "
            "finish, or choose another --output-dir"
        ) from None
    try:
        yield
    finally:
        lock.release()

