"""What every model class shares: weight init, input checks, length arithmetic, `save_pretrained`, and the
`from_pretrained` / `from_fairseq2` entry points.

In order: the class's attributes and weight init (`post_init`, and `materialize_missing` for what a checkpoint
lacks), its properties and `output_flags`, the length arithmetic, `check_inputs` (model/inputs.py's contract), then
saving and the loading entry points, whose work is model/loader.py's: a checkpoint built on the meta device,
its tensors assigned, then placed on one device and dtype (`loader.Placement`, resolved once per load).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from w2vbert.loading.hub import HubOptions
from w2vbert.loading.weights import load_weights, save_weights
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.inputs import Padding, check_inputs
from w2vbert.model.layers import strided_conv_lengths
from w2vbert.model.loader import (
    Placement,
    build_from_state_dict,
    is_fairseq2_file,
    load_fairseq2,
    place,
    read_config,
    report_loading,
    stored_dtype,
)
from w2vbert.model.quantization import quantized_layer
from w2vbert.utils.padding import lengths_to_mask

BASE_MODEL_PREFIX = "wav2vec2_bert"
# What a forward returns when its call leaves an output flag None and the config does not set it either:
# transformers' PretrainedConfig defaults (`config.output_hidden_states = True` turns one on for every call).
OUTPUT_FLAG_DEFAULTS = {"output_attentions": False, "output_hidden_states": False, "return_dict": True}


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
        config.validate()  # a config transformers would make is made; one that cannot build a model stops here
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

    def materialize_missing(self) -> None:
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

    def output_flags(
        self, output_attentions: bool | None, output_hidden_states: bool | None, return_dict: bool | None
    ) -> tuple[bool, bool, bool]:
        """A forward's (output_attentions, output_hidden_states, return_dict): each as the call passes it, else as
        the config sets it (`config.output_hidden_states = True`, `config.return_dict = False`), as transformers."""
        values = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states,
                  "return_dict": return_dict}
        return tuple(  # type: ignore[return-value]
            bool(getattr(self.config, name, default) if values[name] is None else values[name])
            for name, default in OUTPUT_FLAG_DEFAULTS.items()
        )

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

    # ---------------------------------------------------------------------------------------- input checks
    def check_inputs(self, input_features: torch.Tensor, attention_mask: torch.Tensor | None) -> Padding | None:
        """Validate a forward's inputs (model/inputs.py); the mask's `Padding`, or None when nothing is padded."""
        padding = check_inputs(input_features, attention_mask, self.config.feature_projection_input_dim, self.dtype)
        if self.config.add_adapter and not torch.onnx.is_in_onnx_export():
            self._check_adapter_input(input_features.shape[1] if padding is None else int(padding.lengths.min()))
        return padding

    def _check_adapter_input(self, shortest: int) -> None:
        """The shortest clip (in feature steps) must leave the adapter at least one output frame."""
        if self.get_feat_extract_output_lengths(shortest) < 1:
            raise ValueError(
                f"a clip of {shortest} feature steps is too short for the adapter (kernel "
                f"{self.config.adapter_kernel_size}, stride {self.config.adapter_stride}, "
                f"{self.config.num_adapter_layers} layers): it would have no output frame"
            )

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
        config.dtype = self.dtype  # written as its name, under transformers 5's key "dtype"
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
        source = pretrained_model_name_or_path
        hub = HubOptions(revision, cache_dir, local_files_only, token, subfolder)
        fairseq2 = is_fairseq2_file(source)
        if not fairseq2:  # config.json, read once: the model's config and the dtype "auto" means
            config = read_config(source, hub, config, config_overrides)
        placement = Placement.resolve(
            device if device is not None else device_map, torch_dtype if torch_dtype is not None else dtype,
            quantize, load_in_8bit, stored_dtype=None if fairseq2 else stored_dtype(config),
        )
        if fairseq2:
            model, info = load_fairseq2(cls, Path(source), "auto", config_overrides)
        else:
            state = load_weights(source, hub)
            model, info = build_from_state_dict(cls, config, state, ignore_mismatched_sizes)
            del state  # the model holds what it uses; the rest of the file's map can go
        report_loading(cls.__name__, info)
        model = place(model, placement, attn_implementation)
        return (model, info) if output_loading_info else model

    @classmethod
    def from_fairseq2(cls, path: str | os.PathLike, kind: str = "auto", **config_overrides: Any) -> Any:
        """A model from Meta's original fairseq2 file (`conformer_shaw.pt`, or the speech encoder of
        `seamlessM4T_v2_large.pt`: `kind` "w2v-bert" / "seamless-m4t-v2", or "auto" from the names).

        The encoder must be whole: a tensor it lacks, or one with no place in it, is an error naming it."""
        model, info = load_fairseq2(cls, Path(path), kind, config_overrides)
        report_loading(cls.__name__, info)
        return model
