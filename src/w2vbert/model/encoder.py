"""The Wav2Vec2-BERT encoder, module by module, and `Wav2Vec2BertModel`.

The recipe (W2v-BERT 2.0: 24 blocks of width 1024; ../shared/reference/original-checkpoint.md):

    input_features (B, T, 160): two stacked 80-bin fbank frames per 20 ms step
    -> feature_projection: LayerNorm(160) -> Linear(160, hidden)
    -> encoder: Conformer blocks, each
           x + 0.5 * ffn1(LN(x)) -> x + self_attn(LN(x)) -> x + conv_module(x) -> x + 0.5 * ffn2(LN(x)) -> LN(x)
       with self-attention's position term chosen by `position_embeddings_type` (Shaw's clamped distances for
       W2v-BERT 2.0; the attention itself runs in model/attention.py)
    -> [intermediate_ffn (0.5 residual)] -> [adapter: strided Conformer layers] -> [inner_layer_norm]
    -> last_hidden_state (B, T', output_hidden_size)

Module attribute names are the Hugging Face checkpoint names, so `model.safetensors` from the hub loads with
no remapping. Padding travels as a boolean `valid` mask (B, T), True on real frames, right-padded. Every stage
that mixes time steps says how it keeps padded frames out, so a clip gives the same output alone and inside a
padded batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from w2vbert.model.attention import Position, RelativePosition, ShawPosition, attend
from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.layers import (
    PointwiseConv1d,
    activation,
    causal_depthwise_conv,
    strided_conv_lengths,
)
from w2vbert.model.outputs import LayerEmbedding, Wav2Vec2BaseModelOutput
from w2vbert.model.spec_augment import compute_mask_indices
from w2vbert.utils.padding import lengths_to_mask


class Wav2Vec2BertFeatureProjection(nn.Module):
    """LayerNorm + Linear from the stacked fbank (160) to the model width. Per frame: padding stays put."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.feature_projection_input_dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.feature_projection_input_dim, config.hidden_size)
        self.dropout = nn.Dropout(config.feat_proj_dropout)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The projection starts U(-1/sqrt(160), 1/sqrt(160)), weight and bias, as transformers initialises it."""
        bound = math.sqrt(1 / self.projection.in_features)
        self.projection.weight.uniform_(-bound, bound)
        self.projection.bias.uniform_(-bound, bound)

    def forward(self, input_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normed = self.layer_norm(input_features)  # (B, T, 160): returned as `extract_features`
        return self.dropout(self.projection(normed)), normed


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
        hidden_states = self.intermediate_dropout(self.intermediate_act_fn(self.intermediate_dense(hidden_states)))
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

    def forward(self, hidden_states: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.layer_norm(hidden_states)
        if valid is not None:
            # Padded frames are zeroed before the convolutions (fairseq2 does the same): the causal kernel only
            # looks left, so right padding could not leak anyway, but zeros keep padded outputs finite and tame.
            hidden_states = hidden_states.masked_fill(~valid[..., None], 0.0)
        hidden_states = self.glu(self.pointwise_conv1(hidden_states))  # (B, T, C)
        hidden_states = causal_depthwise_conv(hidden_states, self.depthwise_conv.weight)
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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, T, C); valid (B, T) bool or None; `position_embeddings` what the encoder shares for
        the config's scheme (`position_inputs`; None: no position term). Returns (B, T, C), (B, H, T, T) or None."""
        batch, frames, channels = hidden_states.shape
        query, key, value, position = self.project(hidden_states, position_embeddings)
        output, probabilities = attend(
            query, key, value, position=position, valid=valid, scale=self.scaling,
            dropout_p=self.dropout.p if self.training else 0.0, output_attentions=output_attentions,
            explicit=not self.use_sdpa,
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


@dataclass(frozen=True)
class ClampedDistances:
    """Shaw's scheme ("relative_key"): each layer embeds the distances, clamped to [-left, right]; nothing shared."""

    left: int


@dataclass(frozen=True)
class Sinusoids:
    """Transformer-XL's scheme ("relative"): sinusoids of the distances T-1 down to -(T-1), projected per layer."""

    table: torch.Tensor  # (2T - 1, C)


@dataclass(frozen=True)
class RotaryAngles:
    """The rotary scheme ("rotary"): the cos and sin of each frame's angles, applied per layer."""

    cos: torch.Tensor  # (T, head_dim)
    sin: torch.Tensor  # (T, head_dim)


PositionInputs = ClampedDistances | Sinusoids | RotaryAngles


def position_inputs(config: Wav2Vec2BertConfig, hidden_states: torch.Tensor) -> PositionInputs | None:
    """What the attention of every layer shares for the config's position scheme: the one place its name is read
    on the way through the model (the attention picks its term by the type of this)."""
    kind, frames, device = config.position_embeddings_type, hidden_states.shape[1], hidden_states.device
    if kind == "relative_key":
        return ClampedDistances(config.left_max_position_embeddings)
    if kind == "relative":
        return Sinusoids(relative_sinusoids(frames, config.hidden_size, device).to(hidden_states.dtype))
    if kind == "rotary":
        head_dim = config.hidden_size // config.num_attention_heads
        exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
        inv_freq = 1.0 / (config.rotary_embedding_base**exponents)
        angles = torch.arange(frames, device=device).float()[:, None] * inv_freq  # (T, d/2)
        angles = torch.cat((angles, angles), dim=-1)  # (T, d)
        return RotaryAngles(angles.cos().to(hidden_states.dtype), angles.sin().to(hidden_states.dtype))
    return None


def apply_rotary(hidden_states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Rotate each head's halves of (B, T, C) by position-dependent angles; cos/sin are (T, head_dim)."""
    batch, frames, channels = hidden_states.shape
    heads = hidden_states.view(batch, frames, num_heads, channels // num_heads)
    first, second = heads.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    heads = heads * cos[None, :, None, :] + rotated * sin[None, :, None, :]
    return heads.reshape(batch, frames, channels)


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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Half-step residuals as one fused add (alpha=0.5 is exact, so the sum is bit-identical to h + 0.5 * f).
        hidden_states = torch.add(hidden_states, self.ffn1(self.ffn1_layer_norm(hidden_states)), alpha=0.5)
        attended, probabilities = self.self_attn(
            self.self_attn_layer_norm(hidden_states), valid, position_embeddings, output_attentions
        )
        hidden_states = hidden_states + self.self_attn_dropout(attended)
        hidden_states = hidden_states + self.conv_module(hidden_states, valid)
        hidden_states = torch.add(hidden_states, self.ffn2(self.ffn2_layer_norm(hidden_states)), alpha=0.5)
        return self.final_layer_norm(hidden_states), probabilities


class Wav2Vec2BertEncoder(nn.Module):
    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        self.config = config
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.layers = nn.ModuleList(Wav2Vec2BertEncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.layer_norm = None  # SeamlessM4T v2's LayerNorm after the last block (config.add_encoder_layer_norm)
        if config.add_encoder_layer_norm:
            self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        valid: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        num_layers: int | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """Run the first `num_layers` blocks (all by default): (last, hidden_states, attentions).

        `hidden_states` are the blocks' outputs; `last` passes through `layer_norm` (when the config has one)
        only when every block ran, as SeamlessM4T v2 does.
        """
        if valid is not None:
            hidden_states = hidden_states.masked_fill(~valid[..., None], 0.0)
        hidden_states = self.dropout(hidden_states)
        position_embeddings = position_inputs(self.config, hidden_states)
        all_hidden_states = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        for layer in layers:
            skip = self.training and self.config.layerdrop > 0.0 and torch.rand(()) < self.config.layerdrop
            if not skip:
                if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                    hidden_states, probabilities = checkpoint(
                        layer, hidden_states, valid, position_embeddings, output_attentions, use_reentrant=False
                    )
                else:
                    hidden_states, probabilities = layer(hidden_states, valid, position_embeddings, output_attentions)
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


def relative_sinusoids(frames: int, channels: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Sinusoids of the distances frames-1, ..., 0, ..., -(frames-1): (2*frames - 1, channels), float32."""
    distance = torch.arange(frames - 1, -frames, -1, device=device, dtype=torch.int64).float()[:, None]
    div_term = torch.exp(
        torch.arange(0, channels, 2, dtype=torch.int64, device=device).float() * -(math.log(10000.0) / channels)
    )
    table = torch.zeros(2 * frames - 1, channels, device=device)
    table[:, 0::2] = torch.sin(distance * div_term)
    table[:, 1::2] = torch.cos(distance * div_term)
    return table


class Wav2Vec2BertAdapterLayer(nn.Module):
    """Conformer adapter block: strided conv residual + strided conv -> self-attention -> feed-forward."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        embed_dim = config.output_hidden_size
        kernel, stride = config.adapter_kernel_size, config.adapter_stride
        self.residual_layer_norm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        self.residual_conv = nn.Conv1d(embed_dim, 2 * embed_dim, kernel, stride=stride, padding=stride // 2)
        self.activation = nn.GLU(dim=1)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        self.self_attn_conv = nn.Conv1d(embed_dim, 2 * embed_dim, kernel, stride=stride, padding=stride // 2)
        self.self_attn = Wav2Vec2BertSelfAttention(config, is_adapter_attention=True)
        self.self_attn_dropout = nn.Dropout(config.conformer_conv_dropout)
        self.ffn_layer_norm = nn.LayerNorm(embed_dim, eps=config.layer_norm_eps)
        self.ffn = Wav2Vec2BertFeedForward(config, act_fn=config.adapter_act, hidden_size=embed_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        readable: torch.Tensor | None = None,
        valid_out: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, C) -> (B, T', C) with T' = (T + 2*(stride//2) - kernel) // stride + 1.

        `readable` (B, T) marks the frames the strided convolutions may read (each clip's frames as it had them
        alone; see `Wav2Vec2BertModel.alone_lengths`); `valid_out` (B, T') the valid output frames, which the
        self-attention attends to.
        """
        residual = self._strided_conv(self.residual_layer_norm(hidden_states), self.residual_conv, readable)
        hidden_states = self._strided_conv(self.self_attn_layer_norm(hidden_states), self.self_attn_conv, readable)
        hidden_states, probabilities = self.self_attn(hidden_states, valid_out, None, output_attentions)
        hidden_states = self.self_attn_dropout(hidden_states) + residual
        return self.ffn(self.ffn_layer_norm(hidden_states)) + hidden_states, probabilities

    def _strided_conv(
        self, hidden_states: torch.Tensor, conv: nn.Conv1d, readable: torch.Tensor | None
    ) -> torch.Tensor:
        if readable is not None:
            # The strided kernel reaches up to stride//2 frames past a clip's end. Alone, those are the frames
            # the clip had (transformers reads them) and then the conv's zero padding; in a batch the frames past
            # them belong to the padding, so zero those (transformers does not: its batched adapter output
            # depends on the padding).
            hidden_states = hidden_states.masked_fill(~readable[..., None], 0.0)
        return self.activation(conv(hidden_states.transpose(1, 2))).transpose(1, 2)


class Wav2Vec2BertAdapter(nn.Module):
    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        if config.output_hidden_size != config.hidden_size:
            self.proj = nn.Linear(config.hidden_size, config.output_hidden_size)
            self.proj_layer_norm = nn.LayerNorm(config.output_hidden_size, eps=config.layer_norm_eps)
        else:
            self.proj = self.proj_layer_norm = None
        self.layers = nn.ModuleList(Wav2Vec2BertAdapterLayer(config) for _ in range(config.num_adapter_layers))
        self.layerdrop = config.layerdrop
        self.kernel_size = config.adapter_kernel_size
        self.stride = config.adapter_stride

    def output_lengths(self, lengths: torch.Tensor | int) -> torch.Tensor | int:
        """Frames after one adapter layer."""
        return strided_conv_lengths(lengths, self.kernel_size, self.stride)

    def forward(
        self,
        hidden_states: torch.Tensor,
        lengths: torch.Tensor | None = None,
        alone_lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, hidden), valid lengths (B,) or None, and the lengths the clips had alone (B,) (default: the valid
        ones) -> (B, T', output_hidden) and the new valid lengths."""
        if self.proj is not None:
            hidden_states = self.proj_layer_norm(self.proj(hidden_states))
        if alone_lengths is None:
            alone_lengths = lengths
        for layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand(()) <= self.layerdrop:
                continue  # a dropped layer leaves frames and lengths as they were
            readable = valid_out = new_lengths = None
            if lengths is not None:
                new_lengths = self.output_lengths(lengths)
                readable = lengths_to_mask(alone_lengths, hidden_states.shape[1])
                valid_out = lengths_to_mask(new_lengths, self.output_lengths(hidden_states.shape[1]))
                alone_lengths = self.output_lengths(alone_lengths)
            hidden_states, _ = layer(hidden_states, readable, valid_out)
            lengths = new_lengths
        return hidden_states, lengths


class Wav2Vec2BertModel(Wav2Vec2BertPreTrainedModel):
    """The bare encoder: `input_features` (B, T, 160) -> `last_hidden_state` (B, T', output_hidden_size)."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__(config)
        self.feature_projection = Wav2Vec2BertFeatureProjection(config)
        self.masked_spec_embed = None  # SpecAugment's mask embedding, where the config masks at all
        if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
            self.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size).uniform_())
        self.encoder = Wav2Vec2BertEncoder(config)
        self.adapter = Wav2Vec2BertAdapter(config) if config.add_adapter else None
        self.intermediate_ffn = None
        if config.use_intermediate_ffn_before_adapter:
            self.intermediate_ffn = Wav2Vec2BertFeedForward(config, act_fn="relu")
        self.inner_layer_norm = None  # SeamlessM4T v2's LayerNorm on the output (config.add_inner_layer_norm)
        if config.add_inner_layer_norm:
            self.inner_layer_norm = nn.LayerNorm(config.output_hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The SpecAugment mask embedding starts U(0, 1), as transformers initialises it."""
        if self.masked_spec_embed is not None:
            self.masked_spec_embed.uniform_()

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each Conformer block in the backward pass instead of storing its activations."""
        self.encoder.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.encoder.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.encoder.gradient_checkpointing

    def set_attn_implementation(self, implementation: str) -> None:
        """ "sdpa" (default, fused kernels) or "eager" (explicit softmax, as transformers' eager path)."""
        if implementation not in ("sdpa", "eager"):
            raise ValueError(f"attn_implementation must be 'sdpa' or 'eager', got {implementation!r}")
        for module in self.modules():
            if isinstance(module, Wav2Vec2BertSelfAttention):
                module.use_sdpa = implementation == "sdpa"

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> Wav2Vec2BaseModelOutput | tuple:
        """input_features (B, T, 160) from the feature extractor; attention_mask (B, T), 1 on real steps.

        `hidden_states` holds num_hidden_layers + 1 tensors: the input of the first block, then each block's
        output (before the adapter). `attentions` holds each block's (B, heads, T, T) probabilities.
        """
        lengths = self.check_inputs(input_features, attention_mask)
        valid = None if lengths is None else lengths_to_mask(lengths, input_features.shape[1])
        hidden_states, extract_features = self.feature_projection(input_features)
        hidden_states = self._mask_hidden_states(hidden_states, mask_time_indices, lengths)
        hidden_states, all_hidden_states, all_attentions = self.encoder(
            hidden_states, valid, bool(output_hidden_states), bool(output_attentions)
        )
        if self.intermediate_ffn is not None:
            hidden_states = torch.add(hidden_states, self.intermediate_ffn(hidden_states), alpha=0.5)
        if self.adapter is not None:
            alone = None if lengths is None else self.alone_lengths(input_features, lengths)
            hidden_states, lengths = self.adapter(hidden_states, lengths, alone)
        if self.inner_layer_norm is not None:
            hidden_states = self.inner_layer_norm(hidden_states)
        output = Wav2Vec2BaseModelOutput(hidden_states, extract_features, all_hidden_states, all_attentions)
        return output if return_dict is not False else output.to_tuple()

    @torch.no_grad()
    def embed(
        self, input_features: torch.Tensor, attention_mask: torch.Tensor | None = None, layer: int = -1
    ) -> LayerEmbedding:
        """Hidden state after block `layer` without running the blocks above it.

        `layer` indexes like `output_hidden_states`: 0 is the projected input, k the output of block k,
        -1 (default) the last block. TTS systems that read layer 17 of 24 pay for 17 blocks, not 24. Returns
        the state (B, T, hidden_size) and the mask of valid frames (B, T) bool.
        """
        index = self.layer_index(layer)
        lengths = self.check_inputs(input_features, attention_mask)
        frames = input_features.shape[1]
        valid = lengths_to_mask(lengths, frames) if lengths is not None else None
        hidden_states, _ = self.feature_projection(input_features)
        hidden_states, _, _ = self.encoder(hidden_states, valid, num_layers=index)
        if valid is None:
            valid = torch.ones(input_features.shape[:2], dtype=torch.bool, device=input_features.device)
        return LayerEmbedding(hidden_states, valid)

    @staticmethod
    def alone_lengths(input_features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The steps each clip of a padded batch had alone: its valid steps, plus the half-padded step of a clip
        of an odd number of 10 ms frames.

        The feature extractor pads an odd frame count to even, so such a clip's last step stacks its real last
        frame with a padding frame and is masked. Alone, that step is in the tensor and transformers' adapter
        convolutions read it; a step of batch padding is not there alone. In a batch the two are told apart by
        their content: a padding step stacks two equal padding frames, a half-padded step a real frame and a
        padding one. So a clip reads the same frames alone and in any batch, and alone the frames transformers
        reads. (One case is read differently from transformers: digital silence padded with 0, whose normalised
        frames are 0 too, looks like padding.)
        """
        batch, frames, dim = input_features.shape
        if dim % 2:  # not two stacked frames: no half-padded steps to find
            return lengths
        rows = torch.arange(batch, device=lengths.device)
        step = input_features[rows, lengths.clamp(max=frames - 1)]  # (B, dim): the step right after each clip
        half_padded = (lengths < frames) & (step[:, : dim // 2] != step[:, dim // 2 :]).any(-1)
        return lengths + half_padded.long()

    def layer_index(self, layer: int) -> int:
        """`layer` as `embed` and `output_hidden_states` count (negative from the end) -> its index 0..layers."""
        total = self.config.num_hidden_layers
        if isinstance(layer, (bool, float)) or not -total - 1 <= layer <= total:
            raise ValueError(f"layer must be in [-{total + 1}, {total}] for a {total}-layer model, got {layer!r}")
        return int(layer) + total + 1 if layer < 0 else int(layer)

    def _mask_hidden_states(
        self, hidden_states: torch.Tensor, mask_time_indices: torch.Tensor | None, lengths: torch.Tensor | None
    ) -> torch.Tensor:
        """SpecAugment: given time masks always, random time/feature masks in training."""
        if not self.config.apply_spec_augment:
            return hidden_states
        batch, frames, channels = hidden_states.shape
        if mask_time_indices is None and self.training and self.config.mask_time_prob > 0:
            mask_time_indices = compute_mask_indices(
                (batch, frames), self.config.mask_time_prob, self.config.mask_time_length, lengths,
                self.config.mask_time_min_masks, device=hidden_states.device,
            )
        if mask_time_indices is not None:
            if mask_time_indices.shape != (batch, frames):
                raise ValueError(
                    f"mask_time_indices must have shape (batch, frames) = {(batch, frames)}, "
                    f"got {tuple(mask_time_indices.shape)}"
                )
            if self.masked_spec_embed is None:
                raise ValueError("mask_time_indices needs masked_spec_embed, which this config (mask probs 0) lacks")
            embed = self.masked_spec_embed.to(hidden_states.dtype)
            hidden_states = torch.where(mask_time_indices.bool()[..., None], embed, hidden_states)
        if self.training and self.config.mask_feature_prob > 0:
            feature_mask = compute_mask_indices(
                (batch, channels), self.config.mask_feature_prob, self.config.mask_feature_length, None,
                self.config.mask_feature_min_masks, device=hidden_states.device,
            )
            hidden_states = hidden_states.masked_fill(feature_mask[:, None, :], 0.0)
        return hidden_states
