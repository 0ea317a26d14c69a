"""The model's small building blocks, which carry no checkpoint names of their own.

- `strided_conv_lengths`: frames after one of the adapter's strided convolutions.
- `activation`: the activation module a config names.
- `linear_then_activation`: activation(linear(x)), the two fused into one oneDNN call where that pays.
- `PointwiseConv1d`: a kernel-1 convolution applied channels-last, as the matmul it is.
- `causal_depthwise_conv`: the Conformer's left-looking depthwise convolution, channels-last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as module_registry  # where the global module hooks are kept

from w2vbert.loading.devices import native

# oneDNN's matmul with a fused elementwise post-op (what torch.compile's CPU path emits for Linear + SiLU), called
# eagerly; absent from builds without oneDNN.
LINEAR_POINTWISE = getattr(torch.ops.mkldnn, "_linear_pointwise", None)


def strided_conv_lengths(lengths: torch.Tensor | int, kernel: int, stride: int) -> torch.Tensor | int:
    """Frames after a convolution of `kernel` and `stride` padded by stride // 2 on both sides (the adapter's)."""
    return (lengths + 2 * (stride // 2) - kernel) // stride + 1


def activation(name: str) -> nn.Module:
    """The activation a config names (Hugging Face's ACT2FN names; "gelu" is the exact erf form)."""
    return {
        "relu": nn.ReLU,
        "gelu": nn.GELU,
        "gelu_new": lambda: nn.GELU(approximate="tanh"),
        "swish": nn.SiLU,
        "silu": nn.SiLU,
        "selu": nn.SELU,
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
    }[name]()


def linear_then_activation(linear: nn.Module, act: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """act(linear(hidden_states)). bfloat16 inference on a CPU that computes bfloat16 natively, with a SiLU after a
    plain nn.Linear, runs as one oneDNN matmul with the SiLU as its post-op: the activation is applied to the
    float32 accumulators and rounded once, with no second pass over the (frames, 4096) output, which bfloat16's
    SiLU makes slow (that matmul and SiLU 6% faster alone, the encoder 0-3%: benchmarks/NOTES.md,
    "bf16 attention"). Anything else (training, float32, a quantized or LoRA-wrapped layer, a module with hooks,
    which the fused call would pass by) takes the two calls."""
    if (
        LINEAR_POINTWISE is not None and type(linear) is nn.Linear and type(act) is nn.SiLU
        and not any(has_hooks(module) for module in (linear, act))
        and hidden_states.device.type == "cpu" and hidden_states.dtype == torch.bfloat16 == linear.weight.dtype
        and not (torch.is_grad_enabled() and (hidden_states.requires_grad or linear.weight.requires_grad))
        and native(hidden_states.device, torch.bfloat16)
    ):
        return LINEAR_POINTWISE(hidden_states, linear.weight, linear.bias, "swish", [], "")
    return act(linear(hidden_states))


def has_hooks(module: nn.Module) -> bool:
    """Whether calling `module` runs hooks besides its forward: its own forward (pre-)hooks, or global ones."""
    return bool(module._forward_hooks or module._forward_pre_hooks or module_registry._global_forward_hooks
                or module_registry._global_forward_pre_hooks)


class PointwiseConv1d(nn.Conv1d):
    """A kernel-1 Conv1d (checkpoint layout: weight (out, in, 1)) applied to channels-last (B, T, in) -> (B, T, out).

    A kernel-1 convolution is a matmul over channels; run as `F.linear` on the squeezed weight it needs none of
    the transposes a (B, C, T) layout costs. Being its own type, it is what the int8 paths find and swap for the
    `nn.Linear` it is (model/quantization.py), which takes the same channels-last input.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size=1, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.linear(hidden_states, self.weight[:, :, 0], self.bias)

    def as_linear(self) -> nn.Linear:
        """The `nn.Linear` sharing this convolution's parameters (no copy)."""
        linear = nn.Linear(self.in_channels, self.out_channels, bias=self.bias is not None, device="meta")
        linear.weight = nn.Parameter(self.weight.detach()[:, :, 0], requires_grad=self.weight.requires_grad)
        if self.bias is not None:
            linear.bias = self.bias
        return linear


def causal_depthwise_conv(hidden_states: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Depthwise convolution over time that only looks left: (B, T, C) and weight (C, 1, K) -> (B, T, C).

    Frame t sees frames t-K+1 .. t (zeros before the start), as Conv1d on a left-padded (B, C, T) input. Run as
    a 2-D convolution on a (B, C, 1, T) view whose memory is channels-last, which oneDNN takes without a
    reorder, padded by K-1 on both sides (cheaper than an F.pad copy); the first T outputs are the causal ones
    (bit-identical to the Conv1d, and faster: benchmarks/NOTES.md, "convolution module").
    """
    batch, frames, channels = hidden_states.shape
    kernel = weight.shape[-1]
    dtype = hidden_states.dtype
    if hidden_states.device.type == "cpu" and dtype != torch.float32:
        # oneDNN's bfloat16 channels-last depthwise convolution never returns for some shapes with 2 threads
        # (144 or 32 channels, about half of the lengths; torch 2.13): float32 here costs 0.3 ms a layer at 1024
        # channels x 500 frames, under 2% of a bfloat16 forward (benchmarks/NOTES.md, "convolution module").
        hidden_states, weight = hidden_states.float(), weight.float()
    as_image = hidden_states[:, None].permute(0, 3, 1, 2)  # (B, C, 1, T) with channels-last strides: no copy
    output = F.conv2d(as_image, weight[:, :, None, :], groups=channels, padding=(0, kernel - 1)).to(dtype)
    # (B, C, 1, T+K-1) channels-last; output t reads inputs t-K+1 .. t: keep the first T, drop the K-1 that
    # read past the end (right padding).
    return output.permute(0, 2, 3, 1)[:, :, :frames].reshape(batch, frames, channels)
