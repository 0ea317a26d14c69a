"""Small utilities every layer may use: the bottom of the package, importing nothing else of w2vbert.

- `batch`: `BatchFeature` (the dict the feature extractor and the tokenizer return), `as_columns` and
  `padding_plan` (transformers' padding arithmetic), which both `pad` methods share.
- `cores`: `claim_cores`, cores a server process keeps to itself (`serve --pin-cores`), claimed with file locks.
- `extras`: optional dependencies, each imported through `optional_import`, and the one-line `MissingExtra`.
- `files`: atomic writes (`atomic_output`, `atomic_write_text`) and JSON objects read with errors naming the file.
- `memory`: the C heap: `keep_freed_memory` (freed memory under 64 MiB an allocation reused, all of it with
  W2VBERT_KEEP_FREED_MEMORY=1: fewer page faults per forward) and `return_freed_memory` (glibc's malloc_trim).
- `padding`: `lengths_to_mask`, the one way valid lengths become a boolean mask.
"""
