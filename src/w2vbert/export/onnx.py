"""The ONNX export: a model (encoder or any head) as an ONNX file that ONNX Runtime runs, with no custom ops.

In this file, in order:
- `EXPORT_POSITIONS`, `OUTPUT_NAMES`, `EXPORT_DTYPES`, `QUANTIZATIONS`: the position schemes, model classes
  (with the graph outputs of each), dtypes and quantizations the export expresses.
- `check_exportable`: refuses, by name, what the export cannot express; `check_finite_weights`: a model with a NaN
  or infinite weight, naming it.
- `export_onnx`: the functional interface: one model -> one .onnx file (fp32 or fp16, optionally int8 weights);
  then what it uses: `check_dynamic`, `example_inputs` (the traced example), `quantize_onnx_int8`.
- `export_directory`: a model directory -> OUT/model.onnx with config.json and the processor files beside it;
  `check_destination`: the output directories it refuses before writing anything.
The command line, `w2vbert export`, is cli/export.py.

The graph: inputs `input_features` (batch, frames, 160) float and `attention_mask` (batch, frames) int32 (the
feature extractor's `ATTENTION_MASK_DTYPE`, so its output feeds the graph as it comes), both axes dynamic; outputs
as `OUTPUT_NAMES`. It is traced by `torch.onnx.export(dynamo=True)`, under which `torch.onnx.is_in_onnx_export()`
holds: the model then skips its value checks (they need the values) and its attention runs export/attention.py's
formulation (a Scan over fixed query chunks, no strided views). The value checks run here on the example instead; a
graph run in ONNX Runtime trusts its inputs. The exporter's warnings and log lines about its own internals
(`QUIET_WARNINGS`, `QUIET_LOGS`) are silenced around the call; any other warning reaches the user.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from w2vbert.audio.features import ATTENTION_MASK_DTYPE
from w2vbert.export.attention import EXPORT_CHUNK_ROWS, installed
from w2vbert.export.names import EXPORT_DTYPE_NAMES, QUANTIZATIONS
from w2vbert.loading.devices import DTYPES
from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.encoder import Wav2Vec2BertModel
from w2vbert.model.heads import (
    Wav2Vec2BertForAudioFrameClassification,
    Wav2Vec2BertForCTC,
    Wav2Vec2BertForSequenceClassification,
    Wav2Vec2BertForXVector,
)
from w2vbert.utils.extras import optional_import, require_extra

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger("w2vbert")

# position_embeddings_type values the exported attention expresses: Shaw's clamped distances (W2v-BERT 2.0),
# rotary, and none. Transformer-XL's "relative" reads a (T, 2T-1) table per layer, which has no chunked form here.
EXPORT_POSITIONS = ("relative_key", "rotary", None)
# Graph outputs per model class, named as the attributes of the class's output.
OUTPUT_NAMES: dict[type[Wav2Vec2BertPreTrainedModel], tuple[str, ...]] = {
    Wav2Vec2BertModel: ("last_hidden_state",),
    Wav2Vec2BertForCTC: ("logits",),
    Wav2Vec2BertForSequenceClassification: ("logits",),
    Wav2Vec2BertForAudioFrameClassification: ("logits",),
    Wav2Vec2BertForXVector: ("logits", "embeddings"),
}
EXPORT_DTYPES = {name: DTYPES[dtype] for name, dtype in EXPORT_DTYPE_NAMES.items()}  # --dtype -> torch dtype
ONNX_NAME = "model.onnx"
OPSET = 18
# Warnings torch.onnx.export (2.13) gives on every export, about its own internals, that no user can act on:
# (category, message regex). Both inputs share the `batch` and `frames` axes, which it reports as a rename it skips.
QUIET_WARNINGS = (
    (UserWarning, r"# The axis name: \w+ will not be used, since it shares the same shape constraints"),
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)
# Log lines of the same kind: (logger name, message prefix). The exporter's registry looks for torchvision's ops;
# onnxruntime's quantizer suggests a pre-processing step the int8 export has no use for (root logger).
QUIET_LOGS = (
    ("torch.onnx._internal.exporter._registration", "torchvision is not installed"),
    ("root", "Please consider to run pre-processing before quantization"),
)


class _Graph(nn.Module):
    """What is traced: (input_features, attention_mask) -> the class's outputs as a tuple."""

    def __init__(self, model: Wav2Vec2BertPreTrainedModel, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, input_features: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(input_features, attention_mask, return_dict=True)
        return tuple(getattr(output, name) for name in self.names)


def check_exportable(model: nn.Module) -> tuple[str, ...]:
    """The graph outputs of `model`, or a ValueError naming what the export supports."""
    names = OUTPUT_NAMES.get(type(model))
    if names is None:
        supported = ", ".join(cls.__name__ for cls in OUTPUT_NAMES)
        raise ValueError(f"the ONNX export supports {supported}; got {type(model).__name__}")
    kind = model.config.position_embeddings_type
    if kind not in EXPORT_POSITIONS:
        raise ValueError(
            f"the ONNX export supports position_embeddings_type {' or '.join(map(repr, EXPORT_POSITIONS))}, got "
            f"{kind!r}: its attention has no export formulation here; run this model in PyTorch"
        )
    return names


def check_finite_weights(model: nn.Module) -> None:
    """A ValueError naming the first parameter or buffer holding a NaN or an infinity: its graph would compute NaN
    for every input, which ONNX Runtime runs without a word."""
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"the model's weight {name} holds NaN or infinite values: refusing to export it")


