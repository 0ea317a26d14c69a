"""The `Auto*` entry points of the documented API: pick the class a checkpoint was saved with.

Only the Wav2Vec2-BERT family exists here, so each `Auto*` class is a thin `from_pretrained` that reads the
checkpoint's `config.json` (its `architectures`) and hands over to the concrete class, with the config it read
(config.json is read once per load).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from w2vbert.audio.features import SeamlessM4TFeatureExtractor
from w2vbert.loading.hub import HubOptions
from w2vbert.model import encoder, heads, pretraining
from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.text.processor import Wav2Vec2BertProcessor
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer

MODEL_CLASSES: dict[str, type[Wav2Vec2BertPreTrainedModel]] = {
    cls.__name__: cls
    for cls in (
        encoder.Wav2Vec2BertModel,
        heads.Wav2Vec2BertForCTC,
        heads.Wav2Vec2BertForSequenceClassification,
        heads.Wav2Vec2BertForAudioFrameClassification,
        heads.Wav2Vec2BertForXVector,
        pretraining.Wav2Vec2BertForPreTraining,
    )
}


CONFIG_FIELDS = tuple(f.name for f in dataclasses.fields(Wav2Vec2BertConfig) if f.name != "extra")


def model_class_for(config: Wav2Vec2BertConfig) -> type[Wav2Vec2BertPreTrainedModel]:
    """The class named first in `config.architectures`; the bare encoder when none is recorded."""
    names = config.architectures or ["Wav2Vec2BertModel"]
    if names[0] not in MODEL_CLASSES:
        raise ValueError(f"config.architectures names {names[0]!r}; w2vbert has {sorted(MODEL_CLASSES)}")
    return MODEL_CLASSES[names[0]]


class AutoConfig:
    @staticmethod
    def from_pretrained(path_or_repo_id: str | os.PathLike, **kwargs: Any) -> Wav2Vec2BertConfig:
        return Wav2Vec2BertConfig.from_pretrained(path_or_repo_id, **kwargs)


class _AutoModel:
    """`from_pretrained` into `default`; a checkpoint saved with another class of the family loads as `default`."""

    default: type[Wav2Vec2BertPreTrainedModel] | None = None

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike | None, **kwargs: Any) -> Any:
        """`default.from_pretrained`; without a default, the class config.json names, from the one reading of it
        that becomes the model's config (with the keywords that name config fields applied). From None (a
        config and a state_dict), the class the config names."""
        target = cls.default
        if target is None and path_or_repo_id is None:
            target = model_class_for(kwargs["config"]) if "config" in kwargs else encoder.Wav2Vec2BertModel
        if target is None:
            hub = HubOptions(**{k: kwargs[k] for k in HubOptions.keys() if k in kwargs})
            if "config" in kwargs:  # the caller's config is the model's: config.json only names the class
                target = model_class_for(Wav2Vec2BertConfig.from_hub(path_or_repo_id, hub))
            else:
                overrides = {name: kwargs.pop(name) for name in CONFIG_FIELDS if name in kwargs}
                kwargs["config"] = Wav2Vec2BertConfig.from_hub(path_or_repo_id, hub, **overrides)
                target = model_class_for(kwargs["config"])
        return target.from_pretrained(path_or_repo_id, **kwargs)

    @classmethod
    def from_config(cls, config: Wav2Vec2BertConfig) -> Any:
        return (cls.default or model_class_for(config))(config)


class AutoModel(_AutoModel):
    default = encoder.Wav2Vec2BertModel


class AutoModelForCTC(_AutoModel):
    default = heads.Wav2Vec2BertForCTC


class AutoModelForAudioClassification(_AutoModel):
    default = heads.Wav2Vec2BertForSequenceClassification


class AutoModelForAudioFrameClassification(_AutoModel):
    default = heads.Wav2Vec2BertForAudioFrameClassification


class AutoModelForAudioXVector(_AutoModel):
    default = heads.Wav2Vec2BertForXVector


class AutoModelForPreTraining(_AutoModel):
    default = pretraining.Wav2Vec2BertForPreTraining


def load_model(path_or_repo_id: str | os.PathLike | None, **kwargs: Any) -> Wav2Vec2BertPreTrainedModel:
    """Load a checkpoint into the class it was saved with (`config.architectures`): the one-liner."""
    return _AutoModel.from_pretrained(path_or_repo_id, **kwargs)


class AutoFeatureExtractor:
    @staticmethod
    def from_pretrained(path_or_repo_id: str | os.PathLike, **kwargs: Any) -> SeamlessM4TFeatureExtractor:
        return SeamlessM4TFeatureExtractor.from_pretrained(path_or_repo_id, **kwargs)


class AutoTokenizer:
    @staticmethod
    def from_pretrained(path_or_repo_id: str | os.PathLike, **kwargs: Any) -> Wav2Vec2CTCTokenizer:
        return Wav2Vec2CTCTokenizer.from_pretrained(path_or_repo_id, **kwargs)


class AutoProcessor:
    @staticmethod
    def from_pretrained(path_or_repo_id: str | os.PathLike, **kwargs: Any) -> Wav2Vec2BertProcessor:
        return Wav2Vec2BertProcessor.from_pretrained(path_or_repo_id, **kwargs)
