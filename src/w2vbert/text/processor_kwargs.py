"""The keywords `Wav2Vec2BertProcessor.__call__` takes, and which part each reaches, as transformers routes them.

In order: `TextKwargs` and `AudioKwargs`, the keywords the tokenizer and the feature extractor take from a processor
call; `Wav2Vec2BertProcessorKwargs`, the two together (the processor's `valid_processor_kwargs`, the typed dict
transformers' processors publish under that name); `merge_kwargs`, transformers' `ProcessorMixin._merge_kwargs`
for these two parts.

The rule, lowest priority first: the tokenizer's own defaults (the keywords it was built with); `common_kwargs`;
a part's dict (`text_kwargs={...}`, `audio_kwargs={...}`); flat keywords, each to every part that takes it
(`padding` and `max_length` reach both, `sampling_rate` only the feature extractor). A keyword given flat and in
the dict of a part that takes it is a ValueError, as in transformers. Where transformers warns and drops a keyword
no part takes, this is a TypeError naming what each part takes.

No `from __future__ import annotations` here: the typed dicts' annotations stay classes, which is how
transformers' tooling reads them (`typing.is_typeddict` on each).
"""

from collections.abc import Mapping
from typing import Any, TypedDict

import torch


class TextKwargs(TypedDict, total=False):
    """What a processor call hands the tokenizer: transformers' `TextKwargs` (the tokenizer refuses, by name,
    any it cannot honour)."""

    text_pair: str | list[str] | None
    text_target: str | list[str] | None
    text_pair_target: str | list[str] | None
    add_special_tokens: bool | None
    padding: bool | str | None
    truncation: bool | str | None
    max_length: int | None  # in label ids
    stride: int | None
    is_split_into_words: bool | None
    pad_to_multiple_of: int | None
    return_token_type_ids: bool | None
    return_attention_mask: bool | None
    return_overflowing_tokens: bool | None
    return_special_tokens_mask: bool | None
    return_offsets_mapping: bool | None
    return_length: bool | None
    verbose: bool | None
    padding_side: str | None
    return_tensors: str | None  # "pt", "np" or None (lists)


class AudioKwargs(TypedDict, total=False):
    """What a processor call hands the feature extractor: transformers' `AudioKwargs` (less `raw_speech`, which
    is the processor's `audio`, and the chat-template loader's `load_audio_backend`), plus the extractor's own
    `do_normalize_per_mel_bins` and `lengths`."""

    sampling_rate: int | None
    padding: bool | str | None
    max_length: int | None  # in 10 ms frames, before stacking
    truncation: bool | None
    pad_to_multiple_of: int | None
    return_attention_mask: bool | None
    device: str | torch.device | None
    return_tensors: str | None  # "pt", "np" or None (numpy arrays, as transformers)
    do_normalize_per_mel_bins: bool | None
    lengths: list[int] | torch.Tensor | None  # samples per row of a padded (batch, samples) input


class Wav2Vec2BertProcessorKwargs(TypedDict, total=False):
    """The keywords of `Wav2Vec2BertProcessor.__call__`, by the part they reach (the processor's
    `valid_processor_kwargs`)."""

    text_kwargs: TextKwargs
    audio_kwargs: AudioKwargs


PART_KEYWORDS = {  # each part's dict of keywords -> the keywords it takes
    "text_kwargs": frozenset(TextKwargs.__annotations__),
    "audio_kwargs": frozenset(AudioKwargs.__annotations__),
}


def merge_kwargs(kwargs: Mapping[str, Any], tokenizer_defaults: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A processor call's keywords -> {"text_kwargs": {...}, "audio_kwargs": {...}}, as the module docstring says.

    `tokenizer_defaults` are the keywords the tokenizer was built with; those a part takes become its defaults
    (transformers gives them to every part that takes them, the feature extractor included).
    """
    out: dict[str, dict[str, Any]] = {part: {} for part in PART_KEYWORDS}
    for key, value in tokenizer_defaults.items():
        for part in _parts_taking(key):
            out[part][key] = value
    flat = dict(kwargs)
    common = _keyword_dict(flat.pop("common_kwargs", {}), "common_kwargs")
    _refuse_unknown(common, "common_kwargs", _flat_keywords())
    for key, value in common.items():
        for part in _parts_taking(key):
            out[part][key] = value
    for part in PART_KEYWORDS:
        given = _keyword_dict(flat.pop(part, {}), part)
        _refuse_unknown(given, part, PART_KEYWORDS[part])
        for key, value in given.items():
            if key in flat:
                raise ValueError(f"keyword argument {key!r} was passed two times: in {part} and as a keyword argument")
            out[part][key] = value
    _refuse_unknown(flat, "the processor", _flat_keywords())
    for key, value in flat.items():
        for part in _parts_taking(key):
            out[part][key] = value
    return out


def _parts_taking(key: str) -> list[str]:
    return [part for part, names in PART_KEYWORDS.items() if key in names]


def _flat_keywords() -> frozenset[str]:
    return frozenset().union(*PART_KEYWORDS.values())


def _keyword_dict(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict of keyword arguments, got {type(value).__name__}: {value!r:.80}")
    return dict(value)


def _refuse_unknown(given: Mapping[str, Any], where: str, accepted: frozenset[str]) -> None:
    unknown = sorted(set(given) - accepted)
    if unknown:
        raise TypeError(
            f"{where} got unexpected keyword argument(s) {unknown}: the tokenizer takes "
            f"{sorted(PART_KEYWORDS['text_kwargs'])}, the feature extractor {sorted(PART_KEYWORDS['audio_kwargs'])}"
        )
