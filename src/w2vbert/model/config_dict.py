"""What `Wav2Vec2BertConfig` keeps beside its fields, as transformers' `PretrainedConfig` does, and its dictionaries.

A transformers config takes any keyword: the ones its class declares, the attributes every config has (the
output flags, `dtype`, `problem_type`, ...), and any other, kept as an attribute and written back. This module
holds that second and third kind for model/config.py, and turns a config into the two dictionaries
transformers defines: `to_dict`, every attribute; `to_diff_dict`, what `config.json` holds (what differs from
transformers' defaults, plus every field transformers' Wav2Vec2BertConfig declares).

In order: `COMMON_ATTRIBUTES` and the other keyword tables, `set_common_attributes` and `set_extra_keys` (what
`Wav2Vec2BertConfig.__init__` does with the keywords that are no field), `extra_keys`, `config_to_dict`,
`config_to_diff_dict`, `split_overrides` (`from_dict`'s keywords: used or unused), and `ExtraKeys`
(`config.extra`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from w2vbert.model.config import Wav2Vec2BertConfig

MODEL_TYPE = "wav2vec2-bert"
PRETRAINING_CLASS = "Wav2Vec2BertForPreTraining"  # whose config.json carries the pre-training fields
# Fields transformers' config does not have, written only when on (or set).
EXTENSION_FLAGS = (
    "add_encoder_layer_norm", "add_inner_layer_norm", "verification_threshold", "streaming_chunk_size",
    "streaming_left_chunks",
)
# The pre-training fields (the dataclass's "pre-training" section), written by a pre-training model or where set.
PRETRAINING_FIELDS = (
    "num_codevector_groups", "num_codevectors_per_group", "codevector_dim", "proj_codevector_dim",
    "max_gumbel_temperature", "min_gumbel_temperature", "gumbel_temperature_decay", "contrastive_logits_temperature",
    "num_negatives", "diversity_loss_weight", "pretraining_mask_prob", "num_masked_prediction_layers",
    "num_target_codebooks", "masked_prediction_loss_weight", "contrastive_loss_weight",
)
# transformers' PretrainedConfig attributes that every config has, with their defaults (transformers 5.23): what
# a model reads at run time, not the architecture. Written to config.json where they differ from these.
COMMON_ATTRIBUTES: dict[str, Any] = {
    "output_hidden_states": False,  # return every block's output
    "output_attentions": False,  # return the attention probabilities
    "return_dict": True,  # ModelOutput objects; False: tuples
    "dtype": None,  # the weights' dtype config.json records (a torch.dtype; its name in JSON)
    "chunk_size_feed_forward": 0,  # transformers' feed-forward chunking, which no Wav2Vec2-BERT model uses
    "is_encoder_decoder": False,
    "problem_type": None,  # sequence classification's loss: "regression", "single_label_..." or "multi_label_..."
}
# Keywords a config takes that are not stored under their own name: `num_labels` (the size of id2label),
# `torch_dtype` (transformers' old name of dtype), and the two kept privately, as transformers keeps them.
ALIASES = ("num_labels", "torch_dtype", "attn_implementation", "name_or_path")
# The private attributes: the name a config was loaded under (`name_or_path`, written by to_dict only) and the
# attention kernel asked for (recorded for transformers' code that reads it; never written).
PRIVATE = ("_name_or_path", "_attn_implementation")


def as_dtype(value: Any) -> Any:
    """A dtype's name ("float16") as the torch.dtype, as transformers stores `config.dtype`; anything else as is."""
    if isinstance(value, str) and isinstance(getattr(torch, value, None), torch.dtype):
        return getattr(torch, value)
    return value


def dtype_name(value: Any) -> Any:
    """torch.float16 -> "float16" (how JSON holds it); anything else as is."""
    return str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else value


def set_common_attributes(config: Wav2Vec2BertConfig, keywords: dict[str, Any]) -> None:
    """Set transformers' common attributes from `keywords` (taking them out of it), or their defaults."""
    for name, default in COMMON_ATTRIBUTES.items():
        setattr(config, name, keywords.pop(name, default))
    torch_dtype = keywords.pop("torch_dtype", None)  # transformers: dtype wins when both are given
    config.dtype = as_dtype(config.dtype if config.dtype is not None else torch_dtype)
    config._name_or_path = str(keywords.pop("name_or_path", keywords.pop("_name_or_path", "")))
    config._attn_implementation = keywords.pop("attn_implementation", None)


