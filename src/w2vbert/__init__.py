"""w2vbert: a fast standalone PyTorch implementation of Wav2Vec2-BERT / W2v-BERT 2.0.

The public names are those of `transformers`, so code written against its Wav2Vec2-BERT classes works here
after changing the import.
"""

__version__ = "0.1.0"

from .audio import load_audio, stream_audio  # noqa: E402
from .auto import (  # noqa: E402
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
from .config import Wav2Vec2BertConfig  # noqa: E402
from .features import SeamlessM4TFeatureExtractor  # noqa: E402
from .finetune import DataConfig, finetune  # noqa: E402
from .heads import (  # noqa: E402
    Wav2Vec2BertForAudioFrameClassification,
    Wav2Vec2BertForCTC,
    Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertForXVector,
)
from .modeling import Wav2Vec2BertModel  # noqa: E402
from .outputs import (  # noqa: E402
    CausalLMOutput,
    LayerEmbedding,
    SequenceClassifierOutput,
    TokenClassifierOutput,
    Wav2Vec2BaseModelOutput,
    Wav2Vec2BertBaseModelOutput,
    XVectorOutput,
)
from .pipelines import pipeline  # noqa: E402
from .pretrained import Wav2Vec2BertPreTrainedModel  # noqa: E402
from .processor import Wav2Vec2BertProcessor  # noqa: E402
from .tokenizer import Wav2Vec2CTCTokenizer, build_vocab  # noqa: E402
from .trainer import Trainer, TrainingConfig  # noqa: E402

__all__ = [
    "DataConfig",
    "Trainer",
    "TrainingConfig",
    "finetune",
    "AutoConfig",
    "AutoFeatureExtractor",
    "AutoModel",
    "AutoModelForAudioClassification",
    "AutoModelForAudioFrameClassification",
    "AutoModelForAudioXVector",
    "AutoModelForCTC",
    "AutoProcessor",
    "AutoTokenizer",
    "SeamlessM4TFeatureExtractor",
    "Wav2Vec2BertProcessor",
    "Wav2Vec2CTCTokenizer",
    "build_vocab",
    "load_audio",
    "load_model",
    "pipeline",
    "stream_audio",
    "CausalLMOutput",
    "LayerEmbedding",
    "SequenceClassifierOutput",
    "TokenClassifierOutput",
    "Wav2Vec2BaseModelOutput",
    "Wav2Vec2BertBaseModelOutput",
    "Wav2Vec2BertConfig",
    "Wav2Vec2BertForAudioFrameClassification",
    "Wav2Vec2BertForCTC",
    "Wav2Vec2BertForSequenceClassification",
    "Wav2Vec2BertForXVector",
    "Wav2Vec2BertModel",
    "Wav2Vec2BertPreTrainedModel",
    "XVectorOutput",
    "__version__",
]
