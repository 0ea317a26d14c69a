"""The work of `from_pretrained` and `from_fairseq2`: a checkpoint into a model class, on its device and dtype.

Loading builds the model on the meta device (no memory, no random init), assigns the checkpoint's tensors,
and initialises only what the checkpoint lacks: a 580M-parameter model loads in about the time it takes to
read its file, with one copy of the weights in memory. A Hugging Face directory or hub repo is read through
loading/weights.py, Meta's original `.pt` files through the table of model/fairseq2.py; `quantize=` and
`load_in_8bit=` hand the loaded model to model/quantization.py.

One load reads config.json once, and resolves once where the model goes: a `Placement` (device, dtype,
quantisation), which the steps after it read.

In order: `MismatchedSizesError`, `Placement` (and `load_dtype`, its "auto"), `asks_for_int8` (transformers'
`quantization_config`), `read_config`, `checkpoint_tensors`, `build_from_state_dict` (with `align_prefix`),
`load_fairseq2`, `place`, and the report of a load: `transformers_loading_info` (what `output_loading_info`
returns) and `report_loading`.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from w2vbert.loading.devices import fastest_dtype, resolve_device, resolve_dtype, warn_if_emulated
from w2vbert.loading.hub import HubOptions
from w2vbert.loading.weights import load_weights
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.fairseq2 import FAIRSEQ2_SUFFIXES, detect_kind, infer_config, load_fairseq2_checkpoint, rename
from w2vbert.model.quantization import convert_from_file, optimize_for_inference

if TYPE_CHECKING:
    from w2vbert.model.base import Wav2Vec2BertPreTrainedModel

logger = logging.getLogger("w2vbert")

LISTED_NAMES = 8  # tensor names a loading report spells out before it counts the rest
LoadingInfo = dict[str, list]  # "missing_keys", "unexpected_keys", "mismatched_keys": sorted, for the log


class MismatchedSizesError(ValueError, RuntimeError):
    """A checkpoint's tensor whose shape differs from the model's: a ValueError, as this project reports a bad
    value, and the RuntimeError transformers raises for it, so that either `except` catches it."""


@dataclass(frozen=True)
class Placement:
    """Where a loaded model runs and in what form: resolved once per load, then read by each step after it."""

    device: torch.device  # the one device of the whole model (device=, else device_map=; the CPU by default)
    dtype: torch.dtype  # of its floating weights (with quantize: of those left float): float32 unless asked
    quantize: str | None = None  # "int8": matmul weights packed to int8 once loaded (load_in_8bit=True: on CUDA)

    @classmethod
    def resolve(
        cls,
        device: torch.device | str | int | dict | None,
        dtype: torch.dtype | str | None,
        quantize: str | None = None,
        load_in_8bit: bool = False,
        stored_dtype: str | None = None,
    ) -> Placement:
        """`from_pretrained`'s keywords -> the placement; `stored_dtype` is what config.json records (for "auto")."""
        if torch.get_default_device().type == "meta":  # as transformers refuses it: the weights would stay empty
            raise RuntimeError(  # its first words are transformers' message for the same mistake
                "You are using `from_pretrained` with a meta device context manager (or "
                "torch.set_default_device('meta')), which leaves no weights: load outside it, or build on the meta "
                "device with Model(config)"
            )
        target = resolve_device("cpu" if device is None else device)
        if load_in_8bit:
            if target.type != "cuda":
                raise RuntimeError(
                    "load_in_8bit=True is bitsandbytes' LLM.int8 and needs device='cuda' (or device_map='auto' on a "
                    "machine with a GPU); on CPU pass quantize='int8' (PyTorch's own int8) or "
                    "torch_dtype=torch.bfloat16 instead"
                )
            quantize = "int8"
        return cls(target, load_dtype(dtype, stored_dtype), quantize)

    @classmethod
    def for_inference(cls, device: str | None, dtype: str, quantize: str | None = None) -> Placement:
        """What the command line and the server load with: `device` None is the GPU where there is one, `dtype`
        "auto" the fastest the device runs natively (`devices.fastest_dtype`), and int8 on CUDA quantizes the
        float32 model (bitsandbytes' LLM.int8 takes float32, fp16 inside); on CPU int8 keeps the rest of the
        model in `dtype` (bfloat16: oneDNN's int8 matmul, model/quantization.py). A dtype this CPU emulates is
        warned about once."""
        target = resolve_device(device)
        if quantize and target.type == "cuda":
            return cls(target, torch.float32, quantize)
        torch_dtype = fastest_dtype(target) if dtype == "auto" else resolve_dtype(dtype)
        warn_if_emulated(target, torch_dtype)
        return cls(target, torch_dtype, quantize)

    def keywords(self) -> dict[str, Any]:
        """As `from_pretrained`'s keywords, which resolve back to this placement."""
        return {"device": self.device, "torch_dtype": self.dtype, "quantize": self.quantize}


