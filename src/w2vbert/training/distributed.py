"""Several processes under `torchrun`: the process group, the collectives a run uses, the model's DDP or FSDP
wrapper, and whole state dicts of a sharded model.

In order: `Distributed` (this process's rank among how many), `init_distributed`, the collectives (`all_reduce`
of sums, `all_gather` of any picklable value, `barrier`; each is the value itself with one process, so callers
need no branch for it), `wrap` (DDP, or FSDP2 with a unit per Conformer block), then the state of a wrapped run:
`full_model_state`, `full_optimizer_state` and `load_full_optimizer_state` (whole and on CPU under FSDP, plain
`state_dict()` otherwise). Every rank calls a collective at the same points, or the run hangs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from w2vbert.loading.devices import rank_device


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: its rank of `world_size`, and its GPU's index on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None) -> tuple[Distributed, torch.device]:
    """Join the process group `torchrun` describes (WORLD_SIZE, RANK, LOCAL_RANK); nccl on CUDA, gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    target = rank_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return Distributed(rank, world_size, local_rank), target


def all_reduce(values: list[float], env: Distributed, device: torch.device) -> list[float]:
    """The sums of `values` over all ranks (the values themselves with one process)."""
    if not env.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_gather(value: Any, env: Distributed) -> list[Any]:
    """Every rank's `value`, in rank order (`[value]` with one process)."""
    if not env.active:
        return [value]
    gathered: list[Any] = [None] * env.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def barrier(env: Distributed) -> None:
    if env.active:
        dist.barrier()


def wrap(model: nn.Module, env: Distributed, device: torch.device, sharding: str) -> nn.Module:
    """`model` as it trains on `env`: itself with one process, else DDP, or FSDP2 (`sharding="fsdp"`)."""
    if not env.active:
        return model
    if sharding == "fsdp":
        # FSDP2: each Conformer block is a unit (its parameters gathered just for its forward and backward),
        # the rest shards as the root unit. The module stays itself: no wrapper in the state-dict keys.
        from torch.distributed.fsdp import fully_shard  # only multi-process FSDP runs need it

        for layer in model.base_model.encoder.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    # LayerDrop skips blocks, whose parameters then get no gradient: DDP must be told to look for them.
    unused = model.config.layerdrop > 0
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=unused,
    )


def full_model_state(model: nn.Module, wrapped: nn.Module, fsdp: bool) -> dict[str, torch.Tensor]:
    """The state dict of `model` (trained as `wrapped`), whole and on CPU; a collective under FSDP."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def full_optimizer_state(wrapped: nn.Module, optimizer: torch.optim.Optimizer, fsdp: bool) -> dict[str, Any]:
    """The state dict of `optimizer`, whole and on CPU under FSDP (a collective there)."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(wrapped, optimizer, options=options)
    return optimizer.state_dict()


def load_full_optimizer_state(
    wrapped: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], fsdp: bool
) -> None:
    """Load a whole optimizer state dict (`full_optimizer_state`'s) into `optimizer`, sharding it under FSDP."""
    if fsdp:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(wrapped, optimizer, state, options=StateDictOptions(full_state_dict=True))
    else:
        optimizer.load_state_dict(state)
