"""Cached inference of a chunked model: `StreamingEncoder` takes feature frames as they come and returns the
outputs of each chunk once its last frame arrived, equal to one forward of the whole clip (model/chunking.py).

In order: `StreamState` (every cache of a stream: per block `LayerCache`, per adapter layer `AdapterLayerCache`),
and `StreamingEncoder` (`feed` frames in blocks of any size, `flush` at the end, `peek` at the partial chunk).

What each part keeps between chunks, and why that is all it needs:
- self-attention: the keys and values of `streaming_left_chunks` chunks (what a chunk's queries read; Shaw's
  distances are counted from each query's place, model/attention.py `attend_recent`);
- the depthwise convolution: its last K-1 inputs (it looks only left);
- each adapter layer: its strided convolutions' stride // 2 left inputs, and its attention's left context.
Everything else (projections, feed-forwards, LayerNorms, the CTC head) works frame by frame. So a chunk costs the
same whatever the stream's length: cached frames are bounded by the left chunks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from w2vbert.model.adapter import AdapterLayerCache
from w2vbert.model.chunking import AttentionCache, FrameCache
from w2vbert.model.conformer import LayerCache
from w2vbert.model.encoder import Wav2Vec2BertModel
from w2vbert.model.heads import Wav2Vec2BertForCTC


@dataclass
class StreamState:
    """Every cache of one stream, and the feature frames of the chunk not yet complete."""

    layers: list[LayerCache]
    adapter: list[AdapterLayerCache]
    pending: torch.Tensor  # (1, < chunk, 160): feature frames waiting for their chunk to fill
    frames_in: int = 0  # feature frames fed so far
    frames_out: int = 0  # output frames returned so far (after the adapter's strides)

    def snapshot(self) -> StreamState:
        """A copy whose caches can be extended without touching these (caches replace their tensors)."""
        return StreamState(
            [LayerCache(copy.copy(c.attention), copy.copy(c.convolution)) for c in self.layers],
            [AdapterLayerCache(copy.copy(c.residual_inputs), copy.copy(c.attention_inputs), copy.copy(c.attention))
             for c in self.adapter],
            self.pending, self.frames_in, self.frames_out,
        )


class StreamingEncoder:
    """A chunked model run chunk by chunk with caches: feed feature frames, get each complete chunk's outputs.

    `model` is a `Wav2Vec2BertModel` (outputs: hidden states) or a `Wav2Vec2BertForCTC` (outputs: CTC logits);
    its config must be chunked (`streaming_chunk_size`). One stream, batch 1; float32 outputs equal those of the
    whole clip in one forward to 1e-5 (tests/test_streaming.py).

        stream = StreamingEncoder(model)
        for block in blocks:               # (frames, 160) feature steps, any number at a time
            out = stream.feed(block)       # (new frames, dim): the chunks this block completed, maybe none
        out = stream.flush()               # the last, partial chunk
    """

    def __init__(self, model: Wav2Vec2BertModel | Wav2Vec2BertForCTC) -> None:
        encoder = model.wav2vec2_bert if isinstance(model, Wav2Vec2BertForCTC) else model
        if not isinstance(encoder, Wav2Vec2BertModel):
            raise TypeError(
                f"StreamingEncoder takes a Wav2Vec2BertModel or Wav2Vec2BertForCTC, got {type(model).__name__}"
            )
        chunks = encoder.chunks
        if chunks is None:
            raise ValueError(
                "this model was trained with full context (its config has no streaming_chunk_size): its outputs "
                "depend on audio after each frame, so it cannot stream; fine-tune it with --streaming CHUNK"
            )
        if model.training:
            raise ValueError("StreamingEncoder runs a model in eval mode (dropout off): call model.eval() first")
        self.model, self.encoder, self.chunks = model, encoder, chunks
        self.head = model if isinstance(model, Wav2Vec2BertForCTC) else None
        self.state = self.new_state()

    @property
    def chunk_frames(self) -> int:
        """Feature frames (20 ms steps) per chunk."""
        return self.chunks.size

    def new_state(self) -> StreamState:
        """Empty caches: a stream's start."""
        config, param = self.encoder.config, next(self.encoder.parameters())
        dtype, device = param.dtype, param.device
        kernel = config.conv_depthwise_kernel_size
        layers = [
            LayerCache(
                AttentionCache(self.chunks.context_frames()),
                # the kernel's left padding: K-1 zeros before the first frame
                FrameCache(kernel - 1, torch.zeros(1, kernel - 1, config.hidden_size, dtype=dtype, device=device)),
            )
            for _ in self.encoder.encoder.layers
        ]
        adapter, chunks = [], self.chunks
        if self.encoder.adapter is not None:
            reach = config.adapter_stride // 2  # the strided kernel's left reach: its padding
            width = config.output_hidden_size or config.hidden_size
            for _ in self.encoder.adapter.layers:
                chunks = chunks.after_stride(config.adapter_stride)

                def zeros() -> FrameCache:
                    return FrameCache(reach, torch.zeros(1, reach, width, dtype=dtype, device=device))

                adapter.append(AdapterLayerCache(zeros(), zeros(), AttentionCache(chunks.context_frames())))
        pending = torch.zeros(1, 0, config.feature_projection_input_dim, dtype=dtype, device=device)
        return StreamState(layers, adapter, pending)

    def reset(self) -> None:
        """Forget the stream: the next frames start a new one."""
        self.state = self.new_state()

    @torch.no_grad()
    def feed(self, features: torch.Tensor) -> torch.Tensor:
        """Feature steps (frames, 160) or (1, frames, 160) -> the outputs (new frames, dim) of every chunk they
        complete (zero rows when none)."""
        features = self._as_batch(features)
        state = self.state
        pending = torch.cat([state.pending, features], dim=1)
        state.frames_in += features.shape[1]
        whole = pending.shape[1] // self.chunk_frames * self.chunk_frames
        outputs = [self._run(state, pending[:, start : start + self.chunk_frames], final=False)
                   for start in range(0, whole, self.chunk_frames)]
        state.pending = pending[:, whole:]
        return self._joined(outputs)

    @torch.no_grad()
    def flush(self) -> torch.Tensor:
        """The outputs of the partial last chunk (the stream ends): (frames, dim); then the stream starts anew."""
        state = self.state
        out = self._run(state, state.pending, final=True) if state.pending.shape[1] else self._joined([])
        self.reset()
        return out

    @torch.no_grad()
    def peek(self) -> torch.Tensor:
        """The outputs the frames of the chunk not yet complete would give if the stream ended now (partial results:
        they change once the chunk fills), without changing the stream."""
        state = self.state
        if not state.pending.shape[1]:
            return self._joined([])
        return self._run(state.snapshot(), state.pending, final=True)

    def _run(self, state: StreamState, chunk: torch.Tensor, final: bool) -> torch.Tensor:
        """One chunk's frames (1, n, 160) through the model with the stream's caches -> (n', dim)."""
        encoder = self.encoder
        hidden_states, _ = encoder.feature_projection(chunk)
        hidden_states, _, _ = encoder.encoder(hidden_states, caches=state.layers)
        if encoder.intermediate_ffn is not None:
            hidden_states = torch.add(hidden_states, encoder.intermediate_ffn(hidden_states), alpha=0.5)
        if encoder.adapter is not None:
            for cache in state.adapter:
                cache.final = final
            hidden_states, _ = encoder.adapter(hidden_states, caches=state.adapter)
        if encoder.inner_layer_norm is not None:
            hidden_states = encoder.inner_layer_norm(hidden_states)
        if self.head is not None:
            hidden_states = self.head.lm_head(hidden_states)
        state.frames_out += hidden_states.shape[1]
        return hidden_states[0]

    def _as_batch(self, features: torch.Tensor) -> torch.Tensor:
        dim = self.encoder.config.feature_projection_input_dim
        if features.ndim == 2:
            features = features[None]
        if features.ndim != 3 or features.shape[0] != 1 or features.shape[-1] != dim:
            raise ValueError(f"expected feature steps of shape (frames, {dim}) or (1, frames, {dim}), "
                             f"got {tuple(features.shape)}")
        return features.to(self.state.pending.dtype)

    def _joined(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        if outputs:
            return torch.cat(outputs, dim=0)
        config = self.encoder.config
        width = config.vocab_size if self.head is not None else (
            config.output_hidden_size or config.hidden_size if self.encoder.adapter is not None else config.hidden_size
        )
        return self.state.pending.new_zeros(0, width)