def load_dtype(dtype: torch.dtype | str | None, stored_dtype: str | None) -> torch.dtype:
    """`torch_dtype` -> the dtype to load in: float32 by default, as transformers (whatever the file stores);
    "auto" takes the one config.json records."""
    if dtype == "auto":
        dtype = stored_dtype
    if dtype is None:
        return torch.float32
    try:
        return resolve_dtype(dtype)
    except ValueError:
        raise ValueError(f"torch_dtype must be a floating torch dtype, its name, or 'auto'; got {dtype!r}") from None


def stored_dtype(config: Wav2Vec2BertConfig) -> str | None:
    """The dtype config.json records (transformers writes `torch_dtype`, and `dtype` from version 5), by name."""
    return None if config.dtype is None else str(config.dtype).removeprefix("torch.")


def is_fairseq2_file(source: str | os.PathLike) -> bool:
    """Whether `source` is Meta's original checkpoint file, which from_pretrained reads directly."""
    path = Path(source)
    return path.suffix in FAIRSEQ2_SUFFIXES and path.is_file()


def asks_for_int8(quantization_config: Any) -> bool:
    """Whether transformers' `quantization_config` (an object with `to_dict`, or its dict) asks for what
    `load_in_8bit=True` gives (bitsandbytes' LLM.int8, on CUDA); any other quantization is refused by name."""
    if quantization_config is None:
        return False
    to_dict = getattr(quantization_config, "to_dict", None)  # transformers' QuantizationConfigMixin (not imported)
    values = quantization_config if isinstance(quantization_config, dict) else to_dict() if callable(to_dict) else None
    if not isinstance(values, dict):
        raise TypeError(
            f"quantization_config must be transformers' BitsAndBytesConfig or its dict, got "
            f"{type(quantization_config).__name__}"
        )
    if values.get("quant_method", "bitsandbytes") == "bitsandbytes" and values.get("load_in_8bit") is True:
        return True
    asked = {k: values[k] for k in ("quant_method", "load_in_4bit", "load_in_8bit") if k in values}
    raise ValueError(
        f"quantization_config {asked} is not available here: w2vbert quantizes to int8 only, with quantize='int8' "
        "(PyTorch's int8 on CPU, bitsandbytes' LLM.int8 on CUDA) or BitsAndBytesConfig(load_in_8bit=True) on CUDA"
    )


def read_config(
    source: str | os.PathLike | None, hub: HubOptions, config: Wav2Vec2BertConfig | None, overrides: dict[str, Any]
) -> Wav2Vec2BertConfig:
    """The config of a load: `config` when given, else config.json's; `overrides` replace stored values."""
    if config is None and source is None:
        raise OSError(
            "from_pretrained(None) has no config.json to read: pass config=Wav2Vec2BertConfig(...) and "
            "state_dict=... (or a model directory or hub repo id)"
        )
    if config is None:
        return Wav2Vec2BertConfig.from_hub(source, hub, **overrides)
    if overrides:
        return Wav2Vec2BertConfig.from_dict(config.to_dict(), **overrides)
    return config


