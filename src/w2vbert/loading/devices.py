"""Device and dtype names, as users and the command line spell them: one table and one parser each.

- `DTYPES`: the floating dtypes by name ("float32", "bfloat16", ...), the table every `--dtype` and
  `torch_dtype="..."` goes through.
- `resolve_dtype`: a name or a torch dtype -> the torch dtype.
- `MAX_BATCH_SECONDS`, `max_batch_seconds`: the default cap of padded audio per batch on each device type.
- `cpu_features`, `native`, `fastest_dtype`: what this machine's CPU (or GPU) runs natively, and the dtype
  `--dtype auto` picks from it; `warn_if_emulated` says once when bfloat16 would run emulated, and slow.
- `rank_device`: the device of this torchrun rank (its own GPU, by LOCAL_RANK).
- `resolve_device`: "cpu", "cuda", "cuda:1", a GPU index, "auto", a single-device `device_map` -> a torch device,
  with a one-line error for a device this machine does not have, naming those it has (`available_devices`).
"""

from __future__ import annotations

import functools
import logging
import platform
from typing import Any

import torch

DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}
AUTO_DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # transformers' names; one device here
# Padded audio per model batch (corpus runs, the server), by device type: a GPU wants many clips at once; on a CPU
# one clip of 10-30 s already fills the matrix units and padding is pure loss (benchmarks/NOTES.md, "Corpus runs").
MAX_BATCH_SECONDS = {"cuda": 160.0, "cpu": 30.0}


def max_batch_seconds(device: torch.device) -> float:
    """The default cap of padded audio per batch on `device` (the CPU's for device types not measured)."""
    return MAX_BATCH_SECONDS.get(device.type, MAX_BATCH_SECONDS["cpu"])


def resolve_dtype(dtype: torch.dtype | str, allowed: tuple[str, ...] = tuple(DTYPES)) -> torch.dtype:
    """"bfloat16" / "torch.bfloat16" / torch.bfloat16 -> torch.bfloat16, for the names in `allowed`."""
    name = str(dtype).removeprefix("torch.")
    if name not in allowed:
        raise ValueError(f"dtype must be one of {list(allowed)}, got {dtype!r}")
    return DTYPES[name]


def resolve_device(device: Any) -> torch.device:
    """A device as transformers and the command line accept it -> a torch device that exists here.

    None and "auto" (and transformers' other device_map strategies) mean the first GPU when CUDA is available,
    else the CPU; an int is a GPU index (-1: the CPU); a dict `device_map` must put everything on one device
    ({"": 0}), since the model is not split across devices.
    """
    if isinstance(device, dict):
        targets = {str(value) for value in device.values()}
        if len(targets) != 1:
            raise ValueError(
                f"device_map places parts of the model on {sorted(targets)}: w2vbert keeps the whole model on one "
                'device; pass one device, e.g. device_map="cuda:0" or {"": 0}'
            )
        device = next(iter(device.values()))
    if device is None or device in AUTO_DEVICE_MAPS:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, int) and not isinstance(device, bool):
        device = f"cuda:{device}" if device >= 0 else "cpu"
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {device!r}: expected 'cpu', 'cuda', 'cuda:N', a GPU index, or 'auto' (available here: "
            f"{', '.join(available_devices())})"
        ) from None
    if target.type == "cuda":
        if not torch.cuda.is_available():
            reason = "no GPU is visible" if torch.backends.cuda.is_built() else "this torch is built without CUDA"
            raise ValueError(f"device={str(target)!r}: CUDA is not available ({reason}); use device='cpu'")
        if target.index is not None and target.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(
                f"device={str(target)!r}: there are {count} CUDA device(s); use one of cuda:0..cuda:{count - 1}, "
                "or device='cpu'"
            )
    elif target.type != "cpu" and not _backend_available(target.type):
        raise ValueError(f"device={str(target)!r} is not available here: available devices are "
                         f"{', '.join(available_devices())}")
    return target


