"""The main job of the README on the shipped example: speech in, embeddings out, offline.

Runs a small randomly initialised W2v-BERT (the shipped demo model comes with the fine-tuning work) through
the whole path a user takes: save it in the Hugging Face layout, load it back with `from_pretrained`, feed
real speech (an espeak-ng clip in tests/data) through the feature extractor, and read the hidden state of one
layer without running the layers above it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

import w2vbert

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    torch.manual_seed(0)
    config = w2vbert.Wav2Vec2BertConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                        intermediate_size=128)
    with tempfile.TemporaryDirectory() as directory:
        w2vbert.Wav2Vec2BertModel(config).save_pretrained(directory)
        model = w2vbert.Wav2Vec2BertModel.from_pretrained(directory)
    print(f"model: {model.num_parameters():,} parameters, {config.num_hidden_layers} Conformer blocks")

    clip = ROOT / "tests" / "data" / "en_hello.wav"
    if hasattr(w2vbert, "load_audio") and clip.exists():
        audio = w2vbert.load_audio(clip)
        inputs = w2vbert.SeamlessM4TFeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt")
        features, mask = inputs["input_features"], inputs["attention_mask"]
        print(f"audio: {clip.relative_to(ROOT)}, {len(audio) / 16000:.2f} s -> features {tuple(features.shape)}")
    else:
        features, mask = torch.randn(1, 100, 160), None
        print("audio: (front end not installed) 2 s of random features")
    embedding = model.embed(features, attention_mask=mask, layer=2)
    print(f"layer 2 of {config.num_hidden_layers}: hidden state {tuple(embedding.hidden_state.shape)}, "
          f"{int(embedding.attention_mask.sum())} valid frames (20 ms each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
