"""The parameters of the models a config builds, counted on models built on the meta device.

What model/size.py needs to refuse a config too large to build, at once and for any integer
(`num_hidden_layers=10**400`), while the modules stay the one description of the architecture:
`count_parameters(config)`, the bare model's parameters per part and what each head class adds.

Three things make the count cheap and exact:
- Each class is built with (0, 0), (1, 0) and (0, 1) Conformer blocks and adapter layers. A part's count is
  linear in the two (each block and each adapter layer adds the same parameters, and a head's layer weights are one
  per block plus one), so c(L, A) = c(0, 0) + L (c(1, 0) - c(0, 0)) + A (c(0, 1) - c(0, 0)), exact for any
  integers L and A.
- On the meta device tensors have shapes and no storage; `ShapesOnly` also skips the weights' initialisation,
  which has no values to fill there, and whose `normal_` (nn.Embedding's) on a meta tensor makes torch import its
  compiler, seconds the first time in a process.
- The builds read a `LayerCountsConfig`, whose `validate` does nothing: the config it copies passed validation,
  whose size check is what asks for this count (and which refuses 0 blocks).

A width no tensor can hold (its bytes past 2^63, torch's int64 sizes) fails even on the meta device:
`TensorTooLarge` carries its shape and the class that could not be built.

In order: `TensorTooLarge`, `ShapesOnly`, `LayerCountsConfig`, `count_parts` (one class, by part), and
`count_parameters` (the bare model and the heads).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.encoder import Wav2Vec2BertModel
from w2vbert.model.heads import (
    Wav2Vec2BertForAudioFrameClassification,
    Wav2Vec2BertForCTC,
    Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertForXVector,
)
from w2vbert.model.pretraining import Wav2Vec2BertForPreTraining

HEADS = (
    Wav2Vec2BertForCTC, Wav2Vec2BertForSequenceClassification, Wav2Vec2BertForAudioFrameClassification,
    Wav2Vec2BertForPreTraining, Wav2Vec2BertForXVector,
)
LAYER_COUNTS = ((0, 0), (1, 0), (0, 1))  # (Conformer blocks, adapter layers) of the three builds of a class
TENSOR_BYTES = 2**63  # torch sizes a tensor's storage in int64 bytes: a larger one has no shape it can describe


class TensorTooLarge(OverflowError):
    """A tensor of the model has more bytes than torch can describe: the config sizes it past any limit."""

    def __init__(self, shape: tuple[int, ...], model: str = "") -> None:
        super().__init__(f"{model} needs a tensor of shape {shape}, past {TENSOR_BYTES} bytes")
        self.shape = shape
        self.model = model  # the class whose build failed, once `count_parts` knows it


# What torch's layers and the model's modules call to give parameters their first values (nn.init's functions
# take their tensor by keyword when a mode is on), and the factories whose values are random: on the meta device
# there are no values, and these are what makes torch import its compiler.
FILLS = frozenset({
    nn.init.kaiming_uniform_, nn.init.uniform_, nn.init.normal_,
    torch.Tensor.uniform_, torch.Tensor.normal_, torch.Tensor.fill_, torch.Tensor.zero_,
})
RANDOM_FACTORIES = frozenset({torch.randn, torch.rand})
FACTORIES = frozenset({torch.empty, torch.zeros, torch.ones, torch.full, *RANDOM_FACTORIES})


class ShapesOnly(TorchFunctionMode):
    """While on, models built on the meta device get their parameters' shapes and nothing else: a fill returns its
    tensor untouched, a random factory makes an empty tensor, and a factory asked for a shape past TENSOR_BYTES
    raises `TensorTooLarge` with that shape."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in FILLS:
            return args[0] if args else kwargs["tensor"]
        if func in RANDOM_FACTORIES:
            func = torch.empty
        try:
            return func(*args, **kwargs)
        except (RuntimeError, TypeError) as error:  # torch's words for a size past int64
            shape = tuple(args[0]) if args and isinstance(args[0], (tuple, list)) else args
            if func in FACTORIES and math.prod(shape) * 8 >= TENSOR_BYTES:  # 8: the widest dtype built here
                raise TensorTooLarge(shape) from error
            raise


class LayerCountsConfig(Wav2Vec2BertConfig):
    """A validated config with other layer counts, for the builds that count its parameters."""

    @classmethod
    def of(cls, config: Wav2Vec2BertConfig, blocks: int, adapter_layers: int) -> LayerCountsConfig:
        copy = cls.__new__(cls)
        vars(copy).update(vars(config), num_hidden_layers=blocks, num_adapter_layers=adapter_layers)
        return copy

    def validate(self) -> None:
        """Nothing to check: the config it copies passed, and its own check of the size is what counts these."""


def _built_parts(model_class: type[Wav2Vec2BertPreTrainedModel], config: LayerCountsConfig) -> dict[str, int]:
    """Parameters of `model_class(config)` by top-level part (the first word of their names), built on meta."""
    with torch.device("meta"), ShapesOnly():
        model = model_class(config)
    parts: dict[str, int] = {}
    for name, parameter in model.named_parameters():
        part = name.partition(".")[0]
        parts[part] = parts.get(part, 0) + parameter.numel()
    return parts


def count_parts(model_class: type[Wav2Vec2BertPreTrainedModel], config: Wav2Vec2BertConfig) -> dict[str, int]:
    """The parameters of `model_class(config)` by top-level part, in the order it builds them: the attribute names
    ("feature_projection", "encoder", ...; a head's "wav2vec2_bert", "lm_head", ...).

    Raises the class's own `ValueError` when it refuses the config (a head that does not take the adapter), and
    `TensorTooLarge` when a tensor cannot be described."""
    try:
        base, block, adapter_layer = (
            _built_parts(model_class, LayerCountsConfig.of(config, *counts)) for counts in LAYER_COUNTS
        )
    except TensorTooLarge as error:
        raise TensorTooLarge(error.shape, model_class.__name__) from error
    blocks, adapter_layers = config.num_hidden_layers, config.num_adapter_layers
    return {
        part: base.get(part, 0) + blocks * (block.get(part, 0) - base.get(part, 0))
        + adapter_layers * (adapter_layer.get(part, 0) - base.get(part, 0))
        for part in {**base, **block, **adapter_layer}
    }


def count_parameters(config: Wav2Vec2BertConfig) -> tuple[dict[str, int], dict[str, int]]:
    """(`Wav2Vec2BertModel(config)`'s parameters by part, {head class name: the parameters it adds to the bare
    model}) for the heads that take the config: one that refuses it is no model the config can build."""
    model = count_parts(Wav2Vec2BertModel, config)
    heads = {}
    for head in HEADS:
        try:
            heads[head.__name__] = sum(count_parts(head, config).values()) - sum(model.values())
        except ValueError:  # its refusal (the adapter, no vocabulary), which building it from the config repeats
            continue
    return model, heads
