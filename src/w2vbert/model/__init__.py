"""The model: one config dataclass, the Conformer encoder, its heads, the pre-training model, and `from_pretrained`.

- `config`: `Wav2Vec2BertConfig`, the one description of the architecture (field names as in `config.json`).
- `encoder`: `Wav2Vec2BertModel`, the feature projection, Conformer layers and adapter.
- `attention`, `layers`, `spec_augment`: the pieces the encoder is built from.
- `heads`: CTC, sequence, frame and x-vector heads on the encoder. `pretraining`: the w2v-BERT objective.
- `outputs`: the output dataclasses, as transformers names them.
- `base`: what every model class shares: weight init, length arithmetic, `from_pretrained` / `save_pretrained`.
- `fairseq2`: Meta's original checkpoints, one table of key patterns. `quantization`: bf16, int8, compile.
- `auto`: the `Auto*` entry points.

Module attribute names equal the Hugging Face checkpoint names. Imports text, audio and loading, never the layers
above (inference, training, serving, export, cli).
"""
