"""`Wav2Vec2BertProcessor`: the feature extractor and the CTC tokenizer behind one object, as in transformers.

`processor(audio=...)` is the feature extractor's output, `processor(text=...)` the tokenizer's, and both together
the features with the label ids under "labels"; keywords reach the parts as `processor_kwargs` says. Return types
are transformers': numpy features and lists of ids without `return_tensors`. One difference, kept on purpose:
label positions the tokenizer padded hold -100 (what the CTC loss ignores), where transformers leaves the pad id,
which its loss would read as a blank target. `pad` is transformers' collator step (features and label ids padded
by their own part); `batch_decode` turns CTC ids into text.

In order: the class (construction and transformers' class-level description: `get_attributes`,
`valid_processor_kwargs`, `model_input_names`; `__call__` and the routing; `pad`, decoding and the tokenizer's
`chat_template`; `to_dict` and the files; `from_pretrained`, which hands each keyword to the part that takes it);
`_minus_100_where_padded`.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2vbert.audio.features import (
    PREPROCESSOR_CONFIG_NAME,
    OtherFeatureExtractorError,
    SeamlessM4TFeatureExtractor,
    config_text,
)
from w2vbert.loading.hub import HubOptions
from w2vbert.text.chat_template import ChatTemplates, as_templates
from w2vbert.text.encoding import LABEL_PAD, BatchEncoding
from w2vbert.text.processor_kwargs import Wav2Vec2BertProcessorKwargs, merge_kwargs
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
from w2vbert.utils.batch import BatchFeature
from w2vbert.utils.files import atomic_write_text

logger = logging.getLogger("w2vbert")

# Keywords every transformers tokenizer takes besides its class's own (PreTrainedTokenizerBase's), which
# `from_pretrained` hands to the tokenizer.
TOKENIZER_BASE_KEYWORDS = frozenset(
    {
        "sep_token",
        "cls_token",
        "mask_token",
        "additional_special_tokens",
        "extra_special_tokens",
        "model_max_length",
        "padding_side",
        "truncation_side",
        "model_input_names",
        "clean_up_tokenization_spaces",
        "split_special_tokens",
        "chat_template",
    }
)


class Wav2Vec2BertProcessor:
    """Audio -> model inputs, text -> CTC labels, CTC ids -> text. `tokenizer` may be None (a base checkpoint)."""

    valid_processor_kwargs = Wav2Vec2BertProcessorKwargs  # the keywords `__call__` takes, by the part they reach
    skip_tensor_conversion: tuple[str, ...] = ()  # output keys left as they are by return_tensors: none here

    def __init__(
        self, feature_extractor: SeamlessM4TFeatureExtractor, tokenizer: Wav2Vec2CTCTokenizer | None = None
    ) -> None:
        if not _is_feature_extractor(feature_extractor):
            raise TypeError(
                f"feature_extractor must be a SeamlessM4TFeatureExtractor (or a transformers feature extractor), "
                f"got {type(feature_extractor).__name__}"
            )
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    @classmethod
    def get_attributes(cls) -> list[str]:
        """The parts, as transformers' processors list them: the `__init__` arguments."""
        return ["feature_extractor", "tokenizer"]

    @property
    def model_input_names(self) -> list[str]:
        """The keys of `processor(audio=..., text=...)`: the extractor's, then "labels" (as transformers)."""
        return [*self.feature_extractor.model_input_names, "labels"]

    # ----------------------------------------------------------------------------------------------- call
    def __call__(self, audio: Any = None, text: str | list[str] | None = None, **kwargs: Any) -> BatchFeature:
        """Features of `audio` (a clip or a batch) and/or label ids of `text` (one text per clip when both).

        Keywords: those of `processor_kwargs.TextKwargs` and `AudioKwargs`, flat (each to every part that takes
        it: `padding`, `max_length`, `return_tensors` to both), grouped (`text_kwargs={...}`, `audio_kwargs={...}`)
        or shared (`common_kwargs={...}`). Returns the extractor's `BatchFeature`, the tokenizer's `BatchEncoding`
        ("input_ids", "attention_mask"), or the features with the ids under "labels", -100 where padded.
        """
        if audio is None and text is None:
            raise ValueError("pass audio=..., text=..., or both")
        parts = self._merge_kwargs(tokenizer_init_kwargs=self._tokenizer_defaults(), **kwargs)
        if text is None:
            return self.feature_extractor(audio, **parts["audio_kwargs"])
        tokenizer = self._require_tokenizer("turn text into labels")
        if audio is None:
            return tokenizer(text, **parts["text_kwargs"])
        inputs = self.feature_extractor(audio, **parts["audio_kwargs"])
        encodings = tokenizer(text, **(parts["text_kwargs"] | {"return_attention_mask": True}))
        texts = 1 if isinstance(text, str) else len(text)
        clips = len(inputs[self.feature_extractor.model_input_names[0]])  # input_features (values: transformers')
        if texts != clips:
            raise ValueError(f"got {clips} audio clip(s) but {texts} text(s): pass one text per clip")
        inputs["labels"] = _minus_100_where_padded(encodings["input_ids"], encodings["attention_mask"])
        return inputs

    def _merge_kwargs(
        self, kwargs_class: type | None = None, tokenizer_init_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, dict[str, Any]]:
        """transformers' `ProcessorMixin._merge_kwargs`: a call's keywords -> {"text_kwargs", "audio_kwargs"}.

        `kwargs_class` must be `valid_processor_kwargs` (the only one this processor has); `tokenizer_init_kwargs`
        are the tokenizer's defaults (none when not given).
        """
        if kwargs_class not in (None, self.valid_processor_kwargs):
            expected = self.valid_processor_kwargs.__name__
            raise TypeError(f"{type(self).__name__} takes only {expected}, got {kwargs_class}")
        return merge_kwargs(kwargs, tokenizer_init_kwargs or {})

    def _tokenizer_defaults(self) -> dict[str, Any]:
        """The keywords the tokenizer was built with beyond its own settings (transformers reads its
        `init_kwargs`): `from_pretrained(d, padding="max_length", max_length=...)` makes them call defaults."""
        return {} if self.tokenizer is None else dict(self.tokenizer.extra)

    # ----------------------------------------------------------------------------------------------- pad
    def pad(self, input_features: Any = None, labels: Any = None, **kwargs: Any) -> BatchFeature | BatchEncoding:
        """Pad for a data collator, as transformers: `input_features` through `feature_extractor.pad`, `labels`
        (dicts with "input_ids") through `tokenizer.pad`, both with the same `kwargs` (padding, return_tensors...).

        One of them given: that part's output (labels: "input_ids" padded with the pad id, and "attention_mask").
        Both: the padded features, with the padded label ids under "labels" (pad id where padded, not -100: a
        collator masks them with the labels' attention_mask, as the fine-tuning recipe does).
        """
        if input_features is None and labels is None:
            raise ValueError("pass input_features=..., labels=..., or both")
        features = self.feature_extractor.pad(input_features, **kwargs) if input_features is not None else None
        if labels is None:
            return features
        padded = self._require_tokenizer("pad labels").pad(labels, **kwargs)
        if features is None:
            return padded
        features["labels"] = padded["input_ids"]
        return features

    def batch_decode(self, *args: Any, **kwargs: Any) -> Any:
        return self._require_tokenizer("decode CTC ids").batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        return self._require_tokenizer("decode CTC ids").decode(*args, **kwargs)

    @property
    def chat_template(self) -> ChatTemplates:
        """The tokenizer's chat templates (None without a tokenizer). transformers' processors hold their own, but
        write them to the same chat_template.jinja as the tokenizer, so a saved folder has one; here it is that one."""
        return None if self.tokenizer is None else self.tokenizer.chat_template

    @chat_template.setter
    def chat_template(self, value: ChatTemplates) -> None:
        self._require_tokenizer("hold a chat template").chat_template = as_templates(value)

    def _require_tokenizer(self, purpose: str) -> Wav2Vec2CTCTokenizer:
        if self.tokenizer is None:
            raise ValueError(f"this processor has no tokenizer (no vocab.json), so it cannot {purpose}")
        return self.tokenizer

    # ---------------------------------------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        """transformers' processor dictionary: the extractor's settings and this class's name (the tokenizer has
        files of its own)."""
        return {"feature_extractor": self.feature_extractor.to_dict(), "processor_class": type(self).__name__}

    def to_json_string(self) -> str:
        return config_text(self.to_dict())

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        atomic_write_text(Path(json_file_path), self.to_json_string())

    def __repr__(self) -> str:
        parts = "\n".join(f"- {name}: {getattr(self, name)!r}" for name in self.get_attributes())
        return f"{type(self).__name__}:\n{parts}\n\n{self.to_json_string()}"

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        """The extractor's preprocessor_config.json, naming this class as its processor_class (the layout both
        transformers 4 and 5 read), then the tokenizer's files; returns the written paths."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.feature_extractor.to_dict() | {"processor_class": type(self).__name__}
        written = [str(atomic_write_text(directory / PREPROCESSOR_CONFIG_NAME, config_text(config)))]
        if self.tokenizer is not None:
            written += self.tokenizer.save_pretrained(save_directory)
        return written

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike, **kwargs: Any) -> Wav2Vec2BertProcessor:
        """Both parts from a directory or hub repo; without vocab.json, a feature-extractor-only processor.

        The hub keywords (`HubOptions`: revision, cache_dir, local_files_only, token, subfolder) go to both parts;
        `feature_extractor=` or `tokenizer=` is used as that part instead of loading it; any other keyword goes
        to the part that takes it (`padding_value` to the feature extractor; `do_lower_case`, `cls_token` and the
        other keywords of transformers' tokenizers to the tokenizer), so that a part never stores, nor saves,
        another's setting. A keyword neither takes is a TypeError (transformers would keep it in the tokenizer).
        """
        hub = HubOptions.take(kwargs)
        given = {name: kwargs.pop(name) for name in cls.get_attributes() if name in kwargs}
        extractor_keys = _constructor_keywords(SeamlessM4TFeatureExtractor)
        tokenizer_keys = _constructor_keywords(Wav2Vec2CTCTokenizer) - {"vocab_file", "vocab"}  # vocab.json's role
        tokenizer_keys |= TOKENIZER_BASE_KEYWORDS
        unknown = sorted(kwargs.keys() - extractor_keys - tokenizer_keys)
        if unknown:
            raise TypeError(
                f"{cls.__name__}.from_pretrained got unknown keyword(s) {unknown}: the feature extractor takes "
                f"{sorted(extractor_keys)}, the tokenizer {sorted(tokenizer_keys)}, and both the hub keywords "
                f"{list(HubOptions.keys())}"
            )
        if "feature_extractor" not in given:
            extractor_kwargs = {k: v for k, v in kwargs.items() if k in extractor_keys}
            given["feature_extractor"] = _feature_extractor(path_or_repo_id, hub, extractor_kwargs)
        if "tokenizer" not in given:
            tokenizer_kwargs = {k: v for k, v in kwargs.items() if k in tokenizer_keys}
            given["tokenizer"] = _tokenizer_or_none(path_or_repo_id, hub, tokenizer_kwargs)
        return cls(**given)


