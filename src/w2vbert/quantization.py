"""Inference modes behind one call, `optimize_for_inference`: bf16 / fp16, int8 weights (PyTorch's own dynamic
quantization on CPU, bitsandbytes on CUDA) and `torch.compile`. `from_pretrained(..., quantize="int8")` and
`load_in_8bit=True` end here too.

In order: `optimize_for_inference`, then the two int8 engines (`quantize_dynamic_int8`, `replace_with_bnb_linear`),
then the memory helpers of the CPU one (`release_checkpoint_memory`, `file_mappings`, `drop_file_pages`).
Which CPU engine packs int8 weights, and why the convolution modules' kernel-1 convolutions stay float, are
measured in benchmarks/NOTES.md ("int8"). `torch.ao.quantization.quantize_dynamic` is deprecated (its warning
points at torchao, which is not a dependency here) but still present and fast in 2.13; the warning is silenced.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from .devices import INFERENCE_DTYPES, resolve_dtype
from .layers import PointwiseConv1d

QUANTIZE = (None, "int8")
MADV_DONTNEED = 4  # Linux <asm-generic/mman-common.h>: drop these pages; a file-backed page re-reads from the file


def optimize_for_inference(
    model: nn.Module,
    dtype: torch.dtype | str | None = None,
    quantize: str | None = None,
    compile: bool = False,
    *,
    release_file_pages: bool = False,
) -> nn.Module:
    """Put `model` in eval mode and convert it for fast inference on the device it lives on; returns the model.

    - dtype: float32 (default), bfloat16 (CPU with AMX/AVX-512-BF16, or CUDA), float16 (CUDA only: CPU float16
      kernels are emulated and slower than float32 here; use bfloat16 on CPU).
    - quantize="int8": matmul weights to int8. On CPU through PyTorch's dynamic quantization (activations
      quantized per call; needs float32): every Linear layer, the convolution modules' kernel-1 convolutions
      kept float (see `quantize_dynamic_int8`). On CUDA through bitsandbytes' LLM.int8 `Linear8bitLt` (as
      transformers' `load_in_8bit=True`), kernel-1 convolutions included (its outlier columns stay fp16).
    - compile=True: wrap in `torch.compile` (the first call compiles, which takes tens of seconds on CPU).
    - release_file_pages=True (CPU int8; what `from_pretrained` passes): the model's tensors are unmodified views
      of a checkpoint file's memory map, so each block's float pages go back to the kernel once it is quantized
      (see `quantize_dynamic_int8`). Leave it False for a model whose weights were changed in place after loading.

    The conversion is in place for dtype/quantize (the returned object is `model` itself unless compiled).
    A quantized model's state dict is no longer a checkpoint: keep the float one for saving.
    """
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}, got {quantize!r}")
    target = torch.float32 if dtype is None else resolve_dtype(dtype, INFERENCE_DTYPES)
    device = next(model.parameters()).device
    if target == torch.float16 and device.type != "cuda":
        raise ValueError(
            f"float16 inference needs a CUDA device (the model is on {device.type}); on CPU use bfloat16, which "
            "runs on the AMX / AVX-512-BF16 units"
        )
    model.eval()
    if quantize == "int8":
        if target != torch.float32:
            raise ValueError(f"quantize='int8' keeps activations in float32: pass dtype=float32, got {target}")
        if device.type == "cuda":
            replace_with_bnb_linear(model)
        elif device.type == "cpu":
            quantize_dynamic_int8(model, release_file_pages=release_file_pages)
        else:
            raise ValueError(f"quantize='int8' runs on CPU (PyTorch) or CUDA (bitsandbytes), not {device.type}")
    elif target != torch.float32:
        model.to(target)
    return torch.compile(model) if compile else model


INT8_ENGINE_VARIABLE = "W2VBERT_INT8_ENGINE"  # names the engine instead of the default order (for measuring them)
# The first this PyTorch build has packs the int8 weights. x86 (fbgemm's kernels for these Linears) first: on the
# AMX Xeon it peaks at 0.47x float32's memory where oneDNN keeps a second int8 copy (0.65-0.70x), and oneDNN's
# 1.4x faster AMX int8 still trails bf16 there (benchmarks/NOTES.md, "int8"); W2VBERT_INT8_ENGINE=onednn picks it.
INT8_ENGINE_ORDER = ("x86", "fbgemm", "onednn")


def int8_engine() -> str:
    """The PyTorch quantization engine that packs CPU int8 weights: $W2VBERT_INT8_ENGINE when set, else the first
    of INT8_ENGINE_ORDER this build supports (benchmarks/NOTES.md, "int8", has what each costs)."""
    engines = torch.backends.quantized.supported_engines
    asked = os.environ.get(INT8_ENGINE_VARIABLE)
    if asked is not None:
        if asked not in engines:
            raise ValueError(f"{INT8_ENGINE_VARIABLE}={asked!r}: this PyTorch build has the engines {engines}")
        return asked
    engine = next((e for e in INT8_ENGINE_ORDER if e in engines), None)
    if engine is None:
        raise RuntimeError(f"this PyTorch build has no CPU quantization engine (engines: {engines})")
    return engine


def quantize_dynamic_int8(model: nn.Module, release_file_pages: bool = False) -> None:
    """CPU int8: every nn.Linear -> PyTorch's dynamically quantized Linear (int8 weights, one scale per output
    channel, per-call activation scales), packed by `int8_engine()` (PyTorch's x86 engine unless
    W2VBERT_INT8_ENGINE names another).

    The Conformer convolution modules' kernel-1 convolutions stay float: their output feeds a GLU gate, and
    quantizing them was what pulled the 24-layer model's last layer to cosine 0.989 with float32 on speech
    (random weights); without them it is 0.998 (benchmarks/NOTES.md, "int8"). They are `PointwiseConv1d`, not
    `nn.Linear`, so the replacement below passes them by.

    Module by module, children first: a module's Linear children are quantized, its own float tensors copied out
    of the checkpoint's memory map (`release_checkpoint_memory`), and with `release_file_pages` the map's pages
    those tensors covered handed back (`drop_file_pages`), so that at most one module's float32 weights are
    resident at a time instead of the whole file (the load's high-water mark: benchmarks/NOTES.md, "int8").
    Each Linear is quantized on its own either way, so the numbers are those of one whole-model quantize_dynamic.
    Only pass `release_file_pages` for tensors fresh from the file: a page written since (copy-on-write) would be
    dropped and read back from the file, undoing the write for anyone still holding the old tensor.
    """
    previous = torch.backends.quantized.engine
    engine = int8_engine()
    mappings = file_mappings() if release_file_pages else []
    try:
        # Packed weights remember their engine, so the global setting only needs to hold while packing.
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.ao")
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated.*")
            # One scale per output channel, not per matrix: a matrix-wide scale is set by its largest row.
            qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            for module in reversed(list(model.modules())):  # children first: a block's layers, then the block
                if type(module) is nn.Linear:
                    continue  # its parent swaps it for the quantized one
                linears = [child for child in module.children() if type(child) is nn.Linear]
                read = [tensor.data for child in linears for tensor in (child.weight, child.bias) if tensor is not None]
                for child in linears:  # the packed weights keep the float bias itself: not a view of the file
                    if child.bias is not None:
                        child.bias.data = child.bias.data.clone()
                if linears:  # swaps only these: the descendants were swapped on their own turn
                    torch.ao.quantization.quantize_dynamic(
                        module, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True
                    )
                read += release_checkpoint_memory(module, recurse=False)
                if mappings:
                    drop_file_pages(read, mappings)
    finally:
        torch.backends.quantized.engine = previous


def release_checkpoint_memory(model: nn.Module, recurse: bool = True) -> list[torch.Tensor]:
    """Copy the float tensors that stay out of the checkpoint file's memory map, so the map can go; returns the
    tensors copied from (with `recurse=False`, only those `model` owns itself, not its children's).

    A model loaded from safetensors holds views of the file's pages; quantizing reads every page, and one float
    tensor left in the map keeps all of them resident, so that the int8 model held more memory than the float32
    one (benchmarks/NOTES.md, "int8"). Copies take only the float tensors' own size.
    """
    originals = []
    for module in model.modules() if recurse else [model]:
        for param in module.parameters(recurse=False):
            originals.append(param.data)
            param.data = param.data.clone()
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer is not None:
                originals.append(buffer)
                module._buffers[name] = buffer.clone()
    return originals


def file_mappings() -> list[tuple[int, int]]:
    """The (start, end) addresses of this process's file-backed memory maps, from /proc/self/maps; none off Linux."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    ranges = []
    for line in lines:  # "7f12a0000000-7f12a8a00000 rw-p 00000000 08:01 1234567  /path/model.safetensors"
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[4] != "0" and fields[5].startswith("/"):
            start, end = fields[0].split("-")
            ranges.append((int(start, 16), int(end, 16)))
    return ranges


def drop_file_pages(tensors: Iterable[torch.Tensor], mappings: list[tuple[int, int]]) -> None:
    """Hand back to the kernel the memory pages wholly inside `tensors` that lie in one of the file maps `mappings`.

    The pages stay in the page cache and read back from the file if touched again, but they leave this process's
    resident set. Anonymous memory is never touched (there MADV_DONTNEED would zero it), nor a page shared with a
    neighbouring tensor: only pages from the first page boundary inside a tensor to the last one.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    page = mmap.PAGESIZE
    for tensor in tensors:
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        first, last = -(-start // page) * page, end // page * page  # inner page boundaries
        if last > first and any(low <= start and end <= high for low, high in mappings):
            libc.madvise(first, last - first, MADV_DONTNEED)


def replace_with_bnb_linear(model: nn.Module, threshold: float = 6.0) -> None:
    """CUDA int8 (LLM.int8, as transformers' load_in_8bit): each nn.Linear -> bitsandbytes' Linear8bitLt.

    `threshold` is LLM.int8's outlier threshold (activations above it stay in fp16), bitsandbytes' default.
    The weights are quantized when the module moves to CUDA, so the model must already be there.
    """
    if not torch.cuda.is_available():
        raise RuntimeError(
            "load_in_8bit / quantize='int8' on CUDA needs a CUDA GPU and bitsandbytes; none is visible here. On "
            "CPU use optimize_for_inference(model, quantize='int8') (PyTorch's own int8) or dtype=torch.bfloat16"
        )
    try:
        import bitsandbytes as bnb
    except ImportError as error:
        raise ImportError("load_in_8bit needs bitsandbytes: pip install bitsandbytes") from error
    for parent in list(model.modules()):  # kernel-1 convolutions become the Linear they are, and quantize too
        for name, child in list(parent.named_children()):
            if isinstance(child, PointwiseConv1d):
                setattr(parent, name, child.as_linear())
    device = next(model.parameters()).device
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not nn.Linear:
                continue
            replacement = bnb.nn.Linear8bitLt(
                child.in_features, child.out_features, bias=child.bias is not None, has_fp16_weights=False,
                threshold=threshold,
            )
            replacement.weight = bnb.nn.Int8Params(child.weight.data.cpu(), requires_grad=False, has_fp16_weights=False)
            if child.bias is not None:
                replacement.bias = nn.Parameter(child.bias.data.to(torch.float16), requires_grad=False)
            setattr(parent, name, replacement.to(device))  # Int8Params quantize on the move to CUDA
    model.half()  # LLM.int8 computes in fp16; layer norms and convolutions follow
