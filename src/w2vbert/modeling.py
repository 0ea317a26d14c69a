"""The Wav2Vec2-BERT encoder: feature projection, Conformer blocks, optional adapter, and `Wav2Vec2BertModel`.

Module attribute names are the Hugging Face checkpoint names, so `model.safetensors` from the hub loads with
no remapping. Padding travels as a boolean `valid` mask (batch, frames), True on real frames, right-padded.
Every stage that mixes time steps says how it keeps padded frames out, so a clip gives the same output
alone and inside a padded batch.

Profile (torch.profiler, full 600M config, 1 x 500 frames, CPU, 2 threads; issue 6): in fp32 the Linear matmuls
were 48% of the time, the three convolutions of each block 17% (the kernel-1 ones through oneDNN on transposed
(B, C, T) input), copies 15% (those transposes and the causal F.pad), layer norms 8%, adds/muls 8%, attention
(SDPA with the Shaw bias) only 5% with its bias gather 2%. In bf16 the copies were the top entry (26%) and the
convolutions 21%, ahead of the matmuls (29% with their bias copies). Hence the convolution module runs
channels-last as matmuls plus a channels-last depthwise conv (no copies), and the half-step residuals are single
fused adds. Remaining copies are addmm's bias broadcast and the attention output's head merge.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .config import Wav2Vec2BertConfig
from .outputs import LayerEmbedding, Wav2Vec2BaseModelOutput
from .pretrained import Wav2Vec2BertPreTrainedModel, lengths_to_mask
from .spec_augment import compute_mask_indices

# Query rows per attention chunk are chosen so one chunk's (batch, heads, rows, frames) bias stays under this
# many elements (128 MB in fp32): attention memory then grows linearly with the clip, not quadratically.
ATTENTION_CHUNK_ELEMENTS = 2**25
# ... and on CPU at most this many rows: a smaller bias stays in cache between being built and read (fp32,
# 600M model, 500 frames: 256 rows per chunk 2-13% faster than one chunk; bf16 the same either way).
ATTENTION_CHUNK_ROWS_CPU = 256
# CPU flash attention that also returns each row's log-sum-exp, which merging partial attentions needs (an aten
# op of PyTorch >= 2.2 behind F.scaled_dot_product_attention on CPU); without it the bias path serves alone.
_FLASH_CPU = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


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


class Wav2Vec2BertFeatureProjection(nn.Module):
    """LayerNorm + Linear from the stacked fbank (160) to the model width. Per frame: padding stays put."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(config.feature_projection_input_dim, eps=config.layer_norm_eps)
        self.projection = nn.Linear(config.feature_projection_input_dim, config.hidden_size)
        self.projection.fan_in_uniform = True  # initialised U(-1/sqrt(160), 1/sqrt(160)), as transformers does
        self.dropout = nn.Dropout(config.feat_proj_dropout)

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
    (`F.linear` on the squeezed weight) and the depthwise one runs as a channels-last 2-D convolution. The
    transposes a (B, C, T) layout needs were a third of the copies in the profile (see `modeling` notes).
    """

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        channels, kernel = config.hidden_size, config.conv_depthwise_kernel_size
        self.layer_norm = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.pointwise_conv1 = nn.Conv1d(channels, 2 * channels, kernel_size=1, bias=False)
        self.glu = nn.GLU(dim=-1)  # over channels, which are last here
        self.depthwise_conv = nn.Conv1d(channels, channels, kernel, groups=channels, bias=False)
        self.depthwise_layer_norm = nn.LayerNorm(channels, eps=config.layer_norm_eps)
        self.activation = activation(config.hidden_act)
        self.pointwise_conv2 = nn.Conv1d(channels, channels, kernel_size=1, bias=False)
        self.dropout = nn.Dropout(config.conformer_conv_dropout)

    def forward(self, hidden_states: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.layer_norm(hidden_states)
        if valid is not None:
            # Padded frames are zeroed before the convolutions (fairseq2 does the same): the causal kernel only
            # looks left, so right padding could not leak anyway, but zeros keep padded outputs finite and tame.
            hidden_states = hidden_states.masked_fill(~valid[..., None], 0.0)
        hidden_states = self.glu(pointwise(self.pointwise_conv1, hidden_states))  # (B, T, C)
        hidden_states = causal_depthwise_conv(hidden_states, self.depthwise_conv.weight)
        hidden_states = self.activation(self.depthwise_layer_norm(hidden_states))
        return self.dropout(pointwise(self.pointwise_conv2, hidden_states))


def pointwise(layer: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """A kernel-1 Conv1d applied to channels-last (B, T, C_in) -> (B, T, C_out), as the matmul it is.

    `layer` may also be an `nn.Linear`-like module (what `quantization.optimize_for_inference` swaps in for
    int8), which is then simply called.
    """
    if isinstance(layer, nn.Conv1d):
        return F.linear(hidden_states, layer.weight[:, :, 0], layer.bias)
    return layer(hidden_states)


def causal_depthwise_conv(hidden_states: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Depthwise convolution over time that only looks left: (B, T, C) and weight (C, 1, K) -> (B, T, C).

    Frame t sees frames t-K+1 .. t (zeros before the start), as Conv1d on a left-padded (B, C, T) input. Run as
    a 2-D convolution on a (B, C, 1, T) view whose memory is channels-last, which oneDNN takes without a
    reorder, padded by K-1 on both sides (cheaper than an F.pad copy); the first T outputs are the causal ones.
    About 3x faster than the (B, C, T) Conv1d on a 500 x 1024 input on this CPU, and bit-identical.
    """
    batch, frames, channels = hidden_states.shape
    kernel = weight.shape[-1]
    as_image = hidden_states[:, None].permute(0, 3, 1, 2)  # (B, C, 1, T) with channels-last strides: no copy
    output = F.conv2d(as_image, weight[:, :, None, :], groups=channels, padding=(0, kernel - 1))
    # (B, C, 1, T+K-1) channels-last; output t reads inputs t-K+1 .. t: keep the first T, drop the K-1 that
    # read past the end (right padding).
    return output.permute(0, 2, 3, 1)[:, :, :frames].reshape(batch, frames, channels)


