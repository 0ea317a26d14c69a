"""Inference modes behind one call, `optimize_for_inference`: bf16 / fp16, int8 weights (PyTorch's own dynamic
quantization on CPU, bitsandbytes on CUDA) and `torch.compile`. `from_pretrained(..., quantize="int8")` and
`load_in_8bit=True` end here too.

In order: `optimize_for_inference`, then the two int8 engines (`quantize_dynamic_int8`, `replace_with_bnb_linear`).
Which CPU engine packs int8 weights, and why the convolution modules' kernel-1 convolutions stay float, are
measured in benchmarks/NOTES.md ("int8"). `torch.ao.quantization.quantize_dynamic` is deprecated (its warning
points at torchao, which is not a dependency here) but still present and fast in 2.13; the warning is silenced.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .devices import INFERENCE_DTYPES, resolve_dtype
from .layers import PointwiseConv1d

QUANTIZE = (None, "int8")


def optimize_for_inference(
    model: nn.Module, dtype: torch.dtype | str | None = None, quantize: str | None = None, compile: bool = False
) -> nn.Module:
    """Put `model` in eval mode and convert it for fast inference on the device it lives on; returns the model.

    - dtype: float32 (default), bfloat16 (CPU with AMX/AVX-512-BF16, or CUDA), float16 (CUDA only: CPU float16
      kernels are emulated and slower than float32 here; use bfloat16 on CPU).
    - quantize="int8": matmul weights to int8. On CPU through PyTorch's dynamic quantization (activations
      quantized per call; needs float32): every Linear layer, the convolution modules' kernel-1 convolutions
      kept float (see `quantize_dynamic_int8`). On CUDA through bitsandbytes' LLM.int8 `Linear8bitLt` (as
      transformers' `load_in_8bit=True`), kernel-1 convolutions included (its outlier columns stay fp16).
    - compile=True: wrap in `torch.compile` (the first call compiles, which takes tens of seconds on CPU).

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
            quantize_dynamic_int8(model)
        else:
            raise ValueError(f"quantize='int8' runs on CPU (PyTorch) or CUDA (bitsandbytes), not {device.type}")
    elif target != torch.float32:
        model.to(target)
    return torch.compile(model) if compile else model


def quantize_dynamic_int8(model: nn.Module) -> None:
    """CPU int8: every nn.Linear -> PyTorch's dynamically quantized Linear (int8 weights, one scale per output
    channel, per-call activation scales), packed by the oneDNN engine when available (AMX int8: ~3x faster than
    the default fbgemm here).

    The Conformer convolution modules' kernel-1 convolutions stay float: their output feeds a GLU gate, and
    quantizing them was what pulled the 24-layer model's last layer to cosine 0.989 with float32 on speech
    (random weights); without them it is 0.998 (benchmarks/NOTES.md, "int8"). They are `PointwiseConv1d`, not
    `nn.Linear`, so the replacement below passes them by.
    """
    engines = torch.backends.quantized.supported_engines
    previous = torch.backends.quantized.engine
    engine = next((e for e in ("onednn", "x86", "fbgemm") if e in engines), None)
    if engine is None:
        raise RuntimeError(f"this PyTorch build has no CPU quantization engine (engines: {engines})")
    try:
        # Packed weights remember their engine, so the global setting only needs to hold while packing.
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.ao")
            warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*deprecated.*")
            # One scale per output channel, not per matrix: a matrix-wide scale is set by its largest row.
            qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            for module in model.modules():  # the packed weights keep the float bias itself: not a view of the file
                if isinstance(module, nn.Linear) and module.bias is not None:
                    module.bias.data = module.bias.data.clone()
            torch.ao.quantization.quantize_dynamic(model, {nn.Linear: qconfig}, dtype=torch.qint8, inplace=True)
    finally:
        torch.backends.quantized.engine = previous
    release_checkpoint_memory(model)


def release_checkpoint_memory(model: nn.Module) -> None:
    """Copy the float tensors that stay out of the checkpoint file's memory map, so the map can go.

    A model loaded from safetensors holds views of the file's pages; quantizing reads every page, and one float
    tensor left in the map keeps all of them resident, so that the int8 model held more memory than the float32
    one (benchmarks/NOTES.md, "int8"). Copies take only the float tensors' own size.
    """
    for module in model.modules():
        for param in module.parameters(recurse=False):
            param.data = param.data.clone()
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer is not None:
                module._buffers[name] = buffer.clone()


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
