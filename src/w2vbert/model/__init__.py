"""The model: one config dataclass, the Conformer encoder, its heads, the pre-training model, and loading.

- `config`: `Wav2Vec2BertConfig`, the one description of the architecture (field names as in `config.json`),
  which behaves as transformers' `PretrainedConfig`; `config_dict`: what it keeps beside its fields (transformers'
  common attributes, unknown keys) and its `to_dict` / `to_diff_dict`; `config_rules`: the rules its values keep
  to build a model, checked where one is built or loaded; `field_kinds`: the values each field annotation
  admits; `size`: the parameter count that refuses a model too large to build.
- `encoder`: `Wav2Vec2BertModel`, the feature projection and the recipe; `conformer`: the Conformer block
  (feed-forward, convolution module, self-attention) and the stack of blocks; `positions`: the three position
  schemes' shared inputs; `adapter`: the strided adapter layers.
- `attention`, `layers`, `spec_augment`: the pieces the encoder's modules are built from.
- `chunking`: a chunked (streaming) model's attention chunks and the caches its modules keep between chunks;
  `streaming`: `StreamingEncoder`, cached chunk-by-chunk inference equal to one forward.
- `heads`: CTC, sequence, frame and x-vector heads on the encoder. `pretraining`: the w2v-BERT objective.
- `outputs`: the output dataclasses, as transformers names them.
- `inputs`: the contract of every forward's inputs, and the `Padding` an attention mask (any 0/1 mask) gives.
- `base`: what every model class shares: weight init, output flags, length arithmetic, `save_pretrained`, and
  the `from_pretrained` entry point; `loader`: its work (the meta-device build, the checkpoint's tensors, the
  `Placement` of a load: device, dtype, int8).
- `fairseq2`: Meta's original checkpoints, one table of key patterns. `quantization`: bf16, int8, compile.
- `auto`: the `Auto*` entry points.

Module attribute names equal the Hugging Face checkpoint names. Imports text, audio and loading, never the layers
above (inference, training, serving, export, cli).
"""
