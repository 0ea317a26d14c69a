"""`Wav2Vec2BertModel`, the bare encoder: the recipe its modules follow, its feature projection, and the model.

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
no remapping. Padding travels as a boolean `valid` mask (B, T), True on real frames (model/inputs.py makes it
of the attention mask). Every stage that mixes time steps says how it keeps padded frames out, so a clip of a
right-padded batch gives the same output alone and inside the batch; another 0/1 mask gives transformers' numbers.

In this file: `Wav2Vec2BertFeatureProjection`, `Wav2Vec2BertModel`, which holds the parts: the Conformer blocks
(`encoder`, model/conformer.py, with the position schemes of model/positions.py), the adapter (model/adapter.py);
and `reuse_freed_memory`, with which a CPU forward keeps freed memory for its activations.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from w2vbert.model.adapter import Wav2Vec2BertAdapter
from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.chunking import Chunking, chunking_of
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.conformer import Wav2Vec2BertEncoder, Wav2Vec2BertFeedForward
from w2vbert.model.inputs import Padding
from w2vbert.model.outputs import LayerEmbedding, Wav2Vec2BaseModelOutput
from w2vbert.model.spec_augment import compute_mask_indices
from w2vbert.utils.memory import keep_freed_memory


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
        # Dynamic chunk training (training/tasks.py) sets one batch's draw here; None: the config's chunks.
        self.training_chunks: Chunking | None = None
        self.post_init()

    @property
    def chunks(self) -> Chunking | None:
        """The attention chunks this forward uses: a training batch's draw, else the config's (None: full context)."""
        return self.training_chunks if self.training_chunks is not None else chunking_of(self.config)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The SpecAugment mask embedding starts U(0, 1), as transformers initialises it."""
        if self.masked_spec_embed is not None:
            self.masked_spec_embed.uniform_()

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
        output (before the adapter). `attentions` holds each block's (B, heads, T, T) probabilities. Flags left
        None take the config's values (`output_flags`); `return_dict=False` returns the set fields as a tuple.
        """
        output_attentions, output_hidden_states, return_dict = self.output_flags(
            output_attentions, output_hidden_states, return_dict
        )
        padding = self.check_inputs(input_features, attention_mask)
        reuse_freed_memory(input_features)
        lengths, valid = (None, None) if padding is None else (padding.lengths, padding.valid)
        hidden_states, extract_features = self.feature_projection(input_features)
        hidden_states = self._mask_hidden_states(hidden_states, mask_time_indices, lengths)
        chunks = self.chunks
        hidden_states, all_hidden_states, all_attentions = self.encoder(
            hidden_states, valid, output_hidden_states, output_attentions, chunks=chunks
        )
        if self.intermediate_ffn is not None:
            hidden_states = torch.add(hidden_states, self.intermediate_ffn(hidden_states), alpha=0.5)
        if self.adapter is not None:
            hidden_states, _ = self.adapter(
                hidden_states, lengths, self.adapter_reads(input_features, padding), chunks=chunks
            )
        if self.inner_layer_norm is not None:
            hidden_states = self.inner_layer_norm(hidden_states)
        output = Wav2Vec2BaseModelOutput(hidden_states, extract_features, all_hidden_states, all_attentions)
        return output if return_dict else output.to_tuple()

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
        padding = self.check_inputs(input_features, attention_mask)
        reuse_freed_memory(input_features)
        valid = None if padding is None else padding.valid
        hidden_states, _ = self.feature_projection(input_features)
        hidden_states, _, _ = self.encoder(hidden_states, valid, num_layers=index, chunks=self.chunks)
        if valid is None:
            valid = torch.ones(input_features.shape[:2], dtype=torch.bool, device=input_features.device)
        return LayerEmbedding(hidden_states, valid)

    def adapter_reads(self, input_features: torch.Tensor, padding: Padding | None) -> torch.Tensor | None:
        """The frames (B,) each clip's adapter convolutions read, from the first: for a right-padded batch the clip's
        own (`alone_lengths`); for another mask, as transformers, every frame, padding included."""
        if padding is None:
            return None
        if padding.right_padded:
            return self.alone_lengths(input_features, padding.lengths)
        return torch.full_like(padding.lengths, input_features.shape[1])

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
        return self.config.layer_index(layer)

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


def reuse_freed_memory(input_features: torch.Tensor) -> None:
    """On the CPU, the process's freed memory serves the next activations instead of fresh pages (utils/memory.py:
    once a process, bounded unless W2VBERT_KEEP_FREED_MEMORY says otherwise); not while torch.compile or
    torch.export traces the forward."""
    if input_features.device.type == "cpu" and not torch.compiler.is_compiling():
        keep_freed_memory()
