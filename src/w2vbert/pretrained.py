"""What every model class shares: weight init, input checks, length arithmetic, `from_pretrained`/`save_pretrained`.

Loading builds the model on the meta device (no memory, no random init), assigns the checkpoint's tensors,
and initialises only what the checkpoint lacks: a 580M-parameter model loads in about the time it takes to
read its file, with one copy of the weights in memory.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import load_checkpoint, save_checkpoint
from .config import Wav2Vec2BertConfig
from .hub import HubOptions

logger = logging.getLogger("w2vbert")

BASE_MODEL_PREFIX = "wav2vec2_bert"


def lengths_to_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """(B,) valid lengths -> (B, frames) bool mask, True on the first `length` frames of each row."""
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


def resolve_dtype(dtype: torch.dtype | str | None, config: Wav2Vec2BertConfig) -> torch.dtype | None:
    """`torch_dtype` argument -> a dtype; "auto" takes the one the checkpoint's config records."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        dtype = config.extra.get("torch_dtype") or config.extra.get("dtype")
        if dtype is None:
            return None
    resolved = getattr(torch, str(dtype).removeprefix("torch."), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"torch_dtype must be a floating torch dtype, its name, or 'auto'; got {dtype!r}")
    return resolved


class Wav2Vec2BertPreTrainedModel(nn.Module):
    config_class = Wav2Vec2BertConfig
    base_model_prefix = BASE_MODEL_PREFIX
    main_input_name = "input_features"
    supports_gradient_checkpointing = True

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        if not isinstance(config, Wav2Vec2BertConfig):
            raise TypeError(f"expected a Wav2Vec2BertConfig, got {type(config).__name__}")
        self.config = config

    def post_init(self) -> None:
        """Initialise every parameter as transformers does (children first, so containers can override)."""
        for module in reversed(list(self.modules())):
            self._init_module(module)

    @torch.no_grad()
    def _init_module(self, module: nn.Module) -> None:
        """Initialise the parameters `module` owns directly (not its children's)."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.normal_(0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
            if getattr(module, "fan_in_uniform", False):  # the feature projection, as transformers inits it
                bound = math.sqrt(1 / module.in_features)
                module.weight.uniform_(-bound, bound)
                module.bias.uniform_(-bound, bound)
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, nn.Conv1d):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                bound = math.sqrt(module.groups / (module.in_channels * module.kernel_size[0]))
                module.bias.uniform_(-bound, bound)
        for name, parameter in module.named_parameters(recurse=False):
            if name in ("pos_bias_u", "pos_bias_v"):
                nn.init.xavier_uniform_(parameter)
            elif name == "masked_spec_embed":
                parameter.uniform_()
            elif name == "layer_weights":
                parameter.fill_(1.0 / (self.config.num_hidden_layers + 1))
            elif name == "weight" and type(module).__name__ == "AMSoftmaxLoss":
                parameter.normal_()

    # ------------------------------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self, only_trainable: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each Conformer block in the backward pass instead of storing its activations."""
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(module, "gradient_checkpointing", False) for module in self.modules())

    def set_attn_implementation(self, implementation: str) -> None:
        """ "sdpa" (default, fused kernels) or "eager" (explicit softmax, as transformers' eager path)."""
        if implementation not in ("sdpa", "eager"):
            raise ValueError(f"attn_implementation must be 'sdpa' or 'eager', got {implementation!r}")
        for module in self.modules():
            if hasattr(module, "use_sdpa"):
                module.use_sdpa = implementation == "sdpa"

    # ----------------------------------------------------------------------------------- length arithmetic
    def get_feat_extract_output_lengths(
        self, input_lengths: torch.Tensor | int, add_adapter: bool | None = None
    ) -> torch.Tensor | int:
        """Output frames for input steps: unchanged by the encoder, shortened by each adapter layer."""
        add_adapter = self.config.add_adapter if add_adapter is None else add_adapter
        if add_adapter:
            kernel, stride = self.config.adapter_kernel_size, self.config.adapter_stride
            for _ in range(self.config.num_adapter_layers):
                input_lengths = (input_lengths + 2 * (stride // 2) - kernel) // stride + 1
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
        batch, frames, _ = input_features.shape
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
        config = Wav2Vec2BertConfig.from_dict(self.config.to_dict())
        config.architectures = [type(self).__name__]
        config.extra["torch_dtype"] = str(self.dtype).removeprefix("torch.")
        save_checkpoint(self.state_dict() if state_dict is None else state_dict, save_directory, max_shard_size)
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
        device: torch.device | str | None = None,
        device_map: torch.device | str | None = None,
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
        """Load a model from a local directory or a hub repo id (through the hub cache; `HF_HUB_OFFLINE` works).

        Keyword arguments that name config fields (`vocab_size=...`, `layerdrop=0.0`, `add_adapter=True`)
        override the stored config, as in transformers. A base checkpoint loads into any head class (the head
        is newly initialised and reported); a head whose shape differs from the checkpoint (a new vocabulary)
        is re-initialised only with `ignore_mismatched_sizes=True`.

        `quantize="int8"` converts the loaded model with `quantization.optimize_for_inference` (PyTorch int8 on
        CPU, bitsandbytes on CUDA); `load_in_8bit=True` is transformers' spelling of the CUDA one.
        """
        if load_in_8bit:
            target_device = torch.device(device or device_map or "cpu")
            if target_device.type != "cuda":
                raise RuntimeError(
                    "load_in_8bit=True is bitsandbytes' LLM.int8 and needs device='cuda'; on CPU pass "
                    "quantize='int8' (PyTorch's own int8) or torch_dtype=torch.bfloat16 instead"
                )
            quantize = "int8"
        hub = HubOptions(revision, cache_dir, local_files_only, token, subfolder)
        if (
            Path(pretrained_model_name_or_path).suffix in (".pt", ".pth")
            and Path(pretrained_model_name_or_path).is_file()
        ):
            from .convert import convert_state_dict, load_fairseq2_checkpoint  # Meta's original release

            state, config = convert_state_dict(load_fairseq2_checkpoint(pretrained_model_name_or_path))
            config = Wav2Vec2BertConfig.from_dict(config.to_dict(), **config_overrides)
        else:
            config, state = cls._config_and_state(pretrained_model_name_or_path, config, hub, config_overrides)
        model, info = cls._from_state_dict(config, state, ignore_mismatched_sizes)
        # Like transformers: float32 unless asked, whatever the file stores ("auto" keeps the stored dtype).
        target_dtype = resolve_dtype(torch_dtype if torch_dtype is not None else dtype, config) or torch.float32
        model.to(device=device or device_map or "cpu", dtype=target_dtype)
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
        model.eval()  # as transformers: a loaded model starts in inference mode
        if quantize is not None:
            from .quantization import optimize_for_inference

            model = optimize_for_inference(model, quantize=quantize)
        return (model, info) if output_loading_info else model

    @staticmethod
    def _config_and_state(
        path: str | os.PathLike, config: Wav2Vec2BertConfig | None, hub: HubOptions, overrides: dict[str, Any]
    ) -> tuple[Wav2Vec2BertConfig, dict[str, torch.Tensor]]:
        if config is None:
            config = Wav2Vec2BertConfig.from_hub(path, hub, **overrides)
        elif overrides:
            config = Wav2Vec2BertConfig.from_dict(config.to_dict(), **overrides)
        return config, load_checkpoint(path, hub)

    @classmethod
    def _from_state_dict(
        cls, config: Wav2Vec2BertConfig, state: dict[str, torch.Tensor], ignore_mismatched_sizes: bool = False
    ) -> tuple[Any, dict[str, list]]:
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
        if unexpected:
            logger.warning(
                "%s ignored %d checkpoint tensors it has no place for: %s",
                cls.__name__,
                len(unexpected),
                ", ".join(unexpected),
            )
        if missing:
            logger.warning(
                "%s newly initialised %d tensors the checkpoint lacks (train them before use): %s",
                cls.__name__,
                len(missing),
                ", ".join(missing),
            )
        if mismatched:
            logger.warning(
                "re-initialised tensors whose shape differs: %s", ", ".join(f"{n} {a}->{b}" for n, a, b in mismatched)
            )
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
        """Give tensors still on the meta device (absent from the checkpoint) real storage and their init."""
        for module in self.modules():
            parameters = dict(module.named_parameters(recurse=False))
            if not any(p.is_meta for p in parameters.values()):
                continue
            # Init writes every parameter a module owns; park the loaded ones so only the missing change.
            for name, old in parameters.items():
                module._parameters[name] = nn.Parameter(torch.empty(old.shape), requires_grad=old.requires_grad)
            self._init_module(module)
            for name, old in parameters.items():
                if not old.is_meta:
                    module._parameters[name] = old
