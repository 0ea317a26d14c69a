"""The Conformer block and its parts, and the stack of blocks: the modules under `encoder` in the checkpoint.

In order: `Wav2Vec2BertFeedForward`, `Wav2Vec2BertConvolutionModule`, `Wav2Vec2BertSelfAttention` (projections and
the position term; the attention itself runs in model/attention.py), `Wav2Vec2BertEncoderLayer` (one block:
ffn1 -> self-attention -> convolution -> ffn2 -> LayerNorm), `Checkpointing` (how blocks recompute in training) and
`Wav2Vec2BertEncoder` (the blocks, with the position inputs of model/positions.py computed once per forward).
Attribute names are the checkpoint's. Padding travels as a boolean `valid` mask (B, T), True on real frames
(right-padded, or any mask: model/inputs.py). A chunked model's blocks take its `Chunking` (model/chunking.py);
streaming hands each block its `LayerCache`, and the attention and the convolution read and extend their parts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from w2vbert.model.attention import Position, RelativePosition, ShawPosition, attend, attend_recent
from w2vbert.model.chunking import AttentionCache, Chunking, FrameCache
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.layers import PointwiseConv1d, activation, causal_depthwise_conv, linear_then_activation
from w2vbert.model.positions import (
    ClampedDistances,
    PositionInputs,
    RotaryAngles,
    Sinusoids,
    apply_rotary,
    position_inputs,
)


class Wav2Vec2BertFeedForward(nn.Module):
    """Linear -> activation -> Linear, per frame."""

    def __init__(self, config: Wav2Vec2BertConfig, act_fn: str | None = None, hidden_size: int | None = None) -> None:
        super().__init__()
        hidden_size = hidden_size or config.hidden_size
        self.intermediate_dense = nn.Linear(hidden_size, config.intermediate_size)
        self.intermediate_act_fn = activation(act_fn or config.hidden_act)
        self.intermediate_dropout = nn.Dropout(config.activation_dropout)
        self.output_dense = nn.Linear(config.intermediate_size, hidden_size)
        self.output_dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = linear_then_activation(self.intermediate_dense, self.intermediate_act_fn, hidden_states)
        hidden_states = self.intermediate_dropout(hidden_states)
        return self.output_dropout(self.output_dense(hidden_states))


class Wav2Vec2BertConvolutionModule(nn.Module):
    """LN -> pointwise conv + GLU -> causal depthwise conv -> LN -> activation -> pointwise conv.

    Runs channels-last, on (B, T, C) from end to end: the kernel-1 convolutions are matmuls over channels
    (`PointwiseConv1d`) and the depthwise one runs as a channels-last 2-D convolution (`causal_depthwise_conv`),
    so no (B, C, T) transpose is ever copied.
    """

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        channels, kernel = config.hidden_size, config.conv_depthwise_kernel_size
        self.layer_norm = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.pointwise_conv1 = PointwiseConv1d(channels, 2 * channels)
        self.glu = nn.GLU(dim=-1)  # over channels, which are last here
        self.depthwise_conv = nn.Conv1d(channels, channels, kernel, groups=channels, bias=False)
        self.depthwise_layer_norm = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.activation = activation(config.hidden_act)
        self.pointwise_conv2 = PointwiseConv1d(channels, channels)
        self.dropout = nn.Dropout(config.conformer_conv_dropout)

    def forward(
        self, hidden_states: torch.Tensor, valid: torch.Tensor | None = None, cache: FrameCache | None = None
    ) -> torch.Tensor:
        """(B, T, C) -> (B, T, C). `cache` (streaming) holds the depthwise kernel's last K-1 inputs before these
        frames (zeros at the stream's start, as the kernel's left padding)."""
        hidden_states = self.layer_norm(hidden_states)
        if valid is not None:
            # Padded frames are zeroed before the convolutions (fairseq2 does the same): the causal kernel only
            # looks left, so right padding could not leak anyway, but zeros keep padded outputs finite and tame.
            hidden_states = hidden_states.masked_fill(~valid[..., None], 0.0)
        hidden_states = self.glu(self.pointwise_conv1(hidden_states))  # (B, T, C)
        if cache is None:
            hidden_states = causal_depthwise_conv(hidden_states, self.depthwise_conv.weight)
        else:
            frames = hidden_states.shape[1]
            joined = cache.extend(hidden_states)  # (B, K-1 + T, C): the cached inputs, then these
            hidden_states = causal_depthwise_conv(joined, self.depthwise_conv.weight)[:, -frames:]
        hidden_states = self.activation(self.depthwise_layer_norm(hidden_states))
        return self.dropout(self.pointwise_conv2(hidden_states))


class Wav2Vec2BertSelfAttention(nn.Module):
    """Multi-head self-attention with the position scheme the config names.

    `forward` projects, picks the position term once (`project`), and hands both to `attention.attend`, which
    keeps the per-pair position bias linear in memory (it is built per chunk of query rows from the distinct
    distances, never as a (frames, frames, head_dim) tensor). The parameters are the checkpoint's.
    """

    def __init__(self, config: Wav2Vec2BertConfig, is_adapter_attention: bool = False) -> None:
        super().__init__()
        hidden_size = config.output_hidden_size if is_adapter_attention else config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_size = hidden_size // config.num_attention_heads
        self.scaling = self.head_size**-0.5
        self.position_embeddings_type = None if is_adapter_attention else config.position_embeddings_type
        self.linear_q = nn.Linear(hidden_size, hidden_size)
        self.linear_k = nn.Linear(hidden_size, hidden_size)
        self.linear_v = nn.Linear(hidden_size, hidden_size)
        self.linear_out = nn.Linear(hidden_size, hidden_size)
        self.dropout = nn.Dropout(p=config.attention_dropout)
        self.use_sdpa = True  # False computes the probabilities explicitly (attn_implementation="eager")
        if self.position_embeddings_type == "relative":
            self.linear_pos = nn.Linear(hidden_size, hidden_size, bias=False)
            self.pos_bias_u = nn.Parameter(torch.zeros(self.num_heads, self.head_size))
            self.pos_bias_v = nn.Parameter(torch.zeros(self.num_heads, self.head_size))
        if self.position_embeddings_type == "relative_key":
            num_distances = config.left_max_position_embeddings + config.right_max_position_embeddings + 1
            self.distance_embedding = nn.Embedding(num_distances, self.head_size)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Transformer-XL's u and v start Xavier-uniform, as transformers initialises them."""
        if self.position_embeddings_type == "relative":
            nn.init.xavier_uniform_(self.pos_bias_u)
            nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(
        self,
        hidden_states: torch.Tensor,
        valid: torch.Tensor | None = None,
        position_embeddings: PositionInputs | None = None,
        output_attentions: bool = False,
        chunks: Chunking | None = None,
        cache: AttentionCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, T, C); valid (B, T) bool or None; `position_embeddings` what the encoder shares for
        the config's scheme (`position_inputs`; None: no position term); `chunks` a chunked model's chunks.
        Returns (B, T, C), (B, H, T, T) or None. With a `cache` (streaming), hidden_states are the frames of one
        chunk, which read the cached left context and themselves."""
        batch, frames, channels = hidden_states.shape
        query, key, value, position = self.project(hidden_states, position_embeddings)
        if cache is not None:
            key, value = cache.extend(key, value)  # (B, H, kept + T, d)
            output = attend_recent(query, key, value, position=position, scale=self.scaling)
            output = output.transpose(1, 2).reshape(batch, frames, channels)  # (B, H, T, d) -> (B, T, C)
            return self.linear_out(output), None
        output, probabilities = attend(
            query, key, value, position=position, valid=valid, scale=self.scaling,
            dropout_p=self.dropout.p if self.training else 0.0, output_attentions=output_attentions,
            explicit=not self.use_sdpa, chunks=chunks,
        )
        output = output.transpose(1, 2).reshape(batch, frames, channels)  # (B, H, T, d) -> (B, T, C)
        return self.linear_out(output), probabilities

    def project(
        self, hidden_states: torch.Tensor, shared: PositionInputs | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Position | None]:
        """Query, key, value (B, H, T, d) and the position term, chosen by the type of what the encoder shares
        (the scheme's name is read once, in `position_inputs`)."""
        batch, frames, _ = hidden_states.shape

        def heads(projected: torch.Tensor) -> torch.Tensor:
            return projected.view(batch, frames, self.num_heads, self.head_size).transpose(1, 2)  # (B, H, T, d)

        if isinstance(shared, RotaryAngles):
            # As in transformers: the rotation is applied to the block input, before the q/k projections.
            rotated = apply_rotary(hidden_states, shared.cos, shared.sin, self.num_heads)
            query, key = heads(self.linear_q(rotated)), heads(self.linear_k(rotated))
            return query, key, heads(self.linear_v(hidden_states)), None
        query, key, value = (heads(layer(hidden_states)) for layer in (self.linear_q, self.linear_k, self.linear_v))
        if isinstance(shared, Sinusoids):
            # Transformer-XL: the content term uses q + u, the position term q + v against projected sinusoids.
            table = self.linear_pos(shared.table).view(-1, self.num_heads, self.head_size)  # (2T-1, H, d)
            position = RelativePosition(table.transpose(0, 1), query + self.pos_bias_v[None, :, None, :])
            return query + self.pos_bias_u[None, :, None, :], key, value, position
        if isinstance(shared, ClampedDistances):
            table = self.distance_embedding.weight.to(query.dtype)  # (left + right + 1, d)
            return query, key, value, ShawPosition(table, shared.left)
        return query, key, value, None


@dataclass
class LayerCache:
    """What one Conformer block keeps between chunks when it streams."""

    attention: AttentionCache
    convolution: FrameCache


class Wav2Vec2BertEncoderLayer(nn.Module):
    """One Conformer block: ffn1 (half step) -> self-attention -> convolution -> ffn2 (half step) -> LN."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        embed_dim = config.hidden_size
        self.ffn1_layer_norm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        self.ffn1 = Wav2Vec2BertFeedForward(config)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        self.self_attn_dropout = nn.Dropout(config.attention_dropout)
        self.self_attn = Wav2Vec2BertSelfAttention(config)
        self.conv_module = Wav2Vec2BertConvolutionModule(config)
        self.ffn2_layer_norm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        self.ffn2 = Wav2Vec2BertFeedForward(config)
        self.final_layer_norm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)

    def forward(
        self,
        hidden_states: torch.Tensor,
        valid: torch.Tensor | None = None,
        position_embeddings: PositionInputs | None = None,
        output_attentions: bool = False,
        chunks: Chunking | None = None,
        cache: LayerCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Half-step residuals as one fused add (alpha=0.5 is exact, so the sum is bit-identical to h + 0.5 * f).
        hidden_states = torch.add(hidden_states, self.ffn1(self.ffn1_layer_norm(hidden_states)), alpha=0.5)
        attended, probabilities = self.self_attn(
            self.self_attn_layer_norm(hidden_states), valid, position_embeddings, output_attentions, chunks,
            None if cache is None else cache.attention,
        )
        hidden_states = hidden_states + self.self_attn_dropout(attended)
        convolution_cache = None if cache is None else cache.convolution
        hidden_states = hidden_states + self.conv_module(hidden_states, valid, convolution_cache)
        hidden_states = torch.add(hidden_states, self.ffn2(self.ffn2_layer_norm(hidden_states)), alpha=0.5)
        return self.final_layer_norm(hidden_states), probabilities


@dataclass(frozen=True)
class Checkpointing:
    """How the Conformer blocks recompute their activations in the backward pass (transformers' arguments of
    `activation_checkpointing_enable`)."""

    every_n_layers: int = 1  # blocks 0, n, 2n, ... recompute; the others keep their activations
    offload: bool = False  # what a recompute starts from waits in host memory, not on the accelerator
    checkpoint_kwargs: dict[str, Any] = field(default_factory=lambda: {"use_reentrant": False})  # for checkpoint()

    def run(self, layer: nn.Module, *inputs: Any) -> Any:
        """`layer(*inputs)` under torch.utils.checkpoint, offloaded as asked."""
        if not self.offload:
            return checkpoint(layer, *inputs, **self.checkpoint_kwargs)
        device = inputs[0].device
        with torch.autograd.graph.save_on_cpu(pin_memory=device.type == "cuda", device_type=device.type):
            return checkpoint(layer, *inputs, **self.checkpoint_kwargs)


class Wav2Vec2BertEncoder(nn.Module):
    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(Wav2Vec2BertEncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.layer_norm = None  # SeamlessM4T v2's LayerNorm after the last block (config.add_encoder_layer_norm)
        if config.add_encoder_layer_norm:
            self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False  # transformers' name for "recompute blocks in training"; how: below
        self.checkpointing = Checkpointing()

    def forward(
        self,
        hidden_states: torch.Tensor,
        valid: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        num_layers: int | None = None,
        chunks: Chunking | None = None,
        caches: list[LayerCache] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """Run the first `num_layers` blocks (all by default): (last, hidden_states, attentions).

        `hidden_states` are the blocks' outputs; `last` passes through `layer_norm` (when the config has one)
        only when every block ran, as SeamlessM4T v2 does. `chunks`: a chunked model's chunks; `caches` (one per
        block, streaming): the frames are one chunk and each block reads and extends its cache.
        """
        if valid is not None:
            hidden_states = hidden_states.masked_fill(~valid[..., None], 0.0)
        hidden_states = self.dropout(hidden_states)
        position_embeddings = position_inputs(self.config, hidden_states)
        all_hidden_states = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for index, layer in enumerate(layers):
            skip = self.training and self.config.layerdrop > 0.0 and torch.rand(()) < self.config.layerdrop
            if not skip:
                if recompute and index % self.checkpointing.every_n_layers == 0:
                    hidden_states, probabilities = self.checkpointing.run(
                        layer, hidden_states, valid, position_embeddings, output_attentions, chunks
                    )
                else:
                    hidden_states, probabilities = layer(
                        hidden_states, valid, position_embeddings, output_attentions, chunks,
                        None if caches is None else caches[index],
                    )
            else:
                probabilities = None
            if output_hidden_states:
                all_hidden_states.append(hidden_states)
            if output_attentions:
                all_attentions.append(probabilities)
        if self.layer_norm is not None and len(layers) == len(self.layers):
            hidden_states = self.layer_norm(hidden_states)
        return (
            hidden_states,
            tuple(all_hidden_states) if output_hidden_states else None,
            tuple(all_attentions) if output_attentions else None,
        )
