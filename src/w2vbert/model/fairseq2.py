"""Meta's original fairseq2 checkpoints in Hugging Face names: one table of key patterns (the interop file).

Two releases hold the W2v-BERT 2.0 Conformer (../shared/reference/original-checkpoint.md):
- `conformer_shaw.pt`, the pre-trained encoder: `{"model": state_dict}` in fairseq2 names. Its tensors copy over
  unchanged, only renamed; the pre-training-only ones (quantizer, contrastive projections) are dropped and listed.
- `seamlessM4T_v2_large.pt`, the speech-to-text model, whose speech encoder is the same Conformer fine-tuned,
  under `speech_encoder_frontend.*` and `speech_encoder.inner.*`, followed by its adaptor (a LayerNorm, a
  0.5-residual FFN, one strided Conformer adaptor layer, a LayerNorm). The whole speech encoder is extracted; the
  text model and the unit decoder (`t2u_model`) are dropped and listed. Wav2Vec2-BERT has the FFN and the adaptor
  layers but not the two LayerNorms, so the config turns on w2vbert's `add_encoder_layer_norm` and
  `add_inner_layer_norm` for them: this library runs the extracted encoder exactly, transformers'
  Wav2Vec2BertModel would ignore those two tensors (and say so) and compute something else.

In order: the table, `load_fairseq2_checkpoint` (`torch.load(weights_only=True)`: tensors and plain containers
only, never code), `detect_kind`, `rename`, `convert_state_dict` (renamed tensors and the config their shapes
give). `from_pretrained` of every model class reads these files through here; `w2vbert convert` (cli/convert.py)
writes the result as a model directory.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from w2vbert.loading.weights import torch_load_weights_only
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.names import FAIRSEQ2_KINDS

logger = logging.getLogger("w2vbert")

FAIRSEQ2_SUFFIXES = (".pt", ".pth")  # what Meta's releases are named; from_pretrained reads such a file directly


# The names both releases give the same modules: the SeamlessM4T v2 speech encoder only prefixes them.
FRONTEND = r"(?:speech_)?encoder_frontend"
BLOCK = r"(?:encoder|speech_encoder\.inner)\.layers\.(\d+)"
ADAPTOR = r"speech_encoder\.adaptor_layers\.(\d+)"  # SeamlessM4T v2 only

# fairseq2 name (regex, matched whole) -> Hugging Face name (template). The patterns do not overlap, so order
# does not matter. Every tensor copies as it is: fairseq2 and Hugging Face store the same shapes (Linear
# (out, in), Conv1d (out, in/groups, kernel), Embedding (positions, head dim)), so no row needs a transform.
FAIRSEQ2_TO_HF = [
    (FRONTEND + r"\.post_extract_layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (FRONTEND + r"\.model_dim_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (BLOCK + r"\.(ffn[12])_layer_norm\.(weight|bias)", r"encoder.layers.\1.\2_layer_norm.\3"),
    (BLOCK + r"\.(ffn[12])\.inner_proj\.(weight|bias)", r"encoder.layers.\1.\2.intermediate_dense.\3"),
    (BLOCK + r"\.(ffn[12])\.output_proj\.(weight|bias)", r"encoder.layers.\1.\2.output_dense.\3"),
    (BLOCK + r"\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (BLOCK + r"\.self_attn\.([qkv])_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.linear_\2.\3"),
    (BLOCK + r"\.self_attn\.output_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.linear_out.\2"),
    (BLOCK + r"\.self_attn\.sdpa\.rel_k_embed\.weight", r"encoder.layers.\1.self_attn.distance_embedding.weight"),
    (BLOCK + r"\.conv_layer_norm\.(weight|bias)", r"encoder.layers.\1.conv_module.layer_norm.\2"),
    (
        BLOCK + r"\.conv\.(pointwise_conv1|pointwise_conv2|depthwise_conv)\.weight",
        r"encoder.layers.\1.conv_module.\2.weight",
    ),
    (BLOCK + r"\.conv\.layer_norm\.(weight|bias)", r"encoder.layers.\1.conv_module.depthwise_layer_norm.\2"),
    (BLOCK + r"\.layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    (r"masker\.temporal_mask_embed", "masked_spec_embed"),
    # the SeamlessM4T v2 adaptor (transformers' SeamlessM4Tv2SpeechEncoder uses the same Hugging Face names)
    (r"speech_encoder\.inner_layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"speech_encoder\.proj1\.(weight|bias)", r"intermediate_ffn.intermediate_dense.\1"),
    (r"speech_encoder\.proj2\.(weight|bias)", r"intermediate_ffn.output_dense.\1"),
    (
        ADAPTOR + r"\.(residual_layer_norm|residual_conv|self_attn_layer_norm|self_attn_conv|ffn_layer_norm)\."
        r"(weight|bias)",
        r"adapter.layers.\1.\2.\3",
    ),
    (ADAPTOR + r"\.self_attn\.([qkv])_proj\.(weight|bias)", r"adapter.layers.\1.self_attn.linear_\2.\3"),
    (ADAPTOR + r"\.self_attn\.output_proj\.(weight|bias)", r"adapter.layers.\1.self_attn.linear_out.\2"),
    (ADAPTOR + r"\.ffn\.inner_proj\.(weight|bias)", r"adapter.layers.\1.ffn.intermediate_dense.\2"),
    (ADAPTOR + r"\.ffn\.output_proj\.(weight|bias)", r"adapter.layers.\1.ffn.output_dense.\2"),
    (r"speech_encoder\.layer_norm\.(weight|bias)", r"inner_layer_norm.\1"),
    # pre-training (conformer_shaw.pt): kept by Wav2Vec2BertForPreTraining, dropped for every other class
    (r"quantizer\.entry_proj\.(weight|bias)", r"quantizer.weight_proj.\1"),
    (r"quantizer\.entries", "quantizer.codevectors"),
    (r"quantizer\.num_updates", "quantizer.num_updates"),
    (r"final_proj\.(weight|bias)", r"project_hid.\1"),
    (r"final_target_proj\.(weight|bias)", r"project_q.\1"),
    (r"(?:final_bert_proj|mlm_proj)\.(weight|bias)", r"masked_prediction_head.\1"),  # fairseq2's w2vbert files
]
_COMPILED = [(re.compile(pattern), template) for pattern, template in FAIRSEQ2_TO_HF]

# Per release: tensors that have no place in the encoder (regex, matched from the start of the name). A
# pre-training model keeps the w2v-bert release's (PRETRAINING_DROPPED instead).
DROPPED = {
    "w2v-bert": re.compile(r"(quantizer|final_proj|final_target_proj|final_bert_proj|mlm_proj)\."),
    "seamless-m4t-v2": re.compile(
        r"(text_encoder|text_decoder|text_encoder_frontend|text_decoder_frontend|final_proj|t2u_model)\."
    ),
}

# Globals the weights-only unpickler may build besides its defaults (tensors, dicts, lists, numbers, strings).
# Both releases need none: fairseq2 itself reads them with weights_only=True. Widen this only by naming a class.
ALLOWED_GLOBALS: list[type] = []
PRETRAINING_DROPPED = {"w2v-bert": re.compile(r"$^"), "seamless-m4t-v2": DROPPED["seamless-m4t-v2"]}
# The pre-training tensors: only the pre-trained release has them (a SeamlessM4T file naming one is not one).
PRETRAINING = re.compile(r"(quantizer|final_proj|final_target_proj|final_bert_proj|mlm_proj)\.")


def hf_name(name: str) -> str | None:
    """The Hugging Face name of a fairseq2 tensor name; None for names the table does not know."""
    for pattern, template in _COMPILED:
        match = pattern.fullmatch(name)
        if match:
            return match.expand(template)
    return None


def load_fairseq2_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The "model" state dict of a fairseq2 checkpoint file, unpickled with `weights_only=True`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    checkpoint = torch_load_weights_only(path, ALLOWED_GLOBALS)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is not a fairseq2 checkpoint: expected a dict with a 'model' state dict, got {keys}")
    return checkpoint["model"]


def detect_kind(state: dict[str, torch.Tensor]) -> str:
    """The release the names come from: "seamless-m4t-v2" (a speech encoder under speech_encoder.*) or "w2v-bert"."""
    if any(name.startswith("speech_encoder.inner.") for name in state):
        return "seamless-m4t-v2"
    if any(name.startswith("encoder.layers.") for name in state):
        return "w2v-bert"
    raise ValueError(
        f"neither a W2v-BERT 2.0 nor a SeamlessM4T v2 checkpoint: no encoder.layers.* or speech_encoder.inner.* "
        f"tensors among {sorted(state)[:8]}"
    )


def rename(
    state: dict[str, torch.Tensor], kind: str = "auto", pretraining: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """fairseq2 tensors of `kind` ("auto", "w2v-bert", "seamless-m4t-v2") -> (tensors by their Hugging Face names,
    Hugging Face name -> fairseq2 name). The release's tensors of no use to the model are dropped (and logged):
    with `pretraining` the quantizer and contrastive projections are of use. A name the table does not know is an
    error naming it (a checkpoint of another architecture)."""
    if kind == "auto":
        kind = detect_kind(state)
    if kind not in FAIRSEQ2_KINDS:
        raise ValueError(f"kind must be 'auto' or one of {FAIRSEQ2_KINDS}, got {kind!r}")
    converted, sources, dropped, unknown = {}, {}, [], []
    for name, tensor in state.items():
        target = hf_name(name)
        if (PRETRAINING_DROPPED if pretraining else DROPPED)[kind].match(name):
            dropped.append(name)
        elif target is None or (kind != "w2v-bert" and PRETRAINING.match(name)):
            unknown.append(name)
        elif target in converted:
            raise ValueError(f"{sources[target]} and {name} both give {target}: the checkpoint mixes two releases")
        else:
            converted[target], sources[target] = tensor, name
    if unknown:
        raise ValueError(
            f"{len(unknown)} tensor(s) are not W2v-BERT 2.0 names (kind {kind!r}): {unknown[:8]}; "
            "is this a checkpoint of another architecture?"
        )
    if dropped:
        logger.info("dropped %d tensors the encoder does not use: %s", len(dropped), ", ".join(sorted(dropped)))
    return converted, sources


def convert_state_dict(
    state: dict[str, torch.Tensor], kind: str = "auto"
) -> tuple[dict[str, torch.Tensor], Wav2Vec2BertConfig]:
    """fairseq2 tensors of `kind` -> (Hugging Face tensors, the config their shapes give).

    Whether they make a whole model is checked where the model is built (`load_fairseq2` in model/loader.py).
    """
    kind = detect_kind(state) if kind == "auto" else kind
    converted, _ = rename(state, kind)
    return converted, infer_config(converted, kind)


def infer_config(tensors: dict[str, torch.Tensor], kind: str) -> Wav2Vec2BertConfig:
    """The config the converted tensors' sizes give (W2v-BERT 2.0's defaults for what they do not show)."""
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
    adaptor = {}
    adapter_layers = {int(n.split(".")[2]) for n in tensors if n.startswith("adapter.layers.")}
    if adapter_layers:
        kernel_size = tensors["adapter.layers.0.residual_conv.weight"].shape[-1]
        adaptor = dict(
            add_adapter=True,
            num_adapter_layers=max(adapter_layers) + 1,
            adapter_kernel_size=kernel_size,
            # The stride is not in any tensor's shape; SeamlessM4T v2 strides by its kernel size (8 and 8).
            adapter_stride=kernel_size,
            use_intermediate_ffn_before_adapter="intermediate_ffn.intermediate_dense.weight" in tensors,
        )
    return Wav2Vec2BertConfig(
        **adaptor,
        **_quantizer_sizes(tensors),
        # SeamlessM4T v2's fine-tuned encoder has no mask embedding; SpecAugment stays off unless asked for
        # (which then starts masked_spec_embed fresh, as transformers does for a checkpoint without one).
        mask_time_prob=0.0 if kind == "seamless-m4t-v2" else defaults.mask_time_prob,
        add_encoder_layer_norm="encoder.layer_norm.weight" in tensors,
        add_inner_layer_norm="inner_layer_norm.weight" in tensors,
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


def _quantizer_sizes(tensors: dict[str, torch.Tensor]) -> dict[str, int]:
    """The pre-training sizes the quantizer and projections show, where they were kept (conformer_shaw.pt: 2
    codebooks of 320 entries of 384, projections to 768); nothing otherwise."""
    if "quantizer.codevectors" not in tensors or "project_q.weight" not in tensors:
        return {}
    _, entries, per_codebook = tensors["quantizer.codevectors"].shape  # (1, codebooks x entries, dim / codebooks)
    projection, codevector_dim = tensors["project_q.weight"].shape
    groups = codevector_dim // per_codebook
    sizes = dict(num_codevector_groups=groups, num_codevectors_per_group=entries // groups,
                 codevector_dim=codevector_dim, proj_codevector_dim=projection)
    if "masked_prediction_head.weight" in tensors:
        sizes["num_target_codebooks"] = tensors["masked_prediction_head.weight"].shape[0] // (entries // groups)
    return sizes
