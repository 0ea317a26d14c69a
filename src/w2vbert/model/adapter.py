"""The Conformer adapter on top of the encoder (`add_adapter`): strided layers that shorten time by
`adapter_stride` each, the modules under `adapter` in the checkpoint.

In order: `Wav2Vec2BertAdapterLayer` (strided convolution residual + strided convolution -> self-attention ->
feed-forward) and `Wav2Vec2BertAdapter` (the projection to `output_hidden_size`, then the layers, with the
lengths each one leaves). How padding is kept out of the strided convolutions is said where they run. A
chunked model's adapter attends within its chunks (size / stride per layer; model/chunking.py); streaming hands
each layer an `AdapterLayerCache`: the convolutions' left inputs and the attention's left context.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from w2vbert.model.chunking import AttentionCache, Chunking, FrameCache
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.conformer import Wav2Vec2BertFeedForward, Wav2Vec2BertSelfAttention
from w2vbert.model.layers import strided_conv_lengths
from w2vbert.utils.padding import lengths_to_mask


@dataclass
class AdapterLayerCache:
    """What one adapter layer keeps between chunks when it streams."""

    residual_inputs: FrameCache  # the residual convolution's last stride // 2 inputs (its left reach)
    attention_inputs: FrameCache  # the same for the convolution before self-attention
    attention: AttentionCache
    final: bool = False  # the stream ends with these frames: the convolutions pad their right side, as at a clip's end


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
        chunks: Chunking | None = None,
        cache: AdapterLayerCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, C) -> (B, T', C) with T' = (T + 2*(stride//2) - kernel) // stride + 1.

        `readable` (B, T) marks the frames the strided convolutions may read (each clip's frames as it had them
        alone; see `Wav2Vec2BertModel.alone_lengths`); `valid_out` (B, T') the valid output frames, which the
        self-attention attends to; `chunks` the output frames' chunks. With a `cache` (streaming) the frames are
        one chunk, which the convolutions read after their cached inputs.
        """
        residual_cache = attention_cache = None
        if cache is not None:
            residual_cache, attention_cache = cache.residual_inputs, cache.attention_inputs
        final = cache is not None and cache.final
        residual = self._strided_conv(
            self.residual_layer_norm(hidden_states), self.residual_conv, readable, residual_cache, final
        )
        hidden_states = self._strided_conv(
            self.self_attn_layer_norm(hidden_states), self.self_attn_conv, readable, attention_cache, final
        )
        hidden_states, probabilities = self.self_attn(
            hidden_states, valid_out, None, output_attentions, chunks, None if cache is None else cache.attention
        )
        hidden_states = self.self_attn_dropout(hidden_states) + residual
        return self.ffn(self.ffn_layer_norm(hidden_states)) + hidden_states, probabilities

    def _strided_conv(
        self,
        hidden_states: torch.Tensor,
        conv: nn.Conv1d,
        readable: torch.Tensor | None,
        cache: FrameCache | None = None,
        final: bool = False,
    ) -> torch.Tensor:
        if cache is not None:
            return self._streamed_conv(hidden_states, conv, cache, final)
        if readable is not None:
            # The strided kernel reaches up to stride//2 frames past a clip's end. Alone, those are the frames
            # the clip had (transformers reads them) and then the conv's zero padding; in a batch the frames past
            # them belong to the padding, so zero those (transformers does not: its batched adapter output
            # depends on the padding).
            hidden_states = hidden_states.masked_fill(~readable[..., None], 0.0)
        return self.activation(conv(hidden_states.transpose(1, 2))).transpose(1, 2)

    def _streamed_conv(
        self, hidden_states: torch.Tensor, conv: nn.Conv1d, cache: FrameCache, final: bool
    ) -> torch.Tensor:
        """The outputs a chunk's n input frames complete, after the a frames before them (a and, unless final, n
        are multiples of the stride s): outputs a/s .. from n/s of them, or to the clip's last output when final.

        Output t reads inputs s*t - p .. s*t - p + k - 1 (p = s // 2). The cache holds the p inputs before the
        chunk (zeros at the start: the convolution's left padding), so on the joined frames output m of the chunk
        reads joined m*s .. m*s + k - 1, an unpadded convolution; a final chunk pads its right side with zeros,
        as the convolution pads a clip's end. Drawn for k = 3, s = 2, p = 1, n = 4 (c: cached, x: this chunk):

            joined   c x x x x        output 0 reads joined 0..2, output 1 joined 2..4: nothing past the chunk
        """
        kernel, stride = conv.kernel_size[0], conv.stride[0]
        frames = hidden_states.shape[1]
        joined = cache.extend(hidden_states)  # (B, p + n, C)
        if final:
            consumed = self._consumed_of(cache, frames)
            outputs = (consumed + frames + 2 * (stride // 2) - kernel) // stride + 1 - consumed // stride
        else:
            outputs = frames // stride
        missing = stride * (outputs - 1) + kernel - joined.shape[1]
        if missing > 0:
            joined = F.pad(joined, (0, 0, 0, missing))  # the zeros the convolution pads a clip's end with
        out = F.conv1d(joined.transpose(1, 2), conv.weight, conv.bias, stride=stride)  # (B, 2C, outputs)
        return self.activation(out[:, :, :outputs]).transpose(1, 2)

    @staticmethod
    def _consumed_of(cache: FrameCache, frames: int) -> int:
        """Input frames read before this chunk: the cache counts them."""
        return cache.seen - frames


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
        chunks: Chunking | None = None,
        caches: list[AdapterLayerCache] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, hidden), valid lengths (B,) or None, and the lengths the clips had alone (B,) (default: the valid
        ones) -> (B, T', output_hidden) and the new valid lengths. `chunks`: the encoder's chunks, which each
        layer divides by its stride; `caches` (one per layer, streaming): the frames are one chunk."""
        if self.proj is not None:
            hidden_states = self.proj_layer_norm(self.proj(hidden_states))
        if alone_lengths is None:
            alone_lengths = lengths
        for index, layer in enumerate(self.layers):
            if self.training and self.layerdrop > 0.0 and torch.rand(()) <= self.layerdrop:
                continue  # a dropped layer leaves frames and lengths as they were
            if chunks is not None:
                chunks = chunks.after_stride(self.stride)  # (B, T / stride) after this layer
            readable = valid_out = new_lengths = None
            if lengths is not None:
                new_lengths = self.output_lengths(lengths)
                readable = lengths_to_mask(alone_lengths, hidden_states.shape[1])
                valid_out = lengths_to_mask(new_lengths, self.output_lengths(hidden_states.shape[1]))
                alone_lengths = self.output_lengths(alone_lengths)
            hidden_states, _ = layer(
                hidden_states, readable, valid_out, chunks=chunks, cache=None if caches is None else caches[index]
            )
            lengths = new_lengths
        return hidden_states, lengths
