"""The main job of the README on the shipped example: transcribe real speech offline, then take embeddings.

There is no trained demo model yet (it comes with the fine-tuning work), so this builds the small random CTC
model the tests use, saves it with its processor files in the Hugging Face layout, and runs the user's path on
it: the `w2vbert transcribe` command on espeak-ng clips in tests/data (its text is gibberish from random
weights; the path is real), then `pipeline("feature-extraction")` for layer 2 of 4, mean-pooled.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

import w2vbert
from w2vbert.cli import main as w2vbert_command

ROOT = Path(__file__).resolve().parent.parent
CLIPS = [ROOT / "tests" / "data" / "hello.wav", ROOT / "tests" / "data" / "quick_44k.flac"]


def build_model(directory: str) -> None:
    vocab = w2vbert.build_vocab(["the quick brown fox jumps over the lazy dog"])
    tokenizer = w2vbert.Wav2Vec2CTCTokenizer(vocab=vocab, unk_token="[UNK]", pad_token="[PAD]")
    torch.manual_seed(0)
    config = w2vbert.Wav2Vec2BertConfig(
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=len(vocab),
        pad_token_id=tokenizer.pad_token_id,
        add_adapter=True,
    )
    w2vbert.Wav2Vec2BertForCTC(config).save_pretrained(directory)
    feature_extractor = w2vbert.SeamlessM4TFeatureExtractor(padding_value=1.0)
    w2vbert.Wav2Vec2BertProcessor(feature_extractor, tokenizer).save_pretrained(directory)


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        build_model(directory)
        print(f"$ w2vbert transcribe {' '.join(str(c.relative_to(ROOT)) for c in CLIPS)} --model <tiny random model>")
        code = w2vbert_command(["transcribe", *map(str, CLIPS), "--model", directory, "--timestamps", "word"])
        embed = w2vbert.pipeline("feature-extraction", model=directory, layer=2, pool="mean")
        vector = embed(str(CLIPS[0]))
        print(f"layer-2 embedding of {CLIPS[0].name}: {vector.shape}, mean-pooled over its 20 ms frames")
    return code


if __name__ == "__main__":
    sys.exit(main())
