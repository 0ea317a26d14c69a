"""What every model class shares: weight init, input checks, length arithmetic, `save_pretrained`, and the
`from_pretrained` / `from_fairseq2` entry points.

In order: the class's attributes and weight init (`post_init`, `init_weights`, and `materialize_missing` for what
a checkpoint lacks), its properties, what transformers' Trainer and peft call (parameter counts, embeddings,
checkpointing, the attention kernels), `output_flags`, the length arithmetic, `check_inputs` (model/inputs.py's
contract), then saving and the loading entry points, whose work is model/loader.py's: a checkpoint built on the
meta device, its tensors assigned, then placed on one device and dtype (`loader.Placement`, resolved once per load).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from w2vbert.loading.hub import HubOptions
from w2vbert.loading.weights import save_weights
from w2vbert.model.config import Wav2Vec2BertConfig
from w2vbert.model.conformer import Checkpointing, Wav2Vec2BertEncoder, Wav2Vec2BertSelfAttention
from w2vbert.model.inputs import Padding, check_inputs
from w2vbert.model.layers import strided_conv_lengths
from w2vbert.model.loader import (
    Placement,
    asks_for_int8,
    build_from_state_dict,
    checkpoint_tensors,
    is_fairseq2_file,
    load_fairseq2,
    place,
    read_config,
    report_loading,
    stored_dtype,
    transformers_loading_info,
)
from w2vbert.model.quantization import quantized_layer
from w2vbert.utils.padding import lengths_to_mask

BASE_MODEL_PREFIX = "wav2vec2_bert"
# What a forward returns when its call leaves an output flag None and the config does not set it either:
# transformers' PretrainedConfig defaults (`config.output_hidden_states = True` turns one on for every call).
OUTPUT_FLAG_DEFAULTS = {"output_attentions": False, "output_hidden_states": False, "return_dict": True}
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")  # what `attn_implementation` takes: the fused kernels, or explicit


def check_attn_implementation(implementation: str) -> None:
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(  # opening as transformers' message does, which code written for it may match
            f'Specified `attn_implementation="{implementation}"` is not supported: attn_implementation must be '
            "'sdpa' or 'eager'; w2vbert picks its own attention kernels behind 'sdpa' (the default)"
        )


class Wav2Vec2BertPreTrainedModel(nn.Module):
    config_class = Wav2Vec2BertConfig
    base_model_prefix = BASE_MODEL_PREFIX
    main_input_name = "input_features"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["Wav2Vec2BertEncoderLayer"]
    # transformers' class defaults: no key of these models is tied, ignored, or left out of a checkpoint
    _tied_weights_keys = _keys_to_ignore_on_save = None
    _keys_to_ignore_on_load_missing = _keys_to_ignore_on_load_unexpected = None
    # The Trainer passes `num_items_in_batch` to a model that accepts loss keywords and then no longer averages the
    # loss over gradient-accumulation steps; these losses are per batch, so it must average (transformers' heads
    # accept the keyword and ignore it: their loss under accumulation is N x the mean).
    accepts_loss_kwargs = False
    # whether a fairseq2 file's quantizer and contrastive projections load (model/fairseq2.py)
    pretraining_tensors = False

    def __init__(self, config: Wav2Vec2BertConfig) -> None:
        super().__init__()
        if not isinstance(config, Wav2Vec2BertConfig):
            raise TypeError(f"expected a Wav2Vec2BertConfig, got {type(config).__name__}")
        config.validate()  # a config transformers would make is made; one that cannot build a model stops here
        self.config = config

    def post_init(self) -> None:
        """What every model's build ends with: the attention kernels and checkpointing its config names, then the
        weights' init (`init_weights`).

        A model built on the meta device has no values to initialise: loading assigns the checkpoint's tensors
        and then initialises what the checkpoint lacks, and counting its parameters needs only their shapes."""
        self.set_attn_implementation(getattr(self.config, "_attn_implementation", None) or "sdpa")
        if getattr(self.config, "gradient_checkpointing", False):  # transformers' older spelling of turning it on
            self.activation_checkpointing_enable()
            delattr(self.config, "gradient_checkpointing")  # consumed, as transformers does: not saved with the config
        if not next(self.parameters()).is_meta:
            self.init_weights()

    def init_weights(self) -> None:
        """Initialise every parameter as transformers does, children first (so containers can override): what a
        model built on the meta device and then given storage (`to_empty`) needs, as in transformers."""
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

    @property
    def base_model(self) -> nn.Module:
        """The bare encoder: the model itself, or a head's `wav2vec2_bert` (transformers' `base_model`)."""
        return getattr(self, self.base_model_prefix, self)

    # ------------------------------------------------------- what transformers' Trainer and peft call on a model
    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameters, as transformers counts them: `exclude_embeddings` leaves out nn.Embedding weights (here the
        Shaw distance embeddings; the Trainer's FLOP count asks for it)."""
        embeddings = {f"{name}.weight" for name, module in self.named_modules() if isinstance(module, nn.Embedding)}
        return sum(
            parameter.numel() for name, parameter in self.named_parameters()
            if (parameter.requires_grad or not only_trainable) and not (exclude_embeddings and name in embeddings)
        )

    def get_input_embeddings(self) -> nn.Module:
        raise NotImplementedError(
            f"{type(self).__name__} has no input embeddings: its input is fbank features (input_features), not "
            "token ids, as in transformers"
        )

    def get_output_embeddings(self) -> None:
        """None, as transformers' speech models answer (the CTC head is no tied token embedding)."""
        return None

    def enable_input_require_grads(self) -> None:
        """Make the feature projection's output require gradients, so that blocks recomputed by reentrant
        checkpointing still backpropagate when the encoder is frozen (peft calls this); undone by
        `disable_input_require_grads`. transformers' speech models have no input embeddings to hook and do nothing."""

        def require_grads(module: nn.Module, inputs: tuple, outputs: tuple[torch.Tensor, torch.Tensor]) -> None:
            outputs[0].requires_grad_(True)  # the projected features (B, T, hidden), which the blocks read

        self.disable_input_require_grads()
        self._require_grads_hooks = [self.base_model.feature_projection.register_forward_hook(require_grads)]

    def disable_input_require_grads(self) -> None:
        for hook in getattr(self, "_require_grads_hooks", ()):
            hook.remove()
        self._require_grads_hooks = []

    @classmethod
    def _from_config(
        cls, config: Wav2Vec2BertConfig, attn_implementation: str | None = None, dtype: torch.dtype | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> Wav2Vec2BertPreTrainedModel:
        """A new model of `config` with transformers' `_from_config` keywords (what `AutoModel.from_config` and
        transformers' test mixins call)."""
        model = cls(config)
        if attn_implementation is not None:
            model.set_attn_implementation(attn_implementation)
        dtype = dtype if dtype is not None else torch_dtype
        return model if dtype is None else model.to(dtype)

    @classmethod
    def can_generate(cls) -> bool:
        return False  # an encoder: nothing to generate (transformers' pipelines and peft ask)

    def activation_checkpointing_enable(
        self, activation_checkpointing_kwargs: dict | None = None, every_n_layers: int = 1, offload: bool = False
    ) -> None:
        """Recompute Conformer blocks in the backward pass instead of keeping their activations, as transformers'
        `activation_checkpointing_enable`: every `every_n_layers`-th block from the first; `offload` keeps what a
        recompute starts from in host memory; `activation_checkpointing_kwargs` go to
        torch.utils.checkpoint.checkpoint (default: use_reentrant=False)."""
        if isinstance(every_n_layers, bool) or not isinstance(every_n_layers, int) or every_n_layers < 1:
            raise ValueError(f"every_n_layers must be an integer >= 1, got {every_n_layers!r}")
        kwargs = dict(activation_checkpointing_kwargs or {"use_reentrant": False})
        for encoder in self._encoders():
            encoder.gradient_checkpointing = True
            encoder.checkpointing = Checkpointing(every_n_layers, bool(offload), kwargs)

    def activation_checkpointing_disable(self) -> None:
        for encoder in self._encoders():
            encoder.gradient_checkpointing = False

    @property
    def is_activation_checkpointing(self) -> bool:
        return any(encoder.gradient_checkpointing for encoder in self._encoders())

    # transformers' names before version 5 (still called by the Trainer for models that define only them)
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, **kwargs: Any) -> None:
        self.activation_checkpointing_enable(gradient_checkpointing_kwargs, **kwargs)

    def gradient_checkpointing_disable(self) -> None:
        self.activation_checkpointing_disable()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.is_activation_checkpointing

    def _encoders(self) -> list[Wav2Vec2BertEncoder]:
        return [module for module in self.modules() if isinstance(module, Wav2Vec2BertEncoder)]

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        """transformers' question before `set_attn_implementation` (its Trainer, peft and tests ask it): these
        models switch kernels at any time."""
        return True

    def set_attn_implementation(self, implementation: str) -> None:
        """ "sdpa" (fused kernels, the default) or "eager" (explicit softmax, as transformers' eager path), recorded as
        `config._attn_implementation`, as transformers reports it. transformers' other kernels are refused."""
        check_attn_implementation(implementation)
        for module in self.modules():
            if isinstance(module, Wav2Vec2BertSelfAttention):
                module.use_sdpa = implementation == "sdpa"
        self.config._attn_implementation = implementation

    def output_flags(
        self, output_attentions: bool | None, output_hidden_states: bool | None, return_dict: bool | None
    ) -> tuple[bool, bool, bool]:
        """A forward's (output_attentions, output_hidden_states, return_dict): each as the call passes it, else as
        the config sets it (`config.output_hidden_states = True`, `config.return_dict = False`), as transformers."""

        def flag(name: str, value: bool | None) -> bool:
            return bool(getattr(self.config, name, OUTPUT_FLAG_DEFAULTS[name]) if value is None else value)

        return (flag("output_attentions", output_attentions), flag("output_hidden_states", output_hidden_states),
                flag("return_dict", return_dict))

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
        is_main_process: bool = True,
    ) -> None:
        """Write `config.json` and `model.safetensors` (sharded above `max_shard_size`) in the HF layout; under
        torchrun only the process told `is_main_process` writes (transformers' keyword)."""
        if not is_main_process:
            return
        if not safe_serialization:
            raise ValueError("w2vbert writes safetensors only (pickled .bin files can carry code)")
        layer = quantized_layer(self) if state_dict is None else None
        if layer is not None:
            raise ValueError(
                f"{layer} holds int8 weights packed for inference, which are no checkpoint: save the float model it "
                "was quantized from, and quantize when loading (from_pretrained(..., quantize='int8'))"
            )
        save_weights(self.state_dict() if state_dict is None else state_dict, save_directory, max_shard_size)
        self.checkpoint_config().save_pretrained(save_directory)

    def checkpoint_config(self) -> Wav2Vec2BertConfig:
        """The config a checkpoint of this model records: its own, plus its class (`architectures`) and dtype."""
        config = Wav2Vec2BertConfig.from_dict(self.config.to_dict())
        config.architectures = [type(self).__name__]
        config.dtype = self.dtype  # written as its name, under transformers 5's key "dtype"
        return config

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike | None,
        *,
        config: Wav2Vec2BertConfig | None = None,
        state_dict: dict[str, torch.Tensor] | None = None,
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
        quantization_config: Any = None,
        quantize: str | None = None,
        **config_overrides: Any,
    ) -> Any:
        """Load a model from a local directory or a hub repo id (through the hub cache; `HF_HUB_OFFLINE` works),
        from Meta's original fairseq2 `.pt` file, or (`None`) from `config` and `state_dict` alone.

        As transformers: keywords naming config fields override the stored config; a base checkpoint loads into a
        head (the head starts fresh and is reported); a head of another shape is re-initialised only with
        `ignore_mismatched_sizes=True`; `state_dict` replaces the checkpoint's tensors; `output_loading_info=True`
        also returns {"missing_keys", "unexpected_keys", "mismatched_keys": sets, "error_msgs": []}.
        `device_map` takes the values that keep the model on one device ("auto", "cuda:1", {"": 0}).
        `quantize="int8"` converts the loaded model (model/quantization.py: PyTorch int8 on CPU, bitsandbytes on
        CUDA); `load_in_8bit=True` and `quantization_config=BitsAndBytesConfig(load_in_8bit=True)` are
        transformers' spellings of the CUDA one.
        """
        source = pretrained_model_name_or_path
        hub = HubOptions(revision, cache_dir, local_files_only, token, subfolder)
        if attn_implementation is not None:
            check_attn_implementation(attn_implementation)
        load_in_8bit = load_in_8bit or asks_for_int8(quantization_config)
        fairseq2 = source is not None and is_fairseq2_file(source)
        if not fairseq2:  # config.json, read once: the model's config and the dtype "auto" means
            config = read_config(source, hub, config, config_overrides)
        placement = Placement.resolve(
            device if device is not None else device_map, torch_dtype if torch_dtype is not None else dtype,
            quantize, load_in_8bit, stored_dtype=None if fairseq2 else stored_dtype(config),
        )
        if fairseq2:
            model, info = load_fairseq2(cls, Path(source), "auto", config_overrides)
        else:  # the checkpoint's tensors are held by this call only: the model keeps what it uses
            model, info = build_from_state_dict(cls, config, checkpoint_tensors(source, hub, state_dict),
                                                ignore_mismatched_sizes)
        report_loading(cls.__name__, info)
        model = place(model, placement, attn_implementation)
        return (model, transformers_loading_info(info)) if output_loading_info else model

    @classmethod
    def from_fairseq2(cls, path: str | os.PathLike, kind: str = "auto", **config_overrides: Any) -> Any:
        """A model from Meta's original fairseq2 file (`conformer_shaw.pt`, or the speech encoder of
        `seamlessM4T_v2_large.pt`: `kind` "w2v-bert" / "seamless-m4t-v2", or "auto" from the names).

        The encoder must be whole: a tensor it lacks, or one with no place in it, is an error naming it."""
        model, info = load_fairseq2(cls, Path(path), kind, config_overrides)
        report_loading(cls.__name__, info)
        return model
