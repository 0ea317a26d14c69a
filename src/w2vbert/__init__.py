"""w2vbert: a fast standalone PyTorch implementation of Wav2Vec2-BERT / W2v-BERT 2.0."""

__version__ = "0.1.0"

from .config import Wav2Vec2BertConfig  # noqa: E402

__all__ = ["Wav2Vec2BertConfig", "__version__"]
