"""w2vbert: a fast standalone PyTorch implementation of Wav2Vec2-BERT / W2v-BERT 2.0.

The public names are those of `transformers`, so code written against its Wav2Vec2-BERT classes works here
after changing the import. Names are imported when first used (`w2vbert.pipeline` loads the pipelines, and
with them torch), so that `w2vbert --version` and `--help` answer at once.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Where each public name lives: module -> names.
EXPORTS = {
    "audio": ["load_audio", "stream_audio"],
    "auto": [
        "AutoConfig", "AutoFeatureExtractor", "AutoModel", "AutoModelForAudioClassification",
        "AutoModelForAudioFrameClassification", "AutoModelForAudioXVector", "AutoModelForCTC",
        "AutoModelForPreTraining", "AutoProcessor", "AutoTokenizer", "load_model",
    ],
    "config": ["Wav2Vec2BertConfig"],
    "features": ["SeamlessM4TFeatureExtractor"],
    "recipes": ["DataConfig", "finetune", "pretrain"],
    "heads": [
        "Wav2Vec2BertForAudioFrameClassification", "Wav2Vec2BertForCTC", "Wav2Vec2BertForSequenceClassification",
        "Wav2Vec2BertForXVector",
    ],
    "modeling": ["Wav2Vec2BertModel"],
    "outputs": [
        "CausalLMOutput", "LayerEmbedding", "SequenceClassifierOutput", "TokenClassifierOutput",
        "Wav2Vec2BaseModelOutput", "Wav2Vec2BertBaseModelOutput", "XVectorOutput",
    ],
    "pipelines": ["pipeline"],
    "pretrained": ["Wav2Vec2BertPreTrainedModel"],
    "pretraining": ["Wav2Vec2BertForPreTraining"],
    "processor": ["Wav2Vec2BertProcessor"],
    "tokenizer": ["Wav2Vec2CTCTokenizer", "build_vocab"],
    "trainer": ["Trainer", "TrainingConfig"],
    "vad": ["VadOptions"],
}
_MODULE_OF = {name: module for module, names in EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF) + ["__version__"]


def __getattr__(name: str) -> Any:
    """A public name, or a submodule (`w2vbert.attention`), imported on first use."""
    module = _MODULE_OF.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what static tools see: the same names, imported eagerly
    from .audio import load_audio, stream_audio  # noqa: F401
    from .auto import (  # noqa: F401
        AutoConfig,
        AutoFeatureExtractor,
        AutoModel,
        AutoModelForAudioClassification,
        AutoModelForAudioFrameClassification,
        AutoModelForAudioXVector,
        AutoModelForCTC,
        AutoProcessor,
        AutoTokenizer,
        load_model,
    )
    from .config import Wav2Vec2BertConfig  # noqa: F401
    from .features import SeamlessM4TFeatureExtractor  # noqa: F401
    from .heads import (  # noqa: F401
        Wav2Vec2BertForAudioFrameClassification,
        Wav2Vec2BertForCTC,
        Wav2Vec2BertForSequenceClassification,
        Wav2Vec2BertForXVector,
    )
    from .modeling import Wav2Vec2BertModel  # noqa: F401
    from .outputs import (  # noqa: F401
        CausalLMOutput,
        LayerEmbedding,
        SequenceClassifierOutput,
        TokenClassifierOutput,
        Wav2Vec2BaseModelOutput,
        Wav2Vec2BertBaseModelOutput,
        XVectorOutput,
    )
    from .pipelines import pipeline  # noqa: F401
    from .pretrained import Wav2Vec2BertPreTrainedModel  # noqa: F401
    from .pretraining import Wav2Vec2BertForPreTraining  # noqa: F401
    from .processor import Wav2Vec2BertProcessor  # noqa: F401
    from .recipes import DataConfig, finetune, pretrain  # noqa: F401
    from .tokenizer import Wav2Vec2CTCTokenizer, build_vocab  # noqa: F401
    from .trainer import Trainer, TrainingConfig  # noqa: F401
    from .vad import VadOptions  # noqa: F401
