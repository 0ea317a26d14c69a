"""The `w2vbert` command line: one module per group of subcommands, imported only when its command runs.

- `parser`: the parser and `main(argv) -> exit code`. `arguments`: `UsageError` and shared argument types.
- `commands`: transcribe, align, classify, embed, verify, info. `convert`: fairseq2 checkpoints to a model folder.
"""

from w2vbert.cli.parser import main

__all__ = ["main"]