def export_onnx(
    model: Wav2Vec2BertPreTrainedModel,
    path: str | os.PathLike,
    *,
    dtype: str = "fp32",
    quantize: str | None = None,
) -> Path:
    """Write `model` as an ONNX file at `path`; returns the path.

    dtype "fp32" or "fp16" (the graph computes and takes input_features in it); quantize "int8" stores the
    weights of the matrix products as int8 (onnxruntime's dynamic quantization, from the fp32 graph). The model is
    left as it came (an fp16 export runs on a half-precision copy).
    """
    names = check_exportable(model)
    check_finite_weights(model)
    require_extra("onnx", "the ONNX export")  # torch.onnx's exporter imports onnxscript deep inside
    if dtype not in EXPORT_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype!r}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS} or None, got {quantize!r}")
    if quantize is not None and dtype != "fp32":
        raise ValueError(f"int8 quantization starts from the fp32 graph: got dtype {dtype!r}, quantize {quantize!r}")
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        target = EXPORT_DTYPES[dtype]
        graph = _Graph(model if model.dtype == target else _copy_to(model, target), names).eval()
        features, mask = example_inputs(model, target)
        graph.model.check_inputs(features, mask)  # the value checks the graph leaves out, on the example
        batch, frames = torch.export.Dim("batch"), torch.export.Dim("frames")
        axes = {0: batch, 1: frames}
        with torch.no_grad(), installed(), quiet_exporter():
            program = torch.onnx.export(
                graph, (features, mask), input_names=["input_features", "attention_mask"], output_names=list(names),
                dynamic_shapes={"input_features": axes, "attention_mask": axes}, dynamo=True, opset_version=OPSET,
                verbose=False,
            )
        check_dynamic(program.model_proto)
        path.parent.mkdir(parents=True, exist_ok=True)
        if quantize is None:
            program.save(path)
        else:
            with tempfile.TemporaryDirectory(dir=path.parent) as scratch, quiet_exporter():
                float_path = Path(scratch) / ONNX_NAME
                program.save(float_path)
                quantize_onnx_int8(float_path, path)
    finally:
        model.train(was_training)
    return path