def available_devices() -> list[str]:
    """The devices a model can run on here, as --device names them: cpu, each CUDA GPU, mps or xpu."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{index}" for index in range(gpus)), *(name for name in ("mps", "xpu")
                                                                  if _backend_available(name))]


def _backend_available(device_type: str) -> bool:
    """Whether torch can run on `device_type` (mps, xpu) here; False for the types the model does not run on."""
    backend = {"mps": getattr(torch.backends, "mps", None), "xpu": getattr(torch, "xpu", None)}.get(device_type)
    return backend is not None and backend.is_available()


def rank_device(device: Any, local_rank: int) -> torch.device:
    """The device of the torchrun process with `local_rank`: None means its own GPU (cuda:LOCAL_RANK) when CUDA is
    there, else the CPU; "cuda" without an index is also its own GPU. That GPU becomes the current one."""
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    target = resolve_device(device)
    if target.type == "cuda" and target.index is None:  # "cuda" (as --device cuda says): this rank's GPU
        target = torch.device("cuda", local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    return target


# ------------------------------------------------------------------------------------ what the CPU runs natively
# The instruction-set extensions that decide the speed of the modes (Linux /proc/cpuinfo flag names).
CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16", "amx_int8", "avx512_vnni",
                "avx_vnni")


@functools.cache
def cpu_features() -> dict[str, bool]:
    """Which of `CPU_FEATURES` this CPU has (from /proc/cpuinfo; elsewhere from torch's CPU capability, which
    tells AVX2 and AVX-512 only)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        capability = torch.backends.cpu.get_cpu_capability()
        flags = {"AVX2": ["avx2"], "AVX512": ["avx2", "avx512f"]}.get(capability, [])
    return {name: name in flags for name in CPU_FEATURES}


@functools.cache
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                        platform.processor() or "unknown")
    except OSError:
        return platform.processor() or "unknown"


def native(device: torch.device, dtype: torch.dtype) -> bool | None:
    """Whether `dtype` matrix products run in hardware on `device`. On an x86 CPU: float32 always; bfloat16 with
    AMX or AVX512-BF16, float16 with AMX-FP16 or AVX512-FP16 (else oneDNN emulates them, several times slower than
    float32). On a CUDA GPU: bfloat16 from compute capability 8 (torch's is_bf16_supported also says yes where it
    is emulated), float16 and float32 always. Elsewhere (ARM CPUs, mps, xpu) half precision is not known: None."""
    if device.type == "cuda":  # bf16 tensor cores from Ampere (compute capability 8) on; ROCm GPUs have them
        return dtype != torch.bfloat16 or bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8
    if device.type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return None if dtype != torch.float32 else True  # the flags below are x86's: elsewhere, not known
    features = cpu_features()
    if dtype == torch.bfloat16:
        return features["amx_bf16"] or features["avx512_bf16"]
    if dtype == torch.float16:
        return features["amx_fp16"] or features["avx512_fp16"]
    return True


def fastest_dtype(device: torch.device) -> torch.dtype:
    """What `--dtype auto` runs: bfloat16 where the device computes it natively, else float16 on a GPU and float32
    on a CPU."""
    if native(device, torch.bfloat16):  # known to be native; not where unknown
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else torch.float32


_warned: set[torch.dtype] = set()


def warn_if_emulated(device: torch.device, dtype: torch.dtype) -> None:
    """Say once per process and dtype when `dtype` would run emulated on this CPU."""
    if device.type != "cpu" or native(device, dtype) is not False or dtype in _warned:
        return
    _warned.add(dtype)
    name = str(dtype).removeprefix("torch.")
    logging.getLogger("w2vbert").warning(
        "%s is emulated on this CPU (%s: no %s), several times slower than float32: use float32 (--dtype float32, "
        "or --dtype auto for the fastest mode this machine has)", name, cpu_name(),
        "AMX or AVX512-BF16" if dtype == torch.bfloat16 else "AMX-FP16 or AVX512-FP16")
