"""LoRA fine-tuning through the `peft` library: low-rank adapters on the pre-trained encoder's linear layers.

In order: `LoraSettings` (rank, alpha, dropout, which layers), `apply_lora` (peft's adapters injected into the
model in place, the encoder frozen, the head left to train whole), then what a checkpoint is made of:
`merged_state_dict` (the plain state dict, each adapter folded into its layer's weight: loadable here and by
transformers), `lora_training_state` / `unmerged_state_dict` (what a resumed run needs beyond the merged weights:
the frozen weights and the factors, exactly) and `save_adapter` (the adapter alone, in peft's layout).

Contract: the model stays its own class and its own module names (peft's `inject_adapter_in_model`, not a
`PeftModel` wrapper); peft's names (`base_layer`, `lora_A.default`) live only in the training-time model and the
run's resume file, never in a saved model checkpoint. The encoder LoRA adapts is the base model without its
adapter: the adapter is new on a pre-trained checkpoint (transformers' CTC recipe adds it fresh), so it trains
whole with the head. peft (which imports transformers) is imported only when LoRA is used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from w2vbert.training.names import DEFAULT_TARGETS
from w2vbert.utils.extras import optional_import

LORA = "LoRA (--lora, peft)"  # what needs the `lora` extra, as MissingExtra says
ADAPTER = "default"  # peft's adapter name: one adapter per model here


@dataclass(frozen=True)
class LoraSettings:
    """Which layers get adapters, and their shape. The adapter on a weight W (out, in) is W + alpha / rank * B A."""

    rank: int = 8  # r: A is (rank, in), B is (out, rank)
    # The update's scale is alpha / rank. None takes 2 * rank, the common choice (the LoRA paper keeps alpha fixed
    # as it varies rank, "tuning alpha is roughly the same as tuning the learning rate"): with alpha tied to rank
    # the scale stays 2 whatever the rank, so a learning rate found at one rank holds at another.
    alpha: float | None = None
    dropout: float = 0.0  # on the adapters' input; peft's default: the model's own dropouts already regularise
    # Leaf names (or dotted suffixes) of the encoder's nn.Linear layers to adapt; the default are the attention
    # projections and both FFN layers of every Conformer block, the layers the LoRA paper and peft's presets adapt.
    targets: tuple[str, ...] = DEFAULT_TARGETS
    save_adapter: bool = False  # each checkpoint also holds the adapter alone (adapter_config.json + safetensors)

    def __post_init__(self) -> None:
        if self.alpha is None:
            object.__setattr__(self, "alpha", 2.0 * self.rank)
        object.__setattr__(self, "targets", tuple(self.targets))  # a list from JSON or a caller stays hashable
        checks = [
            (self.rank >= 1, f"rank must be >= 1, got {self.rank}"),
            (self.alpha > 0, f"alpha must be > 0, got {self.alpha}"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (len(self.targets) > 0, "targets must name at least one layer"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("invalid LoraSettings: " + "; ".join(problems))


def _encoder_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The modules LoRA adapts and freezes, by full name: the base model's, less its adapter's."""
    base = model.base_model
    prefix = "" if base is model else f"{model.base_model_prefix}."
    excluded = set() if base.adapter is None else set(base.adapter.modules())
    return {prefix + name: module for name, module in base.named_modules() if module not in excluded}


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)  # peft's rule for a list of target names


def lora_targets(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """The full names of the encoder's nn.Linear layers that `targets` name; a target naming none is refused."""
    linear = [name for name, module in _encoder_modules(model).items() if type(module) is nn.Linear]
    for target in targets:
        if not any(_matches(name, target) for name in linear):
            known = ", ".join(sorted({name.rsplit(".", 1)[-1] for name in linear}))
            raise ValueError(f"LoRA target {target!r} names no linear layer of the encoder (the head and the "
                             f"adapter train whole): its linear layers are {known}")
    return [name for name in linear if any(_matches(name, target) for target in targets)]


def apply_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """Inject peft's LoRA layers into `model` in place and return it: the encoder frozen, the adapters trainable,
    every other parameter (the head, the base model's adapter) as trainable as it was."""
    peft = optional_import("peft", LORA)  # imports transformers: only for a LoRA run
    if lora_layers(model):
        raise ValueError(f"the model already has LoRA layers ({len(lora_layers(model))}): apply LoRA once")
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                             target_modules=lora_targets(model, settings.targets), bias="none")
    encoder = {id(p) for module in _encoder_modules(model).values() for p in module.parameters(recurse=False)}
    trainable = {id(p): p.requires_grad for p in model.parameters()}
    peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    # peft freezes everything but its factors; the parameters it did not create go back to what they were,
    # except the encoder's, which LoRA freezes.
    for parameter in model.parameters():
        parameter.requires_grad = id(parameter) not in encoder and trainable.get(id(parameter), True)
    return model


