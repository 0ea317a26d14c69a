"""The Conformer adapter on top of the encoder (`add_adapter`): strided layers that shorten time by
`adapter_stride` each, the modules under `adapter` in the checkpoint.

In order: `Wav2Vec2BertAdapterLayer` (strided convolution residual + strided convolution -> self-attention ->
feed-forward) and `Wav2Vec2BertAdapter` (the projection to `output_hidden_size`, then the layers, with the
lengths each one leaves). How padding is kept out of the strided convolutions is said where they run.
"""

from __future__ import annotations

import torch
from torch import nn

from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.conformer import Wav2Vec2BertFeedForward, Wav2Vec2BertSelfAttention
from w2vbert.model.layers import strided_conv_lengths
from w2vbert.utils.padding import lengths_to_mask


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
