"""w2vbert: a fast standalone PyTorch implementation of Wav2Vec2-BERT / W2v-BERT 2.0.

The public names are those of `transformers`, so code written against its Wav2Vec2-BERT classes works here
after changing the import. They are listed once, as the imports of the `if TYPE_CHECKING:` block at the end of
this file: static tools read them there, and at run time each name is imported from the module named there when
first used (`w2vbert.pipeline` loads the pipelines, and with them torch), so that `w2vbert --version` and
`--help` answer at once. ARCHITECTURE.md at the repository root maps the packages.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_module_of: dict[str, str] = {}  # public name -> the module it lives in, read from the block below on first use


def _public_modules() -> dict[str, str]:
    """{public name: module}, from the `from ... import` statements under `if TYPE_CHECKING:` in this file."""
    if not _module_of:
        import ast  # only when a public name is first asked for: `--help` never pays for it

        with open(__file__, encoding="utf-8") as handle:
            tree = ast.parse(handle.read())
        block = next(n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING")
        for statement in block.body:
            assert isinstance(statement, ast.ImportFrom) and statement.module, ast.unparse(statement)
            _module_of.update({alias.name: statement.module for alias in statement.names})
    return _module_of


def __getattr__(name: str) -> Any:
    """A public name, `__all__`, or a subpackage (`w2vbert.model`), imported on first use."""
    if name == "__all__":
        return sorted(_public_modules()) + ["__version__"]
    module = _public_modules().get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_public_modules()))


if TYPE_CHECKING:  # the public names, each once: static tools import them here, __getattr__ reads this block
    from w2vbert.audio.decode import load_audio, stream_audio
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor
    from w2vbert.audio.vad import VadOptions
    from w2vbert.inference.pipelines import pipeline
    from w2vbert.model.auto import (
        AutoConfig,
        AutoFeatureExtractor,
        AutoModel,
        AutoModelForAudioClassification,
        AutoModelForAudioFrameClassification,
        AutoModelForAudioXVector,
        AutoModelForCTC,
        AutoModelForPreTraining,
        AutoProcessor,
        AutoTokenizer,
        load_model,
    )
    from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
    from w2vbert.model.config import Wav2Vec2BertConfig
    from w2vbert.model.encoder import Wav2Vec2BertModel
    from w2vbert.model.heads import (
        Wav2Vec2BertForAudioFrameClassification,
        Wav2Vec2BertForCTC,
        Wav2Vec2BertForSequenceClassification,
        Wav2Vec2BertForXVector,
    )
    from w2vbert.model.outputs import (
        CausalLMOutput,
        LayerEmbedding,
        SequenceClassifierOutput,
        TokenClassifierOutput,
        Wav2Vec2BaseModelOutput,
        Wav2Vec2BertBaseModelOutput,
        XVectorOutput,
    )
    from w2vbert.model.pretraining import Wav2Vec2BertForPreTraining
    from w2vbert.model.streaming import StreamingEncoder
    from w2vbert.text.ctc_text import Wav2Vec2CTCTokenizerOutput
    from w2vbert.text.processor import Wav2Vec2BertProcessor
    from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
    from w2vbert.text.vocab import build_vocab
    from w2vbert.training.recipes import DataConfig, finetune, pretrain
    from w2vbert.training.trainer import Trainer, TrainingConfig
