"""Inference modes behind one call, `optimize_for_inference`: bf16 / fp16, int8 weights (on CPU PyTorch's own
dynamic quantization with float32 activations, or oneDNN's int8 matmul with bfloat16 ones; bitsandbytes on CUDA)
and `torch.compile`. `from_pretrained(..., quantize="int8")` and `load_in_8bit=True` end here too.

In order: `optimize_for_inference`, then the int8 engines (`quantize_int8` with `check_int8_activations` and
`quantize_linear_children`, its two CPU kinds of layer, PyTorch's dynamic one and `OneDNNInt8Linear`;
`replace_with_bnb_linear`), then the memory helpers of the CPU one (`convert_from_file`,
`release_checkpoint_memory`, `file_mappings`, `drop_file_pages`).
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
import weakref
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from w2vbert.loading import devices
from w2vbert.loading.devices import resolve_dtype
from w2vbert.loading.names import INFERENCE_DTYPES
from w2vbert.model.layers import PointwiseConv1d
from w2vbert.model.names import QUANTIZE

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
    - quantize="int8": matmul weights to int8, activations quantized per call. On CPU every Linear layer, the
      convolution modules' kernel-1 convolutions kept in `dtype` (see `quantize_int8`): with dtype float32
      through PyTorch's dynamic quantization, with dtype bfloat16 through oneDNN's int8 matmul
      (`OneDNNInt8Linear`: AMX-INT8 / VNNI), everything else in bfloat16 - the fastest CPU mode where bf16 is
      native (benchmarks/NOTES.md, "int8"). On CUDA through bitsandbytes' LLM.int8 `Linear8bitLt` (as
      transformers' `load_in_8bit=True`; dtype float32), kernel-1 convolutions included (its outlier columns
      stay fp16).
    - compile=True: wrap in `torch.compile` (the first call compiles, which takes tens of seconds on CPU).
    - release_file_pages=True (CPU int8; what `from_pretrained` passes): the model's tensors are unmodified views
      of a checkpoint file's memory map, so each block's float pages go back to the kernel once it is quantized
      (see `quantize_int8`). Leave it False for a model whose weights were changed in place after loading.

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
        if device.type == "cuda":
            if target != torch.float32:
                raise ValueError(
                    f"quantize='int8' on CUDA is bitsandbytes' LLM.int8 (fp16 inside): pass dtype=float32, got {target}"
                )
            replace_with_bnb_linear(model)
        elif device.type == "cpu":
            quantize_int8(model, target, release_file_pages=release_file_pages)
        else:
            raise ValueError(f"quantize='int8' runs on CPU (PyTorch) or CUDA (bitsandbytes), not {device.type}")
    elif target != torch.float32:
        model.to(target)
    return torch.compile(model) if compile else model


INT8_DOT_PRODUCT = ("amx_int8", "avx512_vnni", "avx_vnni")  # what oneDNN's full-range int8 matmul needs
INT8_ENGINE_VARIABLE = "W2VBERT_INT8_ENGINE"  # names the engine instead of the default order (for measuring them)
# The first this PyTorch build has packs the int8 weights. x86 (fbgemm's kernels for these Linears) first: on the
# AMX Xeon it peaks at 0.47x float32's memory where oneDNN keeps a second int8 copy (0.65-0.70x), and oneDNN's
# 1.4x faster AMX int8 still trails bf16 there (benchmarks/NOTES.md, "int8"); on AVX2 kernels x86 and fbgemm
# ranked first and oneDNN last ("AVX2 code paths" there). W2VBERT_INT8_ENGINE=onednn picks it.
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


def quantize_int8(model: nn.Module, dtype: torch.dtype = torch.float32, release_file_pages: bool = False) -> None:
    """CPU int8: every nn.Linear -> an int8 one (int8 weights, one scale per output channel, per-call activation
    scales), and every other float tensor to `dtype`.

    - dtype float32: PyTorch's dynamically quantized Linear, packed by `int8_engine()` (PyTorch's x86 engine
      unless W2VBERT_INT8_ENGINE names another); its activations are float32.
    - dtype bfloat16: `OneDNNInt8Linear` (oneDNN's int8 matmul on full-range uint8 activations), each
      feed-forward's SiLU fused into its first matmul, the rest of the model in bfloat16: on an AMX CPU the
      fastest mode, where float32 activations trail bf16 (benchmarks/NOTES.md, "int8").

    The Conformer convolution modules' kernel-1 convolutions stay in `dtype` either way: the first feeds a GLU
    gate, and quantizing them was what pulled the 24-layer model's last layer to cosine 0.989 with float32 on
    speech (random weights, the x86 engine), and the CTC logits from 0.998 to 0.991 with oneDNN's (for 4% more
    speed: benchmarks/NOTES.md, "int8"). They are `PointwiseConv1d`, not `nn.Linear`, so the swap passes them by.

    Module by module, children first: a module's Linear children are quantized, its own float tensors copied out
    of the checkpoint's memory map (`release_checkpoint_memory`), and with `release_file_pages` the map's pages
    those tensors covered handed back (`drop_file_pages`), so that at most one module's float32 weights are
    resident at a time instead of the whole file (the load's high-water mark: benchmarks/NOTES.md, "int8").
    Each Linear is quantized on its own either way, so the numbers are those of one whole-model quantize_dynamic.
    Only pass `release_file_pages` for tensors fresh from the file: a page written since (copy-on-write) would be
    dropped and read back from the file, undoing the write for anyone still holding the old tensor.
    """
    check_int8_activations(dtype)
    previous = torch.backends.quantized.engine
    mappings = file_mappings() if release_file_pages else []
    try:
        if dtype == torch.float32:  # packed weights remember their engine: it only needs to hold while packing
            torch.backends.quantized.engine = int8_engine()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.ao")
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated.*")
            for module in reversed(list(model.modules())):  # children first: a block's layers, then the block
                if type(module) is nn.Linear:
                    continue  # its parent swaps it for the quantized one
                read = quantize_linear_children(module, dtype)
                read += release_checkpoint_memory(module, recurse=False, dtype=dtype)
                if mappings:
                    drop_file_pages(read, mappings)
    finally:
        torch.backends.quantized.engine = previous


def check_int8_activations(dtype: torch.dtype) -> None:
    """Refuse an activation dtype CPU int8 cannot run here: float32 always runs; bfloat16 needs oneDNN's int8
    matmul in this PyTorch build and an int8 dot-product unit in this CPU."""
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"CPU int8 runs with float32 or bfloat16 activations, got {dtype}")
    if dtype == torch.bfloat16 and not OneDNNInt8Linear.available():
        raise RuntimeError(
            "int8 with bfloat16 activations needs PyTorch's oneDNN int8 matmul (torch.ops.onednn.qlinear_pointwise), "
            "which this build lacks: use dtype=float32 with quantize='int8'"
        )
    if dtype == torch.bfloat16 and not any(devices.cpu_features()[name] for name in INT8_DOT_PRODUCT):
        # Without them oneDNN sums u8 x s8 pairs in saturating int16 (vpmaddubsw): full-range activations overflow
        # and the results go wrong (measured: errors of 0.24 on unit outputs under ONEDNN_MAX_CPU_ISA=AVX2).
        raise ValueError(
            "int8 with bfloat16 activations needs a CPU with an int8 dot-product unit (AMX-INT8, AVX512-VNNI or "
            "AVX-VNNI); this one has none: use dtype=float32 with quantize='int8' (PyTorch's int8 for such CPUs)"
        )


def quantize_linear_children(module: nn.Module, dtype: torch.dtype) -> list[torch.Tensor]:
    """Swap the nn.Linear children of `module` (not deeper descendants: they are swapped on their own turn) for
    int8 ones of the kind `dtype` picks (see `quantize_int8`); returns the float tensors they were read from."""
    linears = [(name, child) for name, child in module.named_children() if type(child) is nn.Linear]
    read = [t.data for _, child in linears for t in (child.weight, child.bias) if t is not None]
    if dtype == torch.bfloat16:
        shared_input: dict = {}  # siblings share their last input's codes (OneDNNInt8Linear.input_codes)
        for name, child in linears:
            setattr(module, name, OneDNNInt8Linear(child, dtype, shared_input))
        fuse_activation(module)
    elif linears:
        for _, child in linears:  # the packed weights keep the float bias itself: not a view of the file
            if child.bias is not None:
                child.bias.data = child.bias.data.clone()
        # One scale per output channel, not per matrix: a matrix-wide scale is set by its largest row.
        qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        torch.ao.quantization.quantize_dynamic(module, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True)
    return read


def fuse_activation(module: nn.Module) -> None:
    """A feed-forward block's SiLU into its int8 first matmul (oneDNN's "swish" post-op), which then returns
    float32: one pass over the (frames, 4096) activations less, bfloat16's SiLU is slow on its own, and the next
    matmul quantizes from float32 without a conversion (benchmarks/NOTES.md, "int8")."""
    dense, act = getattr(module, "intermediate_dense", None), getattr(module, "intermediate_act_fn", None)
    if isinstance(dense, OneDNNInt8Linear) and type(act) is nn.SiLU and dense.post_op == "none":
        dense.post_op = "swish"
        dense.output_dtype = torch.float32  # read only by the int8 output_dense, which would make it float32 anyway
        module.intermediate_act_fn = nn.Identity()


class OneDNNInt8Linear(nn.Module):
    """An nn.Linear run as oneDNN's int8 matmul (AMX-INT8 on Xeons that have it, else AVX-512 VNNI): the weight
    int8 with one scale per output channel, packed once; each call quantizes its input to uint8 with one scale
    and zero point over the whole input (its min and max, as PyTorch's dynamic quantization) and returns the
    matmul dequantized in `output_dtype` (`dtype`, bfloat16 or float32). What `torch.compile`'s x86 int8 path emits,
    called eagerly: no compilation, no deprecated torch.ao module. For inference only (no gradient).
    """

    def __init__(
        self, linear: nn.Linear, dtype: torch.dtype = torch.bfloat16, shared_input: dict | None = None
    ) -> None:
        super().__init__()
        self.shared_input = {} if shared_input is None else shared_input
        self.post_op = "none"  # or "swish": the SiLU that follows, fused (`fuse_activation`)
        self.output_dtype = dtype
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        # Plain attributes, not buffers: `model.to(dtype)` must leave the packed weight and its scales alone.
        self.weight_scale = scale
        self.weight_zero_point = torch.zeros(len(scale), dtype=torch.long)
        self.packed_weight = torch.ops.onednn.qlinear_prepack(
            torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8), None
        )
        # float32, cast per call to `output_dtype` (which `fuse_activation` may change): never rounded twice
        self.bias = None if linear.bias is None else linear.bias.detach().to(torch.float32, copy=True)

    @staticmethod
    def available() -> bool:
        """Whether this PyTorch build has oneDNN's int8 matmul ops."""
        return hasattr(torch.ops.onednn, "qlinear_pointwise") and hasattr(torch.ops.onednn, "qlinear_prepack")

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        shape = hidden_states.shape
        rows = hidden_states.reshape(-1, self.in_features)
        if rows.shape[0] == 0:
            return hidden_states.new_empty(*shape[:-1], self.out_features, dtype=self.output_dtype)
        codes, scale, zero_point = self.input_codes(hidden_states, rows)
        bias = None if self.bias is None else self.bias.to(self.output_dtype)
        output = torch.ops.onednn.qlinear_pointwise(
            codes, scale, zero_point, self.packed_weight, self.weight_scale, self.weight_zero_point, bias,
            1.0, 0, self.output_dtype, self.post_op, [], "",
        )
        return output.reshape(*shape[:-1], self.out_features)

    def input_codes(self, hidden_states: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, float, int]:
        """`rows` quantized to uint8 over its min and max -> (codes, scale, zero point).

        Sibling layers reading one tensor (an attention's q, k and v) quantize it once: the codes of the last
        input are kept in `shared_input` and serve each other sibling once for that same tensor object (unchanged
        since, where autograd counts versions); a layer called again, even on the same tensor, quantizes afresh.
        The codes go when that input does, so no layer holds its last input's codes between forwards.
        """
        memo = self.shared_input
        version = None if hidden_states.is_inference() else hidden_states._version
        last = memo.get("input")
        if (
            last is not None and last() is hidden_states and memo["version"] == version
            and id(self) not in memo["readers"]
        ):
            memo["readers"].add(id(self))
            return memo["codes"], memo["scale"], memo["zero_point"]
        low, high = (value.item() for value in torch.aminmax(rows))
        low, high = min(low, 0.0), max(high, 0.0)  # zero stays exact
        scale = (high - low) / 255 or 1.0
        zero_point = min(255, max(0, round(-low / scale)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated.*")
            quantized = torch.quantize_per_tensor(rows.float().contiguous(), scale, zero_point, torch.quint8)
        # The quantized tensor's bytes as the plain uint8 tensor oneDNN takes (a view, not int_repr's copy).
        codes = torch.empty(0, dtype=torch.uint8).set_(quantized.untyped_storage(), 0, rows.shape)
        def forget(reference: weakref.ref) -> None:  # the input is gone: so are its codes (unless replaced)
            if memo.get("input") is reference:
                memo.clear()

        memo.update(input=weakref.ref(hidden_states, forget), version=version, readers={id(self)}, codes=codes,
                    scale=scale, zero_point=zero_point)
        return codes, scale, zero_point

    def extra_repr(self) -> str:
        fused = f", post_op={self.post_op}" if self.post_op != "none" else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}{fused}"


def quantized_layer(model: nn.Module) -> str | None:
    """The first int8 layer of `model` ("name (class)"), or None: its weights are packed for inference and its
    state dict is no checkpoint (the oneDNN one holds no weight tensor at all)."""
    for name, module in model.named_modules():
        kind = type(module)
        if kind is OneDNNInt8Linear or kind.__module__.startswith(("torch.ao.nn.quantized", "bitsandbytes")):
            return f"{name} ({kind.__name__})"
    return None


def convert_from_file(model: nn.Module, dtype: torch.dtype) -> None:
    """Convert a model fresh from a checkpoint file's memory map to `dtype` module by module, handing each module's
    file pages back once its tensors are copied: bfloat16 from a float32 file otherwise holds the whole file
    resident beside the copy (full size: 3.81 GB peak against float32's 2.71 GB; benchmarks/NOTES.md, "int8").
    Only for tensors fresh from the file (see `quantize_int8`)."""
    mappings = file_mappings()
    for module in model.modules():
        owned = [t for t in (*module.parameters(recurse=False), *module.buffers(recurse=False)) if t is not None]
        if any(t.is_floating_point() and t.dtype != dtype for t in owned):
            read = release_checkpoint_memory(module, recurse=False, dtype=dtype)
            if mappings:
                drop_file_pages(read, mappings)


def release_checkpoint_memory(
    model: nn.Module, recurse: bool = True, dtype: torch.dtype | None = None
) -> list[torch.Tensor]:
    """Copy the float tensors that stay out of the checkpoint file's memory map, so the map can go (in `dtype`
    when given); returns the tensors copied from (with `recurse=False`, only those `model` owns itself).

    A model loaded from safetensors holds views of the file's pages; quantizing reads every page, and one float
    tensor left in the map keeps all of them resident, so that the int8 model held more memory than the float32
    one (benchmarks/NOTES.md, "int8"). Copies take only the float tensors' own size.
    """
    originals = []
    for module in model.modules() if recurse else [model]:
        for param in module.parameters(recurse=False):
            originals.append(param.data)
            param.data = copied(param.data, dtype)
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer is not None:
                originals.append(buffer)
                module._buffers[name] = copied(buffer, dtype)
    return originals


def copied(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """A copy of `tensor`, floating ones in `dtype` when given."""
    if dtype is not None and tensor.is_floating_point():
        return tensor.to(dtype, copy=True)
    return tensor.clone()


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
