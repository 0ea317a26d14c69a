"""What every model class shares: weight init, input checks, length arithmetic, `from_pretrained`/`save_pretrained`.

Loading builds the model on the meta device (no memory, no random init), assigns the checkpoint's tensors,
and initialises only what the checkpoint lacks: a 580M-parameter model loads in about the time it takes to
read its file, with one copy of the weights in memory. A Hugging Face directory or hub repo is read through
loading/weights.py, Meta's original `.pt` files through the table of model/fairseq2.py; `quantize=` and `load_in_8bit=`
hand the loaded model to model/quantization.py.
"""

from __future__ import annotations

import gc
import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from w2vbert.loading.devices import resolve_device, resolve_dtype
from w2vbert.loading.hub import HubOptions
from w2vbert.loading.weights import load_weights, save_weights
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.fairseq2 import FAIRSEQ2_SUFFIXES, detect_kind, infer_config, load_fairseq2_checkpoint, rename
from w2vbert.model.layers import strided_conv_lengths
from w2vbert.model.quantization import convert_from_file, optimize_for_inference, quantized_layer
from w2vbert.utils.padding import lengths_to_mask

logger = logging.getLogger("w2vbert")

BASE_MODEL_PREFIX = "wav2vec2_bert"
LISTED_NAMES = 8  # tensor names a loading report spells out before it counts the rest