def _is_feature_extractor(value: Any) -> bool:
    """Ours, or any of transformers' feature extractors (its processor takes any `FeatureExtractionMixin`, and
    code written for it may hand one over): such an object exists only where transformers is already imported,
    so it is looked up there and never imported here."""
    if isinstance(value, SeamlessM4TFeatureExtractor):
        return True
    transformers_extractors = sys.modules.get("transformers.feature_extraction_utils")
    return transformers_extractors is not None and isinstance(value, transformers_extractors.FeatureExtractionMixin)


def _feature_extractor(path_or_repo_id: str | os.PathLike, hub: HubOptions, kwargs: dict[str, Any]) -> Any:
    """The checkpoint's feature extractor: ours, or, for a folder saved with another of transformers' extractors
    (a processor built around its Wav2Vec2FeatureExtractor), that one through transformers' AutoFeatureExtractor
    where the user already works with transformers; without it, the mismatch is the error."""
    try:
        return SeamlessM4TFeatureExtractor.from_hub(path_or_repo_id, hub, **kwargs)
    except OtherFeatureExtractorError:
        if "transformers" not in sys.modules:
            raise
    from transformers import AutoFeatureExtractor  # already imported by the caller's code

    return AutoFeatureExtractor.from_pretrained(path_or_repo_id, **dataclasses.asdict(hub), **kwargs)