class _DropPrefix(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silences `QUIET_WARNINGS` and `QUIET_LOGS` (and nothing else) for the duration."""
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        for category, message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        for name, prefix in QUIET_LOGS:
            target, drop = logging.getLogger(None if name == "root" else name), _DropPrefix(prefix)
            target.addFilter(drop)
            stack.callback(target.removeFilter, drop)
        yield


def check_dynamic(proto: onnx.ModelProto) -> None:
    """A RuntimeError unless both axes of both inputs stayed symbolic: torch.onnx.export falls back to a fixed
    shape (with a warning only) when the trace could not keep one dynamic."""
    for tensor in proto.graph.input:
        fixed = [axis for axis, dim in enumerate(tensor.type.tensor_type.shape.dim) if axis < 2 and not dim.dim_param]
        if fixed:
            raise RuntimeError(f"the exported graph fixed axes {fixed} of {tensor.name} (expected batch and frames "
                               "dynamic): this model's forward has a shape-dependent branch the trace froze")


def _copy_to(model: Wav2Vec2BertPreTrainedModel, dtype: torch.dtype) -> Wav2Vec2BertPreTrainedModel:
    return copy.deepcopy(model).to(dtype)


def example_inputs(model: Wav2Vec2BertPreTrainedModel, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The traced example: features (2, frames, 160) and a right-padded mask in the feature extractor's dtype (the
    second clip 70 % long).

    Long enough that every attention, the adapter's after its strides too, has at least 2 query chunks
    (export/attention.py: a 1-chunk example would fix the graph's length)."""
    frames = EXPORT_CHUNK_ROWS + 44
    while model.get_feat_extract_output_lengths(frames) < EXPORT_CHUNK_ROWS + 44:
        frames *= 2
    lengths = torch.tensor([frames, frames * 7 // 10])
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, frames, model.config.feature_projection_input_dim, generator=generator).to(dtype)
    mask = (torch.arange(frames)[None, :] < lengths[:, None]).to(ATTENTION_MASK_DTYPE)
    return features, mask


def quantize_onnx_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of the weights of MatMul and Gemm (activations quantized per call at run time).

    Weights in 7 bits (`reduce_range`, ONNX Runtime's remedy for CPUs without VNNI): its uint8 x int8 kernel on
    AVX2 sums pairs of products in int16, which saturates with full-range weights. Measured on an AMD EPYC Zen 3
    (AVX2, no VNNI), tests/test_export.py's model: worst per-frame cosine with float32 0.956 with 8-bit weights,
    0.9965 with 7-bit ones (the file runs on any CPU, so it is made for the weakest)."""
    quantization = optional_import("onnxruntime.quantization", "int8 quantization of an ONNX graph")
    quantization.quantize_dynamic(source, target, weight_type=quantization.QuantType.QInt8, reduce_range=True,
                                  op_types_to_quantize=["MatMul", "Gemm"])


PROCESSOR_FILES = (
    "config.json", "preprocessor_config.json", "processor_config.json",
    "vocab.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
)


def export_directory(
    source: str | os.PathLike, destination: str | os.PathLike, *, dtype: str = "fp32", quantize: str | None = None
) -> Path:
    """A model directory (or hub id) -> `destination`/model.onnx, with config.json, preprocessor_config.json and
    the CTC tokenizer files (those the source has) copied beside it. Returns the .onnx path."""
    from w2vbert.loading.hub import resolve_optional_file
    from w2vbert.model.auto import load_model

    destination = check_destination(source, destination)
    if destination.exists() and (not destination.is_dir() or (destination / ONNX_NAME).exists()):
        raise FileExistsError(f"{destination / ONNX_NAME} exists; choose a new output directory")
    model = load_model(source)
    path = export_onnx(model, destination / ONNX_NAME, dtype=dtype, quantize=quantize)
    for name in PROCESSOR_FILES:
        found = resolve_optional_file(source, name)
        if found is not None:
            shutil.copyfile(found, destination / name)
    return path


def check_destination(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """`destination` as a Path, or a ValueError when it is empty (Path("") is the current directory) or is, or
    lies inside, the model directory `source` (the export would write beside the weights it reads, then copy the
    model's config.json onto itself)."""
    if not str(destination).strip():
        raise ValueError("the output directory is empty: name a new directory for model.onnx")
    destination = Path(destination)
    if Path(source).is_dir():
        model_dir = Path(source).resolve()
        if destination.resolve() == model_dir or model_dir in destination.resolve().parents:
            raise ValueError(f"the output directory {str(destination)!r} is the model directory {str(source)!r} or "
                             "lies inside it: name a directory outside it")
    return destination
