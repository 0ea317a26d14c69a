"""`Wav2Vec2BertConfig`: every hyper-parameter of the model family, read from and written to `config.json`.

The field names, defaults and JSON layout are those of the Hugging Face config of the same name, so a
`config.json` written by either library loads in the other. It behaves as transformers' `PretrainedConfig` for
its users: any keyword is taken (the fields; transformers' common attributes, model/config_dict.py; any other,
kept as an attribute and written back), `num_labels` resizes the labels, and `to_dict`, `to_diff_dict`,
`to_json_string`, `to_json_file`, `from_dict`, `from_json_file`, `update` and `from_pretrained(...,
return_unused_kwargs=True)` work as there.

A config is made from any values of the right types, as transformers' is; whether they can build a model is
checked where one is built or loaded: `validate()` (model/config_rules.py) raises one `ValueError` naming every
bad field. A value of a wrong type is refused at once (transformers' config refuses it too), with the same
message; `architectures` and `label2id`, which transformers takes as given, are typed by `validate()` too.

In order: the config dataclass (its field annotations give each field's type, model/field_kinds.py the values each
type admits), its construction (`__init__`, the labels), the derived properties, `validate`, the dict and JSON side,
then `FIELD_KINDS`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from w2vbert.loading.hub import HubOptions, resolve_file
from w2vbert.model.config_dict import (  # noqa: F401  (EXTENSION_FLAGS, PRETRAINING_FIELDS: imported from here)
    EXTENSION_FLAGS,
    MODEL_TYPE,
    PRETRAINING_FIELDS,
    ExtraKeys,
    as_dtype,
    config_to_dict,
    config_to_diff_dict,
    set_common_attributes,
    set_extra_keys,
    split_overrides,
)
from w2vbert.model.config_rules import (  # noqa: F401  (the choices, imported from here)
    ACTIVATIONS,
    CTC_REDUCTIONS,
    MAX_LABELS,
    POSITION_EMBEDDING_TYPES,
    build_problems,
    type_problems,
)
from w2vbert.model.field_kinds import KINDS, field_kinds
from w2vbert.utils.files import atomic_write_text, read_json_object

logger = logging.getLogger("w2vbert")

CONFIG_NAME = "config.json"
DEFAULT_NUM_LABELS = 2  # transformers' PretrainedConfig default: LABEL_0, LABEL_1
# Fields whose type is checked where a model is built, not when the config is made: transformers' PretrainedConfig
# takes them as given (its own tests pass label2id={"label": "0"}), and no tensor's shape depends on them.
TYPED_AT_BUILD = ("architectures", "label2id")


@dataclass(init=False, eq=False, repr=False)
class Wav2Vec2BertConfig:
    # --- encoder size; the defaults are W2v-BERT 2.0 (facebook/w2v-bert-2.0, 580,493,120 parameters)
    hidden_size: int = 1024  # model width of every Conformer block
    num_hidden_layers: int = 24  # Conformer blocks
    num_attention_heads: int = 16  # head dim = hidden_size // num_attention_heads
    intermediate_size: int = 4096  # inner width of the feed-forward modules
    feature_projection_input_dim: int = 160  # two stacked 80-bin fbank frames per 20 ms step
    hidden_act: str = "swish"  # activation of the feed-forward and convolution modules
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02  # std of the normal init of linear layers
    # --- dropouts (all off at inference)
    hidden_dropout: float = 0.0  # after each feed-forward output and on the encoder input
    activation_dropout: float = 0.0  # inside the feed-forward modules
    attention_dropout: float = 0.0  # on the attention probabilities and after self-attention
    feat_proj_dropout: float = 0.0  # after the feature projection
    final_dropout: float = 0.1  # before the CTC head
    layerdrop: float = 0.1  # probability of skipping a whole block in training
    conformer_conv_dropout: float = 0.1  # after the convolution module (and in the adapter)
    # --- position information in self-attention
    position_embeddings_type: str | None = "relative_key"  # None, "relative_key" (Shaw), "relative", "rotary"
    rotary_embedding_base: int = 10000  # "rotary": base of the frequencies
    max_source_positions: int = 5000  # transformers' sinusoid table length; unused here (sinusoids fit each clip)
    left_max_position_embeddings: int = 64  # "relative_key": distances clamped to [-left, +right]
    right_max_position_embeddings: int = 8
    conv_depthwise_kernel_size: int = 31  # causal depthwise convolution; must be odd
    # --- SpecAugment, applied in training only
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05  # fraction of time steps that start a masked span (upper bound)
    mask_time_length: int = 10  # length of a masked time span, in 20 ms steps
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0  # same along the hidden dimension
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    # --- CTC head
    vocab_size: int | None = None  # None in the base checkpoint: set it from the tokenizer when fine-tuning
    ctc_loss_reduction: str = "sum"  # "sum", "mean" (per target length, then batch) or "none"
    ctc_zero_infinity: bool = False  # zero the loss of clips too short for their transcript
    pad_token_id: int | None = 0  # also the CTC blank
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    # --- classification heads
    use_weighted_layer_sum: bool = False  # softmax-weighted sum of all hidden states instead of the last
    classifier_proj_size: int = 768  # projection before mean pooling (sequence classification)
    tdnn_dim: tuple[int, ...] = (512, 512, 512, 512, 1500)  # x-vector TDNN channels per layer
    tdnn_kernel: tuple[int, ...] = (5, 3, 3, 1, 1)
    tdnn_dilation: tuple[int, ...] = (1, 2, 3, 1, 1)
    xvector_output_dim: int = 512
    verification_threshold: float | None = None  # x-vector, w2vbert's: cosine score from which two clips are one
    # speaker (`w2vbert verify`); training keeps the equal-error threshold of the last evaluation here
    # class names; None: LABEL_0 ... for the `num_labels` keyword (2 without it); `num_labels` is its size
    id2label: dict[int, str] | None = None
    label2id: dict[str, int] | None = None  # None: id2label's inverse
    # --- Conformer adapter on top of the encoder (subsamples time by adapter_stride per layer)
    add_adapter: bool = False
    adapter_kernel_size: int = 3
    adapter_stride: int = 2
    num_adapter_layers: int = 1
    adapter_act: str = "relu"
    use_intermediate_ffn_before_adapter: bool = False
    output_hidden_size: int | None = None  # adapter width; None means hidden_size
    # --- SeamlessM4T v2's speech encoder has two LayerNorms Wav2Vec2-BERT lacks (a w2vbert extension: written to
    # config.json only when on; transformers' Wav2Vec2BertModel would ignore them and their weights)
    add_encoder_layer_norm: bool = False  # `encoder.layer_norm` after the last Conformer block
    add_inner_layer_norm: bool = False  # `inner_layer_norm` on the model output, after the adapter
    # --- streaming (a w2vbert extension, written to config.json only when set; absent: full context). Each frame
    # attends to the frames of its own chunk and of `streaming_left_chunks` chunks before it, never to later ones;
    # the convolution module only looks left anyway, so the model's outputs for a chunk never wait for later audio
    # (model/chunking.py; model/streaming.py runs it with caches)
    streaming_chunk_size: int | None = None  # frames (20 ms) per attention chunk; the adapter's stride must divide it
    streaming_left_chunks: int | None = None  # chunks to the left each frame sees; None: every earlier chunk
    # --- pre-training (Wav2Vec2BertForPreTraining): w2vbert fields, written to config.json by a pre-training
    # model or where set. Names follow transformers' Wav2Vec2Config where it has one; the defaults are
    # conformer_shaw's (seamless_communication's builder, a fairseq2 v0.2 wav2vec 2.0 config, whose shapes
    # conformer_shaw.pt holds) and, for the masked-prediction part, fairseq2 v0.2's w2vbert 600m arch.
    num_codevector_groups: int = 2  # codebooks of the Gumbel quantizer (fairseq2: num_codebooks)
    num_codevectors_per_group: int = 320  # entries per codebook (num_codebook_entries)
    codevector_dim: int = 768  # a quantized vector: one entry per codebook, concatenated (quantized_dim)
    proj_codevector_dim: int = 768  # the contrastive space of project_hid and project_q (final_dim)
    max_gumbel_temperature: float = 2.0  # Gumbel softmax temperature: max(max * decay^n, min) after n training
    min_gumbel_temperature: float = 0.1  # forward passes (codebook_sampling_temperature = (2.0, 0.1, 0.999995));
    gumbel_temperature_decay: float = 0.999995  # the floor is reached after ~600k passes
    contrastive_logits_temperature: float = 0.1  # cosine similarities are divided by this (logit_temp)
    num_negatives: int = 100  # distractors per masked frame, from the other masked frames of its clip
    diversity_loss_weight: float = 0.2  # conformer_shaw's v0.2 value (the paper and fairseq2 >= 0.3: 0.1)
    pretraining_mask_prob: float = 0.65  # masked spans of mask_time_length start at this rate (fine-tuning's
    # SpecAugment keeps mask_time_prob); fairseq2's max_temporal_mask_prob
    num_masked_prediction_layers: int | None = None  # the blocks after the contrastive loss's tap (fairseq2:
    # num_bert_encoder_layers, 16 of 24 in its 600m arch); None: two thirds of num_hidden_layers
    num_target_codebooks: int = 2  # codebooks whose indices the masked prediction learns (public configs are
    # silent for conformer_shaw, whose release drops this head: all of them)
    masked_prediction_loss_weight: float = 1.0  # bert_loss_weight
    contrastive_loss_weight: float = 1.0  # w2v2_loss_weight: of the contrastive + diversity loss
    # --- bookkeeping kept for the Hugging Face layout
    architectures: list[str] | None = None

    model_type = MODEL_TYPE  # class attribute, as in Hugging Face configs
    sub_configs = types.MappingProxyType({})  # transformers' nested configs: none (its code asks every config)

    # ------------------------------------------------------------------------------------------ construction
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Any keyword, as transformers' config: the fields, `num_labels`, transformers' common attributes
        (`output_hidden_states`, `return_dict`, `dtype` or `torch_dtype`, `problem_type`, `attn_implementation`,
        ...), and any other, kept as an attribute and written back to config.json."""
        if args:
            raise ValueError(f"Wav2Vec2BertConfig takes keyword arguments only, got {len(args)} positional")
        for f in dataclasses.fields(self):
            setattr(self, f.name, kwargs.pop(f.name, f.default))
        num_labels = kwargs.pop("num_labels", None)
        set_common_attributes(self, kwargs)
        wrong = type_problems(self, FIELD_KINDS)
        if wrong.keys() - set(TYPED_AT_BUILD):
            self.validate()  # a value of the wrong type: refused now, with every other problem of the config
        # The values in their canonical form: float fields as floats (JSON 1 means 1.0), TDNN sizes as tuples,
        # id2label keys as integers (JSON object keys are strings; the model wants class ids).
        for name, kind in FIELD_KINDS.items():
            value = getattr(self, name)
            if value is not None and name not in wrong:
                setattr(self, name, kind.canonical(value))
        if self.output_hidden_size is None:  # (0 is kept, and refused where a model is built)
            self.output_hidden_size = self.hidden_size
        self._init_labels(num_labels)
        set_extra_keys(self, kwargs)

    def _init_labels(self, num_labels: int | None) -> None:
        """As transformers: id2label from `num_labels` when not given; given both, `num_labels` wins (warned)."""
        if self.id2label is None:
            given = self.label2id
            self.num_labels = DEFAULT_NUM_LABELS if num_labels is None else num_labels  # LABEL_0 ... both ways
            if given is not None:  # kept (transformers replaces it with the LABEL_i names)
                self.label2id = given
        elif num_labels is not None and num_labels != len(self.id2label):
            logger.warning(
                "num_labels=%s replaces the %d labels of id2label with LABEL_0 ...: pass one of them, or both "
                "consistently", num_labels, len(self.id2label),
            )
            self.num_labels = num_labels
        if self.label2id is None:
            self.label2id = {label: i for i, label in self.id2label.items()}

    @property
    def num_labels(self) -> int | None:
        """The number of classes: the size of id2label, as transformers derives it."""
        return None if self.id2label is None else len(self.id2label)

    @num_labels.setter
    def num_labels(self, count: int) -> None:
        """A new count makes new labels LABEL_0 ... (as transformers); the same count keeps the names."""
        problem = KINDS[int].problem(count)
        if problem is None and not 0 <= count <= MAX_LABELS:  # the names would fill the memory
            problem = f"must be in [0, {MAX_LABELS:,}], got {count}"
        if problem is not None:
            raise ValueError(f"invalid Wav2Vec2BertConfig: num_labels {problem}")
        if self.id2label is None or len(self.id2label) != count:
            self.id2label = {i: f"LABEL_{i}" for i in range(count)}
            self.label2id = {label: i for i, label in self.id2label.items()}

    # ---------------------------------------------------------------------------------- transformers' names
    @property
    def torch_dtype(self) -> Any:
        """transformers' old name of `dtype`."""
        return self.dtype

    @torch_dtype.setter
    def torch_dtype(self, value: Any) -> None:
        self.dtype = as_dtype(value)

    @property
    def use_return_dict(self) -> bool:
        """transformers' old name of `return_dict`."""
        return self.return_dict

    @property
    def name_or_path(self) -> str:
        """The directory or repo id a model was loaded from ("" for a config made here)."""
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value: str | os.PathLike) -> None:
        self._name_or_path = str(value)

    @property
    def extra(self) -> ExtraKeys:
        """What config.json holds beyond the fields, as written (model/config_dict.py's `ExtraKeys`)."""
        return ExtraKeys(self)

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> Wav2Vec2BertConfig:
        """transformers' code asks every config for its text part: this config has no nested one."""
        return self

    def __iter__(self) -> Iterator[str]:
        """The attribute names, as transformers' config iterates (`for name in config`, `name in config`)."""
        return iter(list(vars(self)))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Wav2Vec2BertConfig) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    # ----------------------------------------------------------------------------------------------- derived
    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def contrastive_layer(self) -> int:
        """The block whose output the contrastive loss reads (`hidden_states` index): the blocks before the
        masked-prediction ones (8 of 24 for W2v-BERT 2.0)."""
        masked = self.num_masked_prediction_layers
        return self.num_hidden_layers - (2 * self.num_hidden_layers // 3 if masked is None else masked)

    def layer_index(self, layer: int) -> int:
        """`layer` as `embed` and `output_hidden_states` count (negative from the end) -> its index 0..layers."""
        total = self.num_hidden_layers
        if isinstance(layer, (bool, float)) or not -total - 1 <= layer <= total:
            raise ValueError(f"layer must be in [-{total + 1}, {total}] for a {total}-layer model, got {layer!r}")
        return int(layer) + total + 1 if layer < 0 else int(layer)

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Input samples per output frame, as transformers defines it: 2 x input dim, times adapter strides."""
        ratio = self.feature_projection_input_dim * 2
        if self.add_adapter:
            ratio *= self.adapter_stride**self.num_adapter_layers
        return ratio

    # ------------------------------------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise `ValueError` for values that cannot build a model, naming each bad field and its rule.

        What building or loading a model checks first (`Wav2Vec2BertPreTrainedModel.__init__`, which loading
        goes through too): each field's type and rules in field order, transformers' `problem_type`, the rules
        between fields, then the model's size (model/config_rules.py). The config is checked as it is then, so
        a field changed after it was made is checked too.
        """
        problems = build_problems(self, FIELD_KINDS)
        if problems:
            raise ValueError("invalid Wav2Vec2BertConfig: " + "; ".join(problems))

    # -------------------------------------------------------------------------------------- dict and JSON
    @classmethod
    def from_dict(cls, values: dict[str, Any], **overrides: Any) -> Any:
        """Build from a `config.json` dictionary; `overrides` win over it. As transformers, an override that
        names no field, common attribute or key of `values` is unused: returned with `return_unused_kwargs=True`
        as `(config, unused)`, else refused (a misspelt override fails here instead of being dropped)."""
        return_unused = overrides.pop("return_unused_kwargs", False)
        values = dict(values)
        model_type = values.pop("model_type", MODEL_TYPE)
        if model_type != MODEL_TYPE:
            raise ValueError(
                f"this is a config for model_type {model_type!r}, expected {MODEL_TYPE!r}: "
                "w2vbert loads Wav2Vec2-BERT / W2v-BERT 2.0 checkpoints only"
            )
        used, unused = split_overrides(cls, values, overrides)
        if unused and not return_unused:
            raise TypeError(f"unknown Wav2Vec2BertConfig field(s): {sorted(unused)}")
        config = cls(**(values | used))
        return (config, unused) if return_unused else config

    def to_dict(self) -> dict[str, Any]:
        """Every attribute, as transformers' `to_dict` (model/config_dict.py)."""
        return config_to_dict(self)

    def to_diff_dict(self) -> dict[str, Any]:
        """What config.json holds, as transformers' `to_diff_dict` (model/config_dict.py)."""
        return config_to_diff_dict(self)

    def to_json_string(self, use_diff: bool = True) -> str:
        """config.json's text: `to_diff_dict`, or with `use_diff=False` `to_dict` (sorted keys, as transformers)."""
        return json.dumps(self.to_diff_dict() if use_diff else self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        atomic_write_text(Path(json_file_path), self.to_json_string(use_diff))

    def update(self, config_dict: dict[str, Any]) -> None:
        """Set each key of `config_dict` as an attribute (any key, as transformers)."""
        for key, value in config_dict.items():
            setattr(self, key, value)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        self.to_json_file(path / CONFIG_NAME)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> Any:
        """`from_dict` of a config.json; its errors name the file."""
        values = read_json_object(path)
        try:
            return cls.from_dict(values, **overrides)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        subfolder: str = "",
        **overrides: Any,
    ) -> Any:
        """Read `config.json` from a directory, a hub repo id, or the file itself; keyword overrides replace stored
        values (`return_unused_kwargs=True`: `(config, unused keywords)`, as transformers)."""
        if Path(path_or_repo_id).is_file():
            return cls.from_json_file(path_or_repo_id, **overrides)
        hub = HubOptions(revision, cache_dir, local_files_only, token, subfolder)
        return cls.from_hub(path_or_repo_id, hub, **overrides)

    @classmethod
    def from_hub(cls, path_or_repo_id: str | os.PathLike, hub: HubOptions, **overrides: Any) -> Any:
        """`from_pretrained` with the hub options already gathered (what the model's loading calls)."""
        return cls.from_json_file(resolve_file(path_or_repo_id, CONFIG_NAME, hub), **overrides)


FIELD_KINDS = field_kinds(Wav2Vec2BertConfig)
