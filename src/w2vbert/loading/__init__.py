"""Where a model's files come from and go to, and which device and dtype it runs on: the bottom layer.

- `hub`: find a file of a model in a local directory or a Hugging Face hub repo (`HubOptions`).
- `weights`: read and write weight files (safetensors first, `.bin` only through `torch.load(weights_only=True)`).
- `fingerprint`: whether a model's weight files changed, from a few KiB of each (`weights_fingerprint`).
- `devices`: device and dtype names as users spell them (`resolve_device`, `resolve_dtype`), what this CPU or
  GPU runs natively (`fastest_dtype`). A model load turns them into one `model.loader.Placement`.

Imports only `w2vbert.utils`: the feature extractor, the tokenizer and the model all load through it.
"""