class Wav2Vec2BertSelfAttention(nn.Module):
    """Multi-head self-attention with the position scheme the config names.

    Position schemes add a per-pair score bias. It is built one chunk of query rows at a time from the
    distinct distances (73 for Shaw's clamped [-64, 8]), never as a (frames, frames, head_dim) tensor, and
    handed to `scaled_dot_product_attention` as its additive mask.
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
            self.left_max_position_embeddings = config.left_max_position_embeddings
            self.right_max_position_embeddings = config.right_max_position_embeddings
            num_distances = config.left_max_position_embeddings + config.right_max_position_embeddings + 1
            self.distance_embedding = nn.Embedding(num_distances, self.head_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        valid: torch.Tensor | None = None,
        position_embeddings: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """hidden_states (B, T, C); valid (B, T) bool or None. Returns (B, T, C) and (B, H, T, T) or None."""
        batch, frames, channels = hidden_states.shape
        query_key_input = hidden_states
        if self.position_embeddings_type == "rotary":
            # As in transformers: the rotation is applied to the block input, before the q/k projections.
            query_key_input = apply_rotary(hidden_states, *position_embeddings, self.num_heads)
        split = (batch, frames, self.num_heads, self.head_size)
        query = self.linear_q(query_key_input).view(split).transpose(1, 2)  # (B, H, T, d)
        key = self.linear_k(query_key_input).view(split).transpose(1, 2)
        value = self.linear_v(hidden_states).view(split).transpose(1, 2)

        bias_query = query
        position_table = None
        if self.position_embeddings_type == "relative":
            # Transformer-XL: content term uses q + u, position term q + v against projected sinusoids.
            position_table = self.linear_pos(position_embeddings).view(-1, self.num_heads, self.head_size)
            position_table = position_table.transpose(0, 1)  # (H, 2T-1, d), distance T-1 ... -(T-1)
            bias_query = query + self.pos_bias_v[None, :, None, :]
            query = query + self.pos_bias_u[None, :, None, :]
        elif self.position_embeddings_type == "relative_key":
            position_table = self.distance_embedding.weight.to(query.dtype)  # (73, d)

        dropout_p = self.dropout.p if self.training else 0.0
        if position_table is None and not output_attentions and self.use_sdpa:
            key_mask = None if valid is None else valid[:, None, None, :]  # (B, 1, 1, T): padded keys out
            output = F.scaled_dot_product_attention(query, key, value, attn_mask=key_mask, dropout_p=dropout_p)
            probabilities = None
        else:
            output, probabilities = self._attend_in_chunks(
                query, key, value, bias_query, position_table, valid, output_attentions, dropout_p
            )
        output = output.transpose(1, 2).reshape(batch, frames, channels)
        return self.linear_out(output), probabilities

    def _attend_in_chunks(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        bias_query: torch.Tensor,
        position_table: torch.Tensor | None,
        valid: torch.Tensor | None,
        output_attentions: bool,
        dropout_p: float,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batch, heads, frames, _ = query.shape
        rows = frames
        if not output_attentions:
            rows = max(1, ATTENTION_CHUNK_ELEMENTS // (batch * heads * frames))
            if query.device.type == "cpu":
                rows = min(rows, ATTENTION_CHUNK_ROWS_CPU)
        key_penalty = None
        if valid is not None:
            # Padded keys get the most negative finite score (as transformers), so no row is ever all -inf.
            key_penalty = torch.zeros(valid.shape, dtype=query.dtype, device=query.device)
            key_penalty = key_penalty.masked_fill(~valid, torch.finfo(query.dtype).min)[:, None, None, :]
        if self._by_regions(query, position_table, rows, output_attentions, dropout_p):
            return self._attend_by_regions(query, key, value, bias_query, position_table, key_penalty, rows), None
        outputs, probabilities = [], []
        for start in range(0, frames, rows):
            stop = min(start + rows, frames)
            bias = self._position_bias(bias_query[:, :, start:stop], position_table, start, frames)
            if key_penalty is not None:
                bias = key_penalty if bias is None else bias + key_penalty  # not in place: bias may be a view
            if output_attentions or not self.use_sdpa:
                scores = torch.matmul(query[:, :, start:stop], key.transpose(2, 3)) * self.scaling
                if bias is not None:
                    scores = scores + bias
                weights = F.dropout(scores.softmax(dim=-1), p=dropout_p, training=dropout_p > 0)
                outputs.append(torch.matmul(weights, value))
                probabilities.append(weights)
            else:
                outputs.append(
                    F.scaled_dot_product_attention(
                        query[:, :, start:stop], key, value, attn_mask=bias, dropout_p=dropout_p, scale=self.scaling
                    )
                )
        output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
        return output, (torch.cat(probabilities, dim=2) if output_attentions else None)

    def _by_regions(
        self, query: torch.Tensor, table: torch.Tensor | None, rows: int, output_attentions: bool, dropout_p: float
    ) -> bool:
        """Whether Shaw attention splits the keys into regions (`_attend_by_regions`): CPU inference on clips long
        enough that most keys lie beyond the clamped distances. Measured against the bias path, one 600M attention,
        2 threads: fp32 0.9-1.06x at 300-600 frames, 1.47x at 700, 1.41x at 1500, 1.68x at 6000 (120 s); bf16
        0.7-0.8x at 300-600, 1.18x at 750, 1.52x at 1500, 1.75x at 6000. Hence from 2 x (rows + distances) = 658."""
        return (
            self.position_embeddings_type == "relative_key" and table is not None and query.device.type == "cpu"
            and self.use_sdpa and not output_attentions and dropout_p == 0.0
            and not (torch.is_grad_enabled() and query.requires_grad)
            and query.shape[2] >= 2 * (rows + table.shape[0]) and _FLASH_CPU is not None
        )

    def _attend_by_regions(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        bias_query: torch.Tensor,
        table: torch.Tensor,
        key_penalty: torch.Tensor | None,
        rows: int,
    ) -> torch.Tensor:
        """Shaw attention without a (rows, T) bias: for a chunk of query rows, a key further left than `left`
        from every row reads the same distance embedding e_left, so its score q.k + q.e_left is q.(k + e_left);
        likewise right of the band with e_right. Those two regions are plain attention over shifted keys; only
        the band between them gets a bias. The three partial attentions merge by their log-sum-exp, exactly."""
        frames = query.shape[2]
        left, right = self.left_max_position_embeddings, self.right_max_position_embeddings
        key_far_left, key_far_right = key + table[0], key + table[-1]

        def penalty(begin: int, end: int) -> torch.Tensor | None:
            return None if key_penalty is None else key_penalty[..., begin:end]

        outputs = []
        for start in range(0, frames, rows):
            stop = min(start + rows, frames)
            chunk = query[:, :, start:stop]
            # Keys band_start..band_stop-1 are within the clamped distances of some row of the chunk.
            band_start, band_stop = max(0, start - left), min(frames, stop + right)
            bias = self._position_bias(bias_query[:, :, start:stop], table, start - band_start, band_stop - band_start)
            if key_penalty is not None:
                bias = bias + penalty(band_start, band_stop)
            band = slice(band_start, band_stop)
            parts = [_FLASH_CPU(chunk, key[:, :, band], value[:, :, band], attn_mask=bias, scale=self.scaling)]
            if band_start > 0:
                parts.append(_FLASH_CPU(chunk, key_far_left[:, :, :band_start], value[:, :, :band_start],
                                        attn_mask=penalty(0, band_start), scale=self.scaling))
            if band_stop < frames:
                parts.append(_FLASH_CPU(chunk, key_far_right[:, :, band_stop:], value[:, :, band_stop:],
                                        attn_mask=penalty(band_stop, frames), scale=self.scaling))
            log_sums = torch.stack([log_sum for _, log_sum in parts])  # (parts, B, H, rows), float32
            weights = torch.softmax(log_sums, dim=0)[..., None]  # each part's share of the row's probability
            merged = sum(weight * part.float() for weight, (part, _) in zip(weights, parts, strict=True))
            outputs.append(merged.to(query.dtype))
        return torch.cat(outputs, dim=2)

    def _position_bias(
        self, query: torch.Tensor, table: torch.Tensor | None, start: int, frames: int
    ) -> torch.Tensor | None:
        """Score bias for query rows start..start+rows against all keys: (B, H, rows, T), or None.

        Each query is projected on the few distinct distance embeddings once (B, H, rows, distances); the pairs
        then read those scores through strided views, with no (rows, T) index tensor: a gather through an
        expanded int64 index cost more than the attention itself (profile, 600M model, 500 frames, bf16).
        """
        if table is None:
            return None
        # Scale the (distances, d) table, not the (B, H, rows, distances) product: far less to multiply.
        per_distance = torch.matmul(query, (table * self.scaling).transpose(-1, -2))
        *outer, rows, distances = per_distance.shape
        if self.position_embeddings_type == "relative":
            # Transformer-XL: the table runs over distances T-1 down to -(T-1), and pair (i, j) reads column
            # (T-1) - i + j: stepping one row back shifts the row by one column (the "relative shift" view).
            return shifted_rows(per_distance, frames, frames - 1 - start)
        # Shaw et al.: pair (i, j) reads distance clamp(j - i, -left, right): per row, the left-most distance
        # for every key left of a band of `distances` keys, the band itself, then the right-most distance.
        # Stored skewed, row r shifted right by rows - 1 - r, those three parts are the same columns in every
        # row, so the buffer is three broadcast copies (a torch.where over the (rows, T) pattern cost 10x
        # more); the bias is the unskewing strided view of it.
        left = self.left_max_position_embeddings
        band = start + rows - 1  # skewed column where every row's band starts
        width = frames + distances - 1 + rows - 1  # skewed columns
        skewed = per_distance.new_empty(*outer, rows, width)
        skewed[..., :band] = per_distance[..., :1]  # broadcast copies (torch.cat of expanded parts is 20x slower)
        skewed[..., band : band + distances] = per_distance
        skewed[..., band + distances :] = per_distance[..., -1:]
        # unskewed column c of row r is skewed column c + rows - 1 - r; key j is unskewed column j + left
        return shifted_rows(skewed, frames, rows - 1 + left)


def shifted_rows(table: torch.Tensor, columns: int, first: int) -> torch.Tensor:
    """(..., rows, columns) whose row r is `table`'s row r from column `first - r` on: each row starts one
    column further left than the row above (the relative-shift view, no copy on CPU).

    CUDA's attention kernels fail on a mask with rows so unaligned (H100, bf16: cudaErrorMisalignedAddress), so
    GPUs get a contiguous copy, cheap there; CPU kernels read the view as it is.
    """
    *outer, rows, _ = table.shape
    strides = table.stride()
    view = table.as_strided(
        (*outer, rows, columns), (*strides[:-2], strides[-2] - strides[-1], strides[-1]),
        table.storage_offset() + first * strides[-1],
    )
    return view if view.device.type == "cpu" else view.contiguous()


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
        position_embeddings: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
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
        position_embeddings = self.position_embeddings(hidden_states)
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

    def position_embeddings(self, hidden_states: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...] | None:
        """What the attention of every layer shares: sinusoids ("relative") or cos/sin ("rotary")."""
        kind, frames = self.config.position_embeddings_type, hidden_states.shape[1]
        device = hidden_states.device
        if kind == "relative":
            return relative_sinusoids(frames, self.config.hidden_size, device).to(hidden_states.dtype)
        if kind == "rotary":
            head_dim = self.config.hidden_size // self.config.num_attention_heads
            exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
            inv_freq = 1.0 / (self.config.rotary_embedding_base**exponents)
            angles = torch.arange(frames, device=device).float()[:, None] * inv_freq  # (T, d/2)
            angles = torch.cat((angles, angles), dim=-1)  # (T, d)
            return angles.cos().to(hidden_states.dtype), angles.sin().to(hidden_states.dtype)
        return None


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
        valid: torch.Tensor | None = None,
        valid_out: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, C) -> (B, T', C) with T' = (T + 2*(stride//2) - kernel) // stride + 1."""
        residual = self._strided_conv(self.residual_layer_norm(hidden_states), self.residual_conv, valid)
        hidden_states = self._strided_conv(self.self_attn_layer_norm(hidden_states), self.self_attn_conv, valid)
        hidden_states, probabilities = self.self_attn(hidden_states, valid_out, None, output_attentions)
        hidden_states = self.self_attn_dropout(hidden_states) + residual
        return self.ffn(self.ffn_layer_norm(hidden_states)) + hidden_states, probabilities

    def _strided_conv(self, hidden_states: torch.Tensor, conv: nn.Conv1d, valid: torch.Tensor | None) -> torch.Tensor:
        if valid is not None:
            # The strided kernel reaches up to stride//2 frames past a clip's end. Alone, those are the conv's
            # zero padding; in a batch they are other frames, so zero them (transformers does not: its
            # batched adapter output depends on the padding).
            hidden_states = hidden_states.masked_fill(~valid[..., None], 0.0)
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
        """Frames after one adapter layer, from the convolution's own arithmetic (padding stride // 2)."""
        return (lengths + 2 * (self.stride // 2) - self.kernel_size) // self.stride + 1

    def forward(
        self, hidden_states: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, hidden) and valid lengths (B,) or None -> (B, T', output_hidden) and the new lengths."""
        if self.proj is not None:
            hidden_states = self.proj_layer_norm(self.proj(hidden_states))
        for layer in self.layers:
            if self.training and self.layerdrop > 0.0 and torch.rand(()) <= self.layerdrop:
                continue  # a dropped layer leaves frames and lengths as they were
            valid = valid_out = new_lengths = None
            if lengths is not None:
                new_lengths = self.output_lengths(lengths)
                valid = lengths_to_mask(lengths, hidden_states.shape[1])
                valid_out = lengths_to_mask(new_lengths, self.output_lengths(hidden_states.shape[1]))
            hidden_states, _ = layer(hidden_states, valid, valid_out)
            lengths = new_lengths
        return hidden_states, lengths


class Wav2Vec2BertModel(Wav2Vec2BertPreTrainedModel):
    """The bare encoder: `input_features` (B, T, 160) -> `last_hidden_state` (B, T', output_hidden_size)."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__(config)
        self.feature_projection = Wav2Vec2BertFeatureProjection(config)
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
            hidden_states, lengths = self.adapter(hidden_states, lengths)
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
        total = self.config.num_hidden_layers
        index = layer + total + 1 if layer < 0 else layer
        if not 0 <= index <= total:
            raise ValueError(f"layer must be in [-{total + 1}, {total}] for a {total}-layer model, got {layer}")
        lengths = self.check_inputs(input_features, attention_mask)
        frames = input_features.shape[1]
        valid = lengths_to_mask(lengths, frames) if lengths is not None else None
        hidden_states, _ = self.feature_projection(input_features)
        hidden_states, _, _ = self.encoder(hidden_states, valid, num_layers=index)
        if valid is None:
            valid = torch.ones(input_features.shape[:2], dtype=torch.bool, device=input_features.device)
        return LayerEmbedding(hidden_states, valid)

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
            if not hasattr(self, "masked_spec_embed"):
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