def set_extra_keys(config: Wav2Vec2BertConfig, keywords: dict[str, Any]) -> None:
    """Keep every other keyword as an attribute, as transformers does, and write it back to config.json.

    A key that names a computed property (`head_dim`, `extra`) is kept and written back, the property still
    answering; one that names a method would hide it, and is refused.
    """
    for key, value in keywords.items():
        if callable(getattr(type(config), key, None)):
            raise AttributeError(
                f"config key {key!r} would hide the method Wav2Vec2BertConfig.{key}: rename the key"
            )
        config.__dict__[key] = value  # past the property of the same name, if there is one


def extra_keys(config: Wav2Vec2BertConfig) -> dict[str, Any]:
    """The attributes that are no field, common attribute or private one: keys only config.json names."""
    known = {f.name for f in dataclasses.fields(config)} | COMMON_ATTRIBUTES.keys() | set(PRIVATE)
    return {key: value for key, value in vars(config).items() if key not in known}


def _plain(value: Any) -> Any:
    """Tuples as lists (JSON has no tuples; transformers' to_dict converts them too)."""
    return [_plain(item) for item in value] if isinstance(value, tuple) else value


def config_to_dict(config: Wav2Vec2BertConfig) -> dict[str, Any]:
    """Every attribute, as transformers' `to_dict`: the fields, the common attributes (dtype by name), the name
    it was loaded under, the other keys, and `model_type`. A deep copy: changing it leaves the config as it is."""
    out = {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    out |= {name: getattr(config, name) for name in COMMON_ATTRIBUTES}
    out["dtype"] = dtype_name(config.dtype)
    out["_name_or_path"] = config.name_or_path
    out |= extra_keys(config)
    out["model_type"] = MODEL_TYPE
    return copy.deepcopy(out)


def _default_labels() -> tuple[dict[int, str], dict[str, int]]:
    """transformers' id2label and label2id when no labels are given (two classes)."""
    return {0: "LABEL_0", 1: "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}


def _written_field(config: Wav2Vec2BertConfig, field: dataclasses.Field, value: Any) -> bool:
    """Whether config.json holds this field's value (transformers writes every field its class declares)."""
    if field.name in EXTENSION_FLAGS:
        return value is not None and value is not False  # transformers' layout for a model that does not use them
    if field.name in PRETRAINING_FIELDS:  # likewise: only a pre-training model, or a changed value, writes them
        return PRETRAINING_CLASS in (config.architectures or ()) or value != field.default
    if field.name == "architectures":
        return value is not None
    default_id2label, default_label2id = _default_labels()
    if field.name == "id2label":
        return value != default_id2label
    if field.name == "label2id":
        return value != default_label2id
    return True


def config_to_diff_dict(config: Wav2Vec2BertConfig) -> dict[str, Any]:
    """What config.json holds, as transformers' `to_diff_dict`: each field transformers' class declares, the
    w2vbert fields in use, the common attributes that differ from their defaults, the other keys, `model_type`."""
    full = config_to_dict(config)
    out = {f.name: full[f.name] for f in dataclasses.fields(config) if _written_field(config, f, full[f.name])}
    out |= {name: full[name] for name, default in COMMON_ATTRIBUTES.items() if full[name] != default}
    out |= extra_keys(config)
    out["model_type"] = MODEL_TYPE
    return copy.deepcopy(out)


def split_overrides(
    config_cls: type[Wav2Vec2BertConfig], values: dict[str, Any], overrides: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`from_dict`'s keywords -> (those that set the config, the unused ones), as transformers splits them: a
    keyword sets the config when it names a field, a common attribute, an alias, or a key of `values`."""
    known = {f.name for f in dataclasses.fields(config_cls)} | COMMON_ATTRIBUTES.keys() | set(ALIASES) | set(values)
    used = {key: value for key, value in overrides.items() if key in known}
    return used, {key: value for key, value in overrides.items() if key not in known}


class ExtraKeys(MutableMapping):
    """`config.extra`: what config.json holds beyond the dataclass fields (the common attributes that differ
    from transformers' defaults, and the keys this class does not know), as written; a live view: setting a
    key sets the attribute (`extra["torch_dtype"] = "bfloat16"` sets `config.dtype`)."""

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        self._config = config

    def _items(self) -> dict[str, Any]:
        fields = {f.name for f in dataclasses.fields(self._config)}
        return {k: v for k, v in config_to_diff_dict(self._config).items() if k not in fields and k != "model_type"}

    def __getitem__(self, key: str) -> Any:
        return self._items()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        setattr(self._config, key, value)

    def __delitem__(self, key: str) -> None:
        if key not in extra_keys(self._config):
            raise KeyError(key)
        delattr(self._config, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        return repr(self._items())
