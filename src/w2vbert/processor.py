"""`Wav2Vec2BertProcessor`: the feature extractor and the CTC tokenizer behind one object, as in transformers.

`processor(audio=..., text=..., sampling_rate=16000)` gives `input_features`, `attention_mask` and `labels`
(label rows padded with -100, the value the CTC loss ignores); `batch_decode` turns CTC ids into text.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from .features import BatchFeature, SeamlessM4TFeatureExtractor
from .tokenizer import Wav2Vec2CTCTokenizer, pad_labels

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
        if self.tokenizer is None:
            raise ValueError("this processor has no tokenizer (no vocab.json), so it cannot turn text into labels")
        texts = [text] if isinstance(text, str) else list(text)
        return [self.tokenizer.encode(t) for t in texts]

    def pad(
        self,
        input_features: Any = None,
        labels: list[list[int]] | list[dict[str, Any]] | None = None,
        return_tensors: str = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Pad extracted features (as `feature_extractor.pad`) and label id lists (with -100), for a collator."""
        out = BatchFeature()
        if input_features is not None:
            out = self.feature_extractor.pad(input_features, return_tensors=return_tensors, **kwargs)
        if labels is not None:
            rows = [row["input_ids"] if isinstance(row, dict) else row for row in labels]
            rows = [row.tolist() if isinstance(row, torch.Tensor) else list(row) for row in rows]
            padded = pad_labels(rows)
            out["labels"] = padded if return_tensors == "pt" else padded.numpy()
        return out

    def batch_decode(self, *args: Any, **kwargs: Any) -> Any:
        return self._require_tokenizer().batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> Any:
        return self._require_tokenizer().decode(*args, **kwargs)

    def _require_tokenizer(self) -> Wav2Vec2CTCTokenizer:
        if self.tokenizer is None:
            raise ValueError("this processor has no tokenizer (no vocab.json), so it cannot decode CTC ids")
        return self.tokenizer

    def save_pretrained(self, save_directory: str | os.PathLike) -> list[str]:
        self.feature_extractor.extra["processor_class"] = type(self).__name__
        written = self.feature_extractor.save_pretrained(save_directory)
        if self.tokenizer is not None:
            written += self.tokenizer.save_pretrained(save_directory)
        return written

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike, **kwargs: Any) -> Wav2Vec2BertProcessor:
        """Both parts from a directory or hub repo; without vocab.json, a feature-extractor-only processor."""
        feature_extractor = SeamlessM4TFeatureExtractor.from_pretrained(path_or_repo_id, **kwargs)
        try:
            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(path_or_repo_id, **kwargs)
        except FileNotFoundError:
            logger.warning(
                "%s has no vocab.json: loaded the feature extractor only (processor.tokenizer is None). "
                "A base checkpoint needs a vocabulary for CTC fine-tuning: see w2vbert.tokenizer.build_vocab",
                path_or_repo_id,
            )
            tokenizer = None
        return cls(feature_extractor, tokenizer)
