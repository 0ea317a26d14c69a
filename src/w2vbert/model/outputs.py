"""Model outputs: small dataclasses that also behave like the Hugging Face `ModelOutput` users index into.

`out.logits`, `out["logits"]` and `out[0]` all work; integer and slice indexing see only the fields that are
set (not None), in declaration order, exactly like `return_dict=False` tuples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ModelOutput:
    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(value for value in (getattr(self, f.name) for f in dataclasses.fields(self)) if value is not None)

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, name) for name in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in self.keys()]

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"{type(self).__name__} has no field {key!r} set; it has {self.keys()}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass
class Wav2Vec2BaseModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None  # (batch, frames, output_hidden_size), after the adapter if any
    extract_features: torch.Tensor | None = None  # (batch, frames, 160): the layer-normed input features
    hidden_states: tuple[torch.Tensor, ...] | None = None  # num_hidden_layers + 1 tensors (batch, frames, hidden)
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (batch, heads, frames, frames)


Wav2Vec2BertBaseModelOutput = Wav2Vec2BaseModelOutput


@dataclass
class CausalLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (batch, frames, vocab_size)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class SequenceClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (batch, num_labels)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class TokenClassifierOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (batch, frames, num_labels)
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class XVectorOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # (batch, xvector_output_dim): the AM-softmax input
    embeddings: torch.Tensor | None = None  # (batch, xvector_output_dim): the speaker embedding
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class LayerEmbedding(ModelOutput):
    """What `Wav2Vec2BertModel.embed` returns: one layer's hidden state and the mask of its valid frames."""

    hidden_state: torch.Tensor | None = None  # (batch, frames, hidden_size)
    attention_mask: torch.Tensor | None = None  # (batch, frames) bool, True on valid frames