def checkpoint_tensors(
    source: str | os.PathLike | None, hub: HubOptions, state_dict: dict[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    """The tensors a load assigns: `state_dict` with no checkpoint (transformers' `from_pretrained(None, config=,
    state_dict=)`, which refuses both at once too), else the checkpoint's files."""
    if state_dict is not None:
        if source is not None:
            raise ValueError(
                f"state_dict cannot be passed together with a checkpoint ({source}): pass from_pretrained(None, "
                "config=..., state_dict=...), or no state_dict"
            )
        if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise TypeError(f"state_dict must map tensor names to tensors, got {type(state_dict).__name__}")
        return state_dict
    if source is None:
        raise ValueError("from_pretrained(None, config=...) needs state_dict=...: there are no checkpoint files")
    return load_weights(source, hub)


def build_from_state_dict(
    cls: type[Wav2Vec2BertPreTrainedModel],
    config: Wav2Vec2BertConfig,
    state: dict[str, torch.Tensor],
    ignore_mismatched_sizes: bool = False,
) -> tuple[Wav2Vec2BertPreTrainedModel, LoadingInfo]:
    """Build on the meta device, assign `state`, initialise the rest; returns (model, loading info)."""
    from w2vbert.model.meta_count import ShapesOnly  # it builds models: imported when one is loaded

    with torch.device("meta"), ShapesOnly():  # no init ops on meta (the first would import torch's compiler: ~1 s)
        model = cls(config)
    expected = dict(model.state_dict())
    state = dict(align_prefix(state, expected, cls.base_model_prefix + "."))  # a caller's state_dict stays whole
    mismatched = [
        (name, tensor.shape, expected[name].shape)
        for name, tensor in state.items()
        if name in expected and tensor.shape != expected[name].shape
    ]
    if mismatched and not ignore_mismatched_sizes:
        listing = "; ".join(f"{name}: checkpoint {tuple(a)}, model {tuple(b)}" for name, a, b in mismatched)
        raise MismatchedSizesError(
            f"tensor shapes differ between the checkpoint and {cls.__name__}: {listing}. If the head is meant "
            "to be new (another vocabulary or label set), pass ignore_mismatched_sizes=True to re-initialise it"
        )
    for name, _, _ in mismatched:
        del state[name]
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(set(expected) - set(state) - {name for name, _, _ in mismatched})  # those are re-initialised
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False, assign=True)
    model.materialize_missing()
    return model, {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched}


def align_prefix(state: dict[str, torch.Tensor], expected: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    """Accept base-model keys in a head and head-prefixed keys in the base model, as transformers does."""
    model_has_prefix = any(name.startswith(prefix) for name in expected)
    state_has_prefix = any(name.startswith(prefix) for name in state)
    if model_has_prefix and not state_has_prefix:
        return {(name if name in expected else prefix + name): tensor for name, tensor in state.items()}
    if state_has_prefix and not model_has_prefix:
        return {name.removeprefix(prefix): tensor for name, tensor in state.items()}
    return state


def load_fairseq2(
    cls: type[Wav2Vec2BertPreTrainedModel], path: Path, kind: str, config_overrides: dict[str, Any]
) -> tuple[Wav2Vec2BertPreTrainedModel, LoadingInfo]:
    """`cls` from Meta's original file: `kind` "w2v-bert" / "seamless-m4t-v2", or "auto" from the names. The
    encoder must be whole: a tensor it lacks, or one with no place in it, is an error naming it."""
    state = load_fairseq2_checkpoint(path)
    kind = detect_kind(state) if kind == "auto" else kind
    tensors, sources = rename(state, kind, pretraining=cls.pretraining_tensors)
    config = infer_config(tensors, kind)
    if config_overrides:
        config = Wav2Vec2BertConfig.from_dict(config.to_dict(), **config_overrides)
    model, info = build_from_state_dict(cls, config, tensors)
    prefix = "" if model.base_model is model else cls.base_model_prefix + "."  # a head's new tensors are its own
    lacking = [name.removeprefix(prefix) for name in info["missing_keys"] if name.startswith(prefix)]
    if lacking:
        raise ValueError(f"{path}: the checkpoint lacks {len(lacking)} tensor(s) the model needs: {lacking[:8]}")
    if info["unexpected_keys"]:
        originals = sorted(sources[name.removeprefix(prefix)] for name in info["unexpected_keys"])
        raise ValueError(
            f"{path}: {len(originals)} tensor(s) have no place in the model the other tensors describe: "
            f"{originals[:8]} (an adaptor part without the adaptor layers?)"
        )
    return model, info


def place(model: nn.Module, placement: Placement, attn_implementation: str | None = None) -> nn.Module:
    """A model fresh from its checkpoint onto `placement`, in inference mode (as transformers loads); returns it.

    int8 quantizes from the file's float32 weights and converts the rest to the dtype block by block; another
    dtype on CPU is converted block by block too, so the file's pages never all stay resident.
    """
    if placement.quantize is None and placement.device.type == "cpu":
        convert_from_file(model, placement.dtype)
    else:
        model.to(device=placement.device, dtype=torch.float32 if placement.quantize is not None else placement.dtype)
    if attn_implementation is not None:
        model.set_attn_implementation(attn_implementation)
    model.eval()
    if placement.quantize is not None:
        # The weights are the file's pages, untouched: int8 can hand each block's back once it is packed.
        model = optimize_for_inference(model, placement.dtype, quantize=placement.quantize, release_file_pages=True)
        gc.collect()  # the float weights replaced by int8 ones hold the checkpoint's memory map in cycles
    return model


def transformers_loading_info(info: LoadingInfo) -> dict[str, Any]:
    """What `output_loading_info=True` returns, as transformers: the names as sets, mismatches as (name, shape in
    the checkpoint, shape in the model) tuples, and `error_msgs` (which a load that got here has none of)."""
    return {
        "missing_keys": set(info["missing_keys"]),
        "unexpected_keys": set(info["unexpected_keys"]),
        "mismatched_keys": set(info["mismatched_keys"]),
        "error_msgs": [],
    }


def report_loading(class_name: str, info: LoadingInfo) -> None:
    """Warn about what loading left out or started fresh, as transformers does: counts and the first few names."""

    def listing(names: list[str]) -> str:
        more = len(names) - LISTED_NAMES
        return ", ".join(names[:LISTED_NAMES]) + (f" and {more} more" if more > 0 else "")

    if info["unexpected_keys"]:
        logger.warning(
            "%s ignored %d checkpoint tensors it has no place for: %s",
            class_name, len(info["unexpected_keys"]), listing(info["unexpected_keys"]),
        )
    if info["missing_keys"]:
        logger.warning(
            "%s newly initialised %d tensors the checkpoint lacks (train them before use): %s",
            class_name, len(info["missing_keys"]), listing(info["missing_keys"]),
        )
    if info["mismatched_keys"]:
        logger.warning(
            "re-initialised %d tensors whose shape differs: %s", len(info["mismatched_keys"]),
            listing([f"{n} {tuple(a)}->{tuple(b)}" for n, a, b in info["mismatched_keys"]]),
        )
