"""`Wav2Vec2BertProcessor`: the feature extractor and the CTC tokenizer behind one object, as in transformers.

`processor(audio=..., text=..., sampling_rate=16000)` gives `input_features`, `attention_mask` and `labels`
(label rows padded with -100, the value the CTC loss ignores); `pad` is transformers' collator step (features and
label ids padded by their own part); `batch_decode` turns CTC ids into text. `from_pretrained` hands each keyword
to the part whose constructor takes it.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

from w2vbert.audio.features import PREPROCESSOR_CONFIG_NAME, SeamlessM4TFeatureExtractor, config_text
from w2vbert.loading.hub import HubOptions
from w2vbert.text.encoding import BatchEncoding, pad_labels
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
from w2vbert.utils.batch import BatchFeature
from w2vbert.utils.files import atomic_write_text

logger = logging.getLogger("w2vbert")


class Wav2Vec2BertProcessor:
    """Audio -> model inputs, text -> CTC labels, CTC ids -> text. `tokenizer` may be None (a base checkpoint)."""

    def __init__(
        self, feature_extractor: SeamlessM4TFeatureExtractor, tokenizer: Wav2Vec2CTCTokenizer | None = None
    ) -> None:
        if not isinstance(feature_extractor, SeamlessM4TFeatureExtractor):
            raise TypeError(f"feature_extractor must be a SeamlessM4TFeatureExtractor, got {type(feature_extractor)}")
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    def __call__(
        self,
        audio: Any = None,
        text: str | list[str] | None = None,
        sampling_rate: int | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Features of `audio` and/or labels of `text` (the same number of each when both are given)."""
        if audio is None and text is None:
            raise ValueError("pass audio=..., text=..., or both")
        if text is None:
            return self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **kwargs)
        labels = self._labels(text)
        if audio is None:
            return BatchFeature(input_ids=labels[0] if isinstance(text, str) else labels)
        inputs = self.feature_extractor(audio, sampling_rate=sampling_rate, return_tensors=return_tensors, **kwargs)
        batch = inputs["input_features"].shape[0]
        if len(labels) != batch:
            raise ValueError(f"got {batch} audio clip(s) but {len(labels)} text(s): pass one text per clip")
        inputs["labels"] = pad_labels(labels) if return_tensors == "pt" else pad_labels(labels).numpy()
        return inputs

    def _labels(self, text: str | list[str]) -> list[list[int]]:
        tokenizer = self._require_tokenizer("turn text into labels")
        texts = [text] if isinstance(text, str) else list(text)
        return [tokenizer.encode(t) for t in texts]

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

    def _require_tokenizer(self, purpose: str) -> Wav2Vec2CTCTokenizer:
        if self.tokenizer is None:
            raise ValueError(f"this processor has no tokenizer (no vocab.json), so it cannot {purpose}")
        return self.tokenizer

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
        any other keyword to the part whose constructor takes it (`do_lower_case` to the tokenizer, `padding_value`
        to the feature extractor), so that a part never stores, nor saves, another's setting. A keyword neither
        takes is a TypeError.
        """
        hub = HubOptions.take(kwargs)
        extractor_keys = _constructor_keywords(SeamlessM4TFeatureExtractor)
        tokenizer_keys = _constructor_keywords(Wav2Vec2CTCTokenizer) - {"vocab_file", "vocab"}  # vocab.json's role
        unknown = sorted(kwargs.keys() - extractor_keys - tokenizer_keys)
        if unknown:
            raise TypeError(
                f"{cls.__name__}.from_pretrained got unknown keyword(s) {unknown}: the feature extractor takes "
                f"{sorted(extractor_keys)}, the tokenizer {sorted(tokenizer_keys)}, and both the hub keywords "
                f"{list(HubOptions.keys())}"
            )
        feature_extractor = SeamlessM4TFeatureExtractor.from_hub(
            path_or_repo_id, hub, **{k: v for k, v in kwargs.items() if k in extractor_keys}
        )
        try:
            tokenizer = Wav2Vec2CTCTokenizer.from_hub(
                path_or_repo_id, hub, **{k: v for k, v in kwargs.items() if k in tokenizer_keys}
            )
        except FileNotFoundError:
            logger.warning(
                "%s has no vocab.json: loaded the feature extractor only (processor.tokenizer is None). "
                "A base checkpoint needs a vocabulary for CTC fine-tuning: see w2vbert.text.vocab.build_vocab",
                path_or_repo_id,
            )
            tokenizer = None
        return cls(feature_extractor, tokenizer)


def _constructor_keywords(cls: type) -> set[str]:
    """The named parameters of `cls.__init__`: the settings a `from_pretrained` keyword may override."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in parameters if p.kind in kinds and p.name != "self"}
