"""Small utilities every layer may use: the bottom of the package, importing nothing else of w2vbert.

- `files`: atomic writes (`atomic_output`, `atomic_write_text`) and JSON objects read with errors naming the file.
- `padding`: `lengths_to_mask`, the one way valid lengths become a boolean mask.
"""