def lora_layers(model: nn.Module) -> dict[str, nn.Module]:
    """peft's LoRA layers of `model`, by full name (empty for a model without adapters)."""
    layer = optional_import("peft.tuners.lora", LORA).LoraLayer
    return {name: module for name, module in model.named_modules() if isinstance(module, layer)}


def _layer_keys(name: str, layer: nn.Module) -> dict[str, str | None]:
    """A LoRA layer's state-dict keys -> the plain key each becomes once merged (None: a factor, merged away)."""
    keys = {}
    for key in layer.state_dict():
        plain = key.removeprefix("base_layer.")
        keys[f"{name}.{key}"] = f"{name}.{plain}" if plain != key else None
    return keys


def merged_state_dict(model: nn.Module, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The plain state dict of a model with LoRA layers (`state`, default its own): each adapted weight is
    W + scale * B A and carries the layer's own name, as if the model had been trained without adapters."""
    state = model.state_dict() if state is None else state
    layers = lora_layers(model)
    renamed = {old: new for name, layer in layers.items() for old, new in _layer_keys(name, layer).items()}
    merged = {renamed.get(key, key): tensor for key, tensor in state.items() if renamed.get(key, key) is not None}
    for name, layer in layers.items():
        down = state[f"{name}.lora_A.{ADAPTER}.weight"]  # A (rank, in)
        up = state[f"{name}.lora_B.{ADAPTER}.weight"]  # B (out, rank)
        weight = merged[f"{name}.weight"]
        merged[f"{name}.weight"] = weight + (up.to(weight.dtype) @ down.to(weight.dtype)) * layer.scaling[ADAPTER]
    return merged


def lora_training_state(model: nn.Module, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of the LoRA layers as they train (frozen weight and bias, factors), under peft's names: with
    the merged weights, what resumes the run exactly (the frozen weight cannot be recovered from the merged one
    bit for bit)."""
    state = model.state_dict() if state is None else state
    return {key: state[key] for name, layer in lora_layers(model).items() for key in _layer_keys(name, layer)}


def unmerged_state_dict(
    model: nn.Module, merged: dict[str, torch.Tensor], training_state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The state dict of `model` (with its LoRA layers) from a merged checkpoint and its `lora_training_state`."""
    plain = {new for name, layer in lora_layers(model).items() for new in _layer_keys(name, layer).values() if new}
    return {key: tensor for key, tensor in merged.items() if key not in plain} | training_state


def trained_whole(model: nn.Module) -> list[str]:
    """The modules that train whole beside the adapters, by name: the head's layers and the base model's adapter."""
    base = model.base_model
    names = [name for name, module in model.named_children()
             if module is not base and any(True for _ in module.parameters())]
    if base.adapter is not None and base is not model:
        names.append(f"{model.base_model_prefix}.adapter")
    return names


def save_adapter(model: nn.Module, directory: str | Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """Write the adapter alone as peft does (`adapter_config.json`, `adapter_model.safetensors`): the LoRA factors
    and, as peft's `modules_to_save`, the head trained whole, so `PeftModel.from_pretrained(<the starting
    model>, directory)` rebuilds the fine-tuned model. A head with a bare parameter (`layer_weights`) is refused:
    peft saves whole modules only."""
    get_peft_model_state_dict = optional_import("peft", LORA).get_peft_model_state_dict
    SAFETENSORS_WEIGHTS_NAME = optional_import("peft.utils", LORA).SAFETENSORS_WEIGHTS_NAME  # noqa: N806

    bare = [] if model.base_model is model else [name for name, _ in model.named_parameters(recurse=False)]
    if bare:
        raise ValueError(f"the adapter alone cannot hold the head's parameter(s) {', '.join(bare)} (peft saves "
                         "whole modules): use the merged checkpoint")
    state = model.state_dict() if state is None else state
    whole = trained_whole(model)
    tensors = get_peft_model_state_dict(model, state_dict=state, adapter_name=ADAPTER)  # lora_A.weight, no name
    tensors |= {key: tensor for key, tensor in state.items() if any(key.startswith(f"{name}.") for name in whole)}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # A PeftModel's own keys start with "base_model.model.": what PeftModel.save_pretrained writes and loads.
    save_file({f"base_model.model.{key}": tensor.detach().contiguous().cpu() for key, tensor in tensors.items()},
              directory / SAFETENSORS_WEIGHTS_NAME, metadata={"format": "pt"})
    config = copy.copy(model.peft_config[ADAPTER])
    config.modules_to_save = whole
    config.target_modules = sorted(config.target_modules)
    config.save_pretrained(directory)