class Wav2Vec2BertPreTrainedModel(nn.Module):
    config_class = Wav2Vec2BertConfig
    base_model_prefix = BASE_MODEL_PREFIX
    main_input_name = "input_features"
    supports_gradient_checkpointing = True
    # whether a fairseq2 file's quantizer and contrastive projections load (model/fairseq2.py)
    pretraining_tensors = False

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        if not isinstance(config, Wav2Vec2BertConfig):
            raise TypeError(f"expected a Wav2Vec2BertConfig, got {type(config).__name__}")
        self.config = config

    def post_init(self) -> None:
        """Initialise every parameter as transformers does (children first, so containers can override).

        A model built on the meta device has no values to initialise: loading assigns the checkpoint's tensors
        and then initialises what the checkpoint lacks, and counting its parameters needs only their shapes."""
        if next(self.parameters()).is_meta:
            return
        for module in reversed(list(self.modules())):
            self._init_module(module)

    @torch.no_grad()
    def _init_module(self, module: nn.Module) -> None:
        """Initialise the parameters `module` owns, as transformers does: torch's layers by type; the model's own
        modules that need a special start (the feature projection, Transformer-XL's u and v, the mask embedding,
        layer weights, AM-softmax weights) by their `reset_parameters`."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.normal_(0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, nn.Conv1d):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                bound = math.sqrt(module.groups / (module.in_channels * module.kernel_size[0]))
                module.bias.uniform_(-bound, bound)
        elif callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()

    # ------------------------------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, only_trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    @property
    def base_model(self) -> nn.Module:
        """The bare encoder: the model itself, or a head's `wav2vec2_bert` (transformers' `base_model`)."""
        return getattr(self, self.base_model_prefix, self)

    # The encoder (Wav2Vec2BertModel) implements these; a head hands them to its encoder.
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each Conformer block in the backward pass instead of storing its activations."""
        self.base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.base_model.gradient_checkpointing_disable()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.base_model.is_gradient_checkpointing

    def set_attn_implementation(self, implementation: str) -> None:
        """ "sdpa" (default, fused kernels) or "eager" (explicit softmax, as transformers' eager path)."""
        self.base_model.set_attn_implementation(implementation)

    # ----------------------------------------------------------------------------------- length arithmetic
    def get_feat_extract_output_lengths(
        self, input_lengths: torch.Tensor | int, add_adapter: bool | None = None
    ) -> torch.Tensor | int:
        """Output frames for input steps: unchanged by the encoder, shortened by each adapter layer."""
        add_adapter = self.config.add_adapter if add_adapter is None else add_adapter
        if add_adapter:
            for _ in range(self.config.num_adapter_layers):
                input_lengths = strided_conv_lengths(
                    input_lengths, self.config.adapter_kernel_size, self.config.adapter_stride
                )
        return input_lengths

    def get_feature_vector_attention_mask(
        self, feature_vector_length: int, attention_mask: torch.Tensor, add_adapter: bool | None = None
    ) -> torch.Tensor:
        """The (B, feature_vector_length) bool mask of valid output frames (after the adapter) for an input mask."""
        lengths = self.get_feat_extract_output_lengths(attention_mask.sum(-1).long(), add_adapter=add_adapter)
        return lengths_to_mask(lengths, feature_vector_length)

    # transformers' private names, for code written against it.
    _get_feat_extract_output_lengths = get_feat_extract_output_lengths
    _get_feature_vector_attention_mask = get_feature_vector_attention_mask

    def check_inputs(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Validate model inputs; return valid lengths (B,), or None when nothing is padded."""
        dim = self.config.feature_projection_input_dim
        if not isinstance(input_features, torch.Tensor):
            raise TypeError(f"input_features must be a torch.Tensor, got {type(input_features).__name__}")
        if input_features.ndim != 3 or input_features.shape[-1] != dim:
            hint = ""
            if input_features.ndim == 2 and input_features.shape[-1] == dim:
                hint = ": add the batch dimension with input_features[None]"
            elif input_features.shape[-1] == dim // 2:
                hint = f": did you pass the {dim // 2}-bin fbank before stacking pairs of frames?"
            elif input_features.ndim <= 2:
                hint = ": pass features from the feature extractor, not raw audio"
            raise ValueError(
                f"expected input_features of shape (batch, frames, {dim}), got {tuple(input_features.shape)}{hint}"
            )
        if not input_features.is_floating_point():
            raise TypeError(f"input_features must be floating point, got {input_features.dtype}")
        if input_features.dtype != self.dtype and not torch.is_autocast_enabled(input_features.device.type):
            raise TypeError(
                f"input_features are {input_features.dtype} but the model computes in {self.dtype}: pass "
                "input_features.to(model.dtype) (the pipelines do)"
            )
        if attention_mask is not None and not isinstance(attention_mask, torch.Tensor):
            raise TypeError(
                f"attention_mask must be a torch.Tensor of shape (batch, frames), got {type(attention_mask).__name__}: "
                "use the feature extractor's return_tensors='pt', or torch.as_tensor(mask)"
            )
        batch, frames, _ = input_features.shape
        if torch.onnx.is_in_onnx_export():
            # A traced graph keeps no value checks (export/onnx.py checks its example inputs before tracing) and
            # always masks: whether a batch is padded is only known at run time.
            return None if attention_mask is None else attention_mask.long().sum(-1)
        if batch == 0 or frames == 0:
            raise ValueError(f"input_features is empty: shape {tuple(input_features.shape)}")
        if not torch.isfinite(input_features).all():
            bad = (~torch.isfinite(input_features)).flatten(1).any(-1).nonzero().flatten().tolist()
            raise ValueError(f"input_features has NaN or inf values (batch rows {bad})")
        lengths = None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (batch, frames):
                raise ValueError(
                    f"attention_mask must have shape (batch, frames) = {(batch, frames)} like input_features, "
                    f"got {tuple(attention_mask.shape)}"
                )
            mask = attention_mask.to(input_features.device)
            if not ((mask == 0) | (mask == 1)).all():
                raise ValueError("attention_mask must hold only 0/1 (or False/True)")
            lengths = mask.long().sum(-1)
            if (lengths == 0).any():
                rows = (lengths == 0).nonzero().flatten().tolist()
                raise ValueError(f"attention_mask rows {rows} are all padding: every clip needs at least one frame")
            if not torch.equal(lengths_to_mask(lengths, frames), mask.bool()):
                raise ValueError("attention_mask must be right-padded: ones for the clip, then zeros")
            if bool((lengths == frames).all()):
                lengths = None  # nothing padded: skip the masking work
        if self.config.add_adapter:
            shortest = int(lengths.min()) if lengths is not None else frames
            if self.get_feat_extract_output_lengths(shortest) < 1:
                raise ValueError(
                    f"a clip of {shortest} feature steps is too short for the adapter (kernel "
                    f"{self.config.adapter_kernel_size}, stride {self.config.adapter_stride}, "
                    f"{self.config.num_adapter_layers} layers): it would have no output frame"
                )
        return lengths

    # ---------------------------------------------------------------------------------------- save / load
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        max_shard_size: int | str = "5GB",
        state_dict: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Write `config.json` and `model.safetensors` (sharded above `max_shard_size`) in the HF layout."""
        if not safe_serialization:
            raise ValueError("w2vbert writes safetensors only (pickled .bin files can carry code)")
        layer = quantized_layer(self) if state_dict is None else None
        if layer is not None:
            raise ValueError(
                f"{layer} holds int8 weights packed for inference, which are no checkpoint: save the float model it "
                "was quantized from, and quantize when loading (from_pretrained(..., quantize='int8'))"
            )
        config = Wav2Vec2BertConfig.from_dict(self.config.to_dict())
        config.architectures = [type(self).__name__]
        config.extra["torch_dtype"] = str(self.dtype).removeprefix("torch.")
        save_weights(self.state_dict() if state_dict is None else state_dict, save_directory, max_shard_size)
        config.save_pretrained(save_directory)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: Wav2Vec2BertConfig | None = None,
        revision: str | None = None,
        torch_dtype: torch.dtype | str | None = None,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | int | None = None,
        device_map: torch.device | str | int | dict | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        subfolder: str = "",
        ignore_mismatched_sizes: bool = False,
        output_loading_info: bool = False,
        attn_implementation: str | None = None,
        load_in_8bit: bool = False,
        quantize: str | None = None,
        **config_overrides: Any,
    ) -> Any:
        """Load a model from a local directory or a hub repo id (through the hub cache; `HF_HUB_OFFLINE` works),
        or from Meta's original fairseq2 `.pt` file.

        Keyword arguments that name config fields (`vocab_size=...`, `layerdrop=0.0`, `add_adapter=True`)
        override the stored config, as in transformers. A base checkpoint loads into any head class (the head
        is newly initialised and reported); a head whose shape differs from the checkpoint (a new vocabulary)
        is re-initialised only with `ignore_mismatched_sizes=True`. `device_map` takes transformers' values that
        keep the model on one device ("auto", "cpu", "cuda", "cuda:1", a GPU index, {"": 0}).

        `quantize="int8"` converts the loaded model with `quantization.optimize_for_inference` (PyTorch int8 on
        CPU, with float32 activations or, with `torch_dtype=torch.bfloat16`, oneDNN's int8 matmul and bfloat16
        elsewhere; bitsandbytes on CUDA); `load_in_8bit=True` is transformers' spelling of the CUDA one.
        """
        target = resolve_device(device if device is not None else device_map if device_map is not None else "cpu")
        if load_in_8bit:
            if target.type != "cuda":
                raise RuntimeError(
                    "load_in_8bit=True is bitsandbytes' LLM.int8 and needs device='cuda' (or device_map='auto' on a "
                    "machine with a GPU); on CPU pass quantize='int8' (PyTorch's own int8) or "
                    "torch_dtype=torch.bfloat16 instead"
                )
            quantize = "int8"
        source = Path(pretrained_model_name_or_path)
        if source.suffix in FAIRSEQ2_SUFFIXES and source.is_file():
            model, info = cls._from_fairseq2(source, "auto", config_overrides)
        else:
            hub = HubOptions(revision, cache_dir, local_files_only, token, subfolder)
            if config is None:
                config = Wav2Vec2BertConfig.from_hub(pretrained_model_name_or_path, hub, **config_overrides)
            elif config_overrides:
                config = Wav2Vec2BertConfig.from_dict(config.to_dict(), **config_overrides)
            state = load_weights(pretrained_model_name_or_path, hub)
            model, info = cls._from_state_dict(config, state, ignore_mismatched_sizes)
            del state  # the model holds what it uses; the rest of the file's map can go
        report_loading(cls.__name__, info)
        # Like transformers: float32 unless asked, whatever the file stores ("auto" keeps the stored dtype).
        target_dtype = cls._target_dtype(torch_dtype if torch_dtype is not None else dtype, model.config)
        # int8 quantizes from the file's float32 weights and converts the rest to target_dtype block by block;
        # another dtype on CPU is converted block by block too, so the file's pages never all stay resident.
        if quantize is None and target.type == "cpu":
            convert_from_file(model, target_dtype)
        else:
            model.to(device=target, dtype=torch.float32 if quantize is not None else target_dtype)
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
        model.eval()  # as transformers: a loaded model starts in inference mode
        if quantize is not None:
            # The weights are the file's pages, untouched: int8 can hand each block's back once it is packed.
            model = optimize_for_inference(model, target_dtype, quantize=quantize, release_file_pages=True)
            gc.collect()  # the float weights replaced by int8 ones hold the checkpoint's memory map in cycles
        return (model, info) if output_loading_info else model

    @classmethod
    def from_fairseq2(cls, path: str | os.PathLike, kind: str = "auto", **config_overrides: Any) -> Any:
        """A model from Meta's original fairseq2 file (`conformer_shaw.pt`, or the speech encoder of
        `seamlessM4T_v2_large.pt`: `kind` "w2v-bert" / "seamless-m4t-v2", or "auto" from the names).

        The encoder must be whole: a tensor it lacks, or one with no place in it, is an error naming it."""
        model, info = cls._from_fairseq2(Path(path), kind, config_overrides)
        report_loading(cls.__name__, info)
        return model

    @classmethod
    def _from_fairseq2(
        cls, path: Path, kind: str, config_overrides: dict[str, Any]
    ) -> tuple[Any, dict[str, list]]:
        state = load_fairseq2_checkpoint(path)
        kind = detect_kind(state) if kind == "auto" else kind
        tensors, sources = rename(state, kind, pretraining=cls.pretraining_tensors)
        config = infer_config(tensors, kind)
        if config_overrides:
            config = Wav2Vec2BertConfig.from_dict(config.to_dict(), **config_overrides)
        model, info = cls._from_state_dict(config, tensors)
        prefix = "" if model.base_model is model else BASE_MODEL_PREFIX + "."  # a head's new tensors are its own
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

    @staticmethod
    def _target_dtype(dtype: torch.dtype | str | None, config: Wav2Vec2BertConfig) -> torch.dtype:
        """`torch_dtype` -> the dtype to load in: float32 by default; "auto" takes the one the config records."""
        if dtype == "auto":
            dtype = config.extra.get("torch_dtype") or config.extra.get("dtype")
        if dtype is None:
            return torch.float32
        try:
            return resolve_dtype(dtype)
        except ValueError:
            raise ValueError(
                f"torch_dtype must be a floating torch dtype, its name, or 'auto'; got {dtype!r}"
            ) from None

    @classmethod
    def _from_state_dict(
        cls, config: Wav2Vec2BertConfig, state: dict[str, torch.Tensor], ignore_mismatched_sizes: bool = False
    ) -> tuple[Any, dict[str, list]]:
        """Build on the meta device, assign `state`, initialise the rest; returns (model, loading info)."""
        with torch.device("meta"):
            model = cls(config)
        expected = dict(model.state_dict())
        state = cls._align_prefix(state, expected)
        mismatched = [
            (name, tuple(tensor.shape), tuple(expected[name].shape))
            for name, tensor in state.items()
            if name in expected and tensor.shape != expected[name].shape
        ]
        if mismatched and not ignore_mismatched_sizes:
            listing = "; ".join(f"{name}: checkpoint {a}, model {b}" for name, a, b in mismatched)
            raise ValueError(
                f"tensor shapes differ between the checkpoint and {cls.__name__}: {listing}. If the head is meant "
                "to be new (another vocabulary or label set), pass ignore_mismatched_sizes=True to re-initialise it"
            )
        for name, _, _ in mismatched:
            del state[name]
        unexpected = sorted(set(state) - set(expected))
        missing = sorted(set(expected) - set(state))
        model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False, assign=True)
        model._materialize_missing()
        return model, {"missing_keys": missing, "unexpected_keys": unexpected, "mismatched_keys": mismatched}

    @classmethod
    def _align_prefix(cls, state: dict[str, torch.Tensor], expected: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Accept base-model keys in a head and head-prefixed keys in the base model, as transformers does."""
        prefix = BASE_MODEL_PREFIX + "."
        model_has_prefix = any(name.startswith(prefix) for name in expected)
        state_has_prefix = any(name.startswith(prefix) for name in state)
        if model_has_prefix and not state_has_prefix:
            return {(name if name in expected else prefix + name): tensor for name, tensor in state.items()}
        if state_has_prefix and not model_has_prefix:
            return {name.removeprefix(prefix): tensor for name, tensor in state.items()}
        return state

    def _materialize_missing(self) -> None:
        """Give tensors still on the meta device (absent from the checkpoint) real storage and their init.

        The init runs in `post_init`'s order over every module holding a missing tensor (a module's
        `reset_parameters` may set its children's), with the loaded tensors parked meanwhile, so only the missing
        ones change and they start as in a freshly built model.
        """
        for name, buffer in list(self.named_buffers()):
            if buffer.is_meta:  # the one buffer, the quantizer's count of updates, starts at zero
                owner, attribute = self._owner(name)
                owner._buffers[attribute] = torch.zeros(buffer.shape, dtype=buffer.dtype)
        missing = {name for name, parameter in self.named_parameters() if parameter.is_meta}
        if not missing:
            return
        for name in missing:
            owner, attribute = self._owner(name)
            old = owner._parameters[attribute]
            owner._parameters[attribute] = nn.Parameter(torch.empty(old.shape), requires_grad=old.requires_grad)
        for module_name, module in reversed(list(self.named_modules())):
            prefix = f"{module_name}." if module_name else ""
            if not any(name.startswith(prefix) for name in missing):
                continue
            parked = []
            for name, parameter in module.named_parameters(prefix=module_name):
                if name not in missing:
                    owner, attribute = self._owner(name)
                    parked.append((owner, attribute, parameter))
                    owner._parameters[attribute] = nn.Parameter(torch.empty_like(parameter))
            with torch.no_grad():
                self._init_module(module)
            for owner, attribute, parameter in parked:
                owner._parameters[attribute] = parameter

    def _owner(self, name: str) -> tuple[nn.Module, str]:
        """The module that owns parameter or buffer `name` ("encoder.layers.0.ffn1.output_dense.bias"), and its key."""
        path, _, attribute = name.rpartition(".")
        return self.get_submodule(path), attribute


def report_loading(class_name: str, info: dict[str, list]) -> None:
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
            listing([f"{n} {a}->{b}" for n, a, b in info["mismatched_keys"]]),
        )