def _tokenizer_or_none(
    path_or_repo_id: str | os.PathLike, hub: HubOptions, kwargs: dict[str, Any]
) -> Wav2Vec2CTCTokenizer | None:
    """The checkpoint's tokenizer, or None (with a warning) when it has no vocab.json (a base checkpoint)."""
    try:
        return Wav2Vec2CTCTokenizer.from_hub(path_or_repo_id, hub, **kwargs)
    except FileNotFoundError:
        logger.warning(
            "%s has no vocab.json: loaded the feature extractor only (processor.tokenizer is None). "
            "A base checkpoint needs a vocabulary for CTC fine-tuning: see w2vbert.text.vocab.build_vocab",
            path_or_repo_id,
        )
        return None


def _constructor_keywords(cls: type) -> set[str]:
    """The named parameters of `cls.__init__`: the settings a `from_pretrained` keyword may override."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in parameters if p.kind in kinds and p.name != "self"}


def _minus_100_where_padded(ids: Any, mask: Any) -> Any:
    """The tokenizer's ids (a list, rows of lists, an array, a ragged object array or a tensor) with LABEL_PAD
    (-100) where `mask` (same layout) is 0, in the same container."""
    if isinstance(ids, torch.Tensor):
        return ids.masked_fill(torch.as_tensor(mask) == 0, LABEL_PAD)
    if isinstance(ids, np.ndarray) and ids.dtype != object:
        return np.where(np.asarray(mask) == 0, LABEL_PAD, ids).astype(ids.dtype)
    if len(ids) and not isinstance(ids[0], (list, tuple, np.ndarray)):  # one text's ids
        return [LABEL_PAD if m == 0 else i for i, m in zip(ids, mask, strict=True)]
    rows = [_minus_100_where_padded(i, m) for i, m in zip(ids, mask, strict=True)]
    if isinstance(ids, np.ndarray):  # ragged: a 1-D object array of each row's array
        out = np.empty(len(rows), dtype=object)
        for index, row in enumerate(rows):
            out[index] = row
        return out
    return rows
