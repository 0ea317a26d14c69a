"""The `w2vbert` command line: one module per group of subcommands, imported only when its command runs.

- `parser`: the parser and `main(argv) -> exit code`. `arguments`: `UsageError` and shared argument types.
- `transcribe`: transcribe, align. `classify`: classify. `embed`: embed, verify. `info`: info. `jobs`: what they
  share (common arguments, checks before any audio is read, progress, corpus runs).
- `train`: finetune, pretrain. `serve`: serve. `export`: export to ONNX. `convert`: fairseq2 checkpoints to a model
  folder.
"""

from w2vbert.cli.parser import main

__all__ = ["main"]
