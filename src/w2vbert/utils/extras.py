"""Optional dependencies: each comes with one extra of pyproject.toml's `optional-dependencies`, and every import of
one goes through `optional_import` (a module) or `require_extra` (all of an extra's modules, where the import
happens inside another library: torch.onnx imports onnxscript, fastapi's routes import python-multipart). A missing
one raises `MissingExtra`, whose message is one line naming the extra in both install forms, which the command line
prints as it is (exit code 1).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# extra -> the modules w2vbert imports from it, as pyproject.toml's [project.optional-dependencies] installs them
EXTRAS = {
    "lm": ("flashlight.lib.text",),
    "train": ("tensorboard",),
    "lora": ("peft",),
    "bulk": ("pyarrow", "pyarrow.parquet"),
    "ray": ("ray",),
    "vad": ("silero_vad",),
    "onnx": ("onnx", "onnxscript", "onnxruntime"),
    "serve": ("fastapi", "uvicorn", "wsproto", "websockets", "multipart", "prometheus_client"),
}


class MissingExtra(ImportError):
    """An optional dependency that is not installed; the message names the extra that brings it."""

    def __init__(self, module: str, extra: str, needed_for: str) -> None:
        super().__init__(
            f"{needed_for} needs {module}, which is not installed: pip install 'w2vbert[{extra}]' (from the package "
            f"index) or pip install '.[{extra}]' (in a clone of the repository)",
            name=module,
        )
        self.extra = extra


def extra_of(module: str) -> str:
    """The extra that installs `module` (or the package it belongs to)."""
    for extra, modules in EXTRAS.items():
        if any(module == name or module.startswith(name + ".") for name in modules):
            return extra
    raise KeyError(f"{module} is not an optional dependency of w2vbert (EXTRAS lists them)")


def optional_import(module: str, needed_for: str) -> ModuleType:
    """`import module`, or a `MissingExtra` saying which extra installs it; `needed_for` names what wants it
    ("beam search", "w2vbert serve")."""
    extra = extra_of(module)
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(module, extra, needed_for) from error


def require_extra(extra: str, needed_for: str) -> None:
    """Import every module of `extra`: a `MissingExtra` for the first missing one, before the work starts."""
    for module in EXTRAS[extra]:
        optional_import(module, needed_for)
