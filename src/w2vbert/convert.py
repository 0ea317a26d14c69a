"""Meta's original fairseq2 checkpoints -> the Hugging Face layout, through one table of key patterns.

`conformer_shaw.pt` (W2v-BERT 2.0 as released in seamless_communication) holds `{"model": state_dict}` in
fairseq2 names; its tensors copy over unchanged, only renamed (../shared/reference/original-checkpoint.md).
Pre-training-only tensors (the quantizer and the contrastive projections) are dropped and listed.

The file is read with `torch.load(weights_only=True)`: tensors and plain containers only, never code.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import torch

from .config import Wav2Vec2BertConfig
from .features import SeamlessM4TFeatureExtractor

logger = logging.getLogger("w2vbert")

# fairseq2 name (regex) -> Hugging Face name (template). Order does not matter: patterns do not overlap.
FAIRSEQ2_TO_HF = [
    (r"encoder_frontend\.post_extract_layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"encoder_frontend\.model_dim_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"encoder\.layers\.(\d+)\.(ffn[12])_layer_norm\.(weight|bias)", r"encoder.layers.\1.\2_layer_norm.\3"),
    (r"encoder\.layers\.(\d+)\.(ffn[12])\.inner_proj\.(weight|bias)", r"encoder.layers.\1.\2.intermediate_dense.\3"),
    (r"encoder\.layers\.(\d+)\.(ffn[12])\.output_proj\.(weight|bias)", r"encoder.layers.\1.\2.output_dense.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.linear_\2.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn\.output_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.linear_out.\2"),
    (
        r"encoder\.layers\.(\d+)\.self_attn\.sdpa\.rel_k_embed\.weight",
        r"encoder.layers.\1.self_attn.distance_embedding.weight",
    ),
    (r"encoder\.layers\.(\d+)\.conv_layer_norm\.(weight|bias)", r"encoder.layers.\1.conv_module.layer_norm.\2"),
    (
        r"encoder\.layers\.(\d+)\.conv\.(pointwise_conv1|pointwise_conv2|depthwise_conv)\.weight",
        r"encoder.layers.\1.conv_module.\2.weight",
    ),
    (
        r"encoder\.layers\.(\d+)\.conv\.layer_norm\.(weight|bias)",
        r"encoder.layers.\1.conv_module.depthwise_layer_norm.\2",
    ),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"masker\.temporal_mask_embed", "masked_spec_embed"),
]
PRETRAINING_ONLY = re.compile(r"(quantizer|final_proj|final_target_proj)\.")
_COMPILED = [(re.compile(pattern + "$"), template) for pattern, template in FAIRSEQ2_TO_HF]


def hf_name(name: str) -> str | None:
    """The Hugging Face name of a fairseq2 tensor name; None for names the table does not know."""
    for pattern, template in _COMPILED:
        match = pattern.match(name)
        if match:
            return match.expand(template)
    return None


def load_fairseq2_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The "model" state dict of a fairseq2 checkpoint file, unpickled with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"refusing to load {path}: it asks to unpickle something other than tensors ({error})"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated or corrupt?): {error}") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is not a fairseq2 checkpoint: expected a dict with a 'model' state dict, got {keys}")
    return checkpoint["model"]


def convert_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], Wav2Vec2BertConfig]:
    """fairseq2 W2v-BERT 2.0 tensors -> (Hugging Face tensors, the config they describe).

    Unknown names are an error naming them (a checkpoint of another architecture), as are tensors the
    Hugging Face model needs but the checkpoint lacks.
    """
    converted, dropped, unknown = {}, [], []
    for name, tensor in state.items():
        target = hf_name(name)
        if target is not None:
            converted[target] = tensor
        elif PRETRAINING_ONLY.match(name):
            dropped.append(name)
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"{len(unknown)} tensor(s) are not W2v-BERT 2.0 (conformer_shaw) names: {unknown[:8]}; "
            "is this a checkpoint of another architecture?"
        )
    if dropped:
        logger.info("dropped %d pre-training-only tensors: %s", len(dropped), ", ".join(sorted(dropped)))
    config = _infer_config(converted)
    from .modeling import Wav2Vec2BertModel

    with torch.device("meta"):
        expected = Wav2Vec2BertModel(config).state_dict()
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} tensor(s) the model needs: {missing[:8]}")
    wrong = [
        (n, tuple(t.shape), tuple(expected[n].shape)) for n, t in converted.items() if t.shape != expected[n].shape
    ]
    if wrong:
        raise ValueError(f"tensor shapes do not fit a W2v-BERT 2.0 model: {wrong[:4]}")
    return converted, config


def _infer_config(tensors: dict[str, torch.Tensor]) -> Wav2Vec2BertConfig:
    """The sizes of the converted tensors give the config (W2v-BERT 2.0's defaults for what they do not show)."""
    try:
        projection = tensors["feature_projection.projection.weight"]
        hidden, input_dim = projection.shape
        layers = 1 + max(int(n.split(".")[2]) for n in tensors if n.startswith("encoder.layers."))
        distances, head_dim = tensors["encoder.layers.0.self_attn.distance_embedding.weight"].shape
        intermediate = tensors["encoder.layers.0.ffn1.intermediate_dense.weight"].shape[0]
        kernel = tensors["encoder.layers.0.conv_module.depthwise_conv.weight"].shape[-1]
    except (KeyError, ValueError) as error:
        raise ValueError(f"the checkpoint lacks the tensors that give the model's sizes ({error})") from None
    defaults = Wav2Vec2BertConfig()
    left = defaults.left_max_position_embeddings
    return Wav2Vec2BertConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim,
        intermediate_size=intermediate,
        feature_projection_input_dim=input_dim,
        conv_depthwise_kernel_size=kernel,
        left_max_position_embeddings=left,
        right_max_position_embeddings=distances - 1 - left,
        architectures=["Wav2Vec2BertModel"],
    )


def convert(src: str | os.PathLike, dst: str | os.PathLike, *, dtype: torch.dtype | None = None) -> Path:
    """Convert a fairseq2 checkpoint file into a Hugging Face model directory (written whole, or not at all)."""
    from .modeling import Wav2Vec2BertModel

    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} exists and is not empty; choose a new directory")
    tensors, config = convert_state_dict(load_fairseq2_checkpoint(src))
    model, _ = Wav2Vec2BertModel._from_state_dict(config, tensors)
    if dtype is not None:
        model.to(dtype)
    dst.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        model.save_pretrained(temporary)
        # The original front end: its padding value is 1, as in the published preprocessor config.
        SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(temporary)
        if dst.exists():
            dst.rmdir()
        os.replace(temporary, dst)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    logger.info("wrote %s: %d tensors, %d parameters", dst, len(tensors), model.num_parameters())
    return dst


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="convert Meta's fairseq2 conformer_shaw.pt to a model directory")
    parser.add_argument("src", help="the fairseq2 checkpoint (.pt)")
    parser.add_argument("dst", help="the new model directory (config.json, model.safetensors, preprocessor)")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="store the weights in this dtype (default: as in the checkpoint)",
    )
    parser.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    path = convert(args.src, args.dst, dtype=getattr(torch, args.dtype) if args.dtype else None)
    print(path)
    return 0
