"""How many parameters the models of a config have, counted from its sizes before anything is built.

Config validation (where a model is built or loaded) refuses a model too large to build
(`num_hidden_layers=1e9` used to hang while the memory grew) and must answer at once, for any integer
(`num_hidden_layers=10**400`): so the count is arithmetic on the sizes, part by part, mirroring the modules
(model/encoder.py, conformer.py, adapter.py, heads.py, pretraining.py). tests/test_config_validation.py holds it
equal to the built models of many configs, and the defaults give W2v-BERT 2.0's 580,493,120.

Why not count a model built on the meta device, which would describe the architecture once: validation runs
for every model built or loaded, and a meta build is not instant. Measured with torch 2.13 on CPU: the first one
in a process takes 1.4 to 3.5 s (torch loads its decompositions, and its compiler for `normal_` on meta, which
`nn.Embedding` calls), each new shape 65 to 100 ms (the bare model and five heads, two block counts), and a
tensor over 2^63 bytes cannot be described at all; the test that refuses absurd sizes within 0.1 s fails.

In order: the limit, `ParameterPart`, the counts of the bare model's parts and of what each head adds,
`estimated_parameters`, and `size_problem`, the refusal `Wav2Vec2BertConfig.validate` adds
(model/config_rules.py).
"""

from __future__ import annotations

import math
import reprlib
import typing

if typing.TYPE_CHECKING:
    from w2vbert.model.config import Wav2Vec2BertConfig

# A config whose model would be larger is refused: 1e11 parameters are 400 GB in float32, and W2v-BERT 2.0, the
# largest, has 5.8e8.
MAX_PARAMETERS = 10**11


class ParameterPart(typing.NamedTuple):
    name: str  # "encoder", "adapter", ..., or a head's class name
    fields: tuple[str, ...]  # the fields that set its size (the error names them when the model is too big)
    parameters: int


def _linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def _layer_norm(width: int) -> int:
    return 2 * width  # weight and bias


def _feed_forward(width: int, inner: int) -> int:
    return _linear(width, inner) + _linear(inner, width)


def _attention(width: int) -> int:
    return 4 * _linear(width, width)  # q, k, v, out


def model_parameter_parts(config: Wav2Vec2BertConfig) -> list[ParameterPart]:
    """The parameters of each part of `Wav2Vec2BertModel(config)`, counted from the sizes (nothing is built).

    Mirrors the modules of model/encoder.py, conformer.py and adapter.py; tests compare it with built models of
    many configs, and the defaults give W2v-BERT 2.0's 580,493,120. Reads the values as given (a float field may
    hold a JSON integer).
    """
    hidden, inner, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    width = config.output_hidden_size or hidden  # the adapter's (None means hidden_size)
    head_dim = hidden // heads
    position_fields: tuple[str, ...] = ()
    position = 0
    if config.position_embeddings_type == "relative":  # Transformer-XL: linear_pos, pos_bias_u, pos_bias_v
        position = _linear(hidden, hidden, bias=False) + 2 * heads * head_dim
    elif config.position_embeddings_type == "relative_key":  # Shaw: one embedding per clamped distance
        position = (config.left_max_position_embeddings + config.right_max_position_embeddings + 1) * head_dim
        position_fields = ("left_max_position_embeddings", "right_max_position_embeddings")
    convolution = (
        _layer_norm(hidden)
        + _linear(hidden, 2 * hidden, bias=False)  # pointwise_conv1 (kernel 1) before the GLU
        + hidden * config.conv_depthwise_kernel_size  # depthwise: one kernel per channel, no bias
        + _layer_norm(hidden)
        + _linear(hidden, hidden, bias=False)  # pointwise_conv2
    )
    block = (  # ffn1, self-attention, convolution, ffn2, final LayerNorm
        2 * (_layer_norm(hidden) + _feed_forward(hidden, inner))
        + _layer_norm(hidden) + _attention(hidden) + position
        + convolution
        + _layer_norm(hidden)
    )
    encoder = config.num_hidden_layers * block + (_layer_norm(hidden) if config.add_encoder_layer_norm else 0)
    projection_input = config.feature_projection_input_dim
    parts = [
        ParameterPart(
            "feature projection", ("feature_projection_input_dim", "hidden_size"),
            _layer_norm(projection_input) + _linear(projection_input, hidden),
        ),
        ParameterPart(
            "encoder", ("num_hidden_layers", "hidden_size", "intermediate_size", "conv_depthwise_kernel_size",
                        *position_fields), encoder,
        ),
    ]
    if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
        parts.append(ParameterPart("SpecAugment mask embedding", ("hidden_size",), hidden))
    if config.use_intermediate_ffn_before_adapter:
        parts.append(ParameterPart("intermediate feed-forward", ("hidden_size", "intermediate_size"),
                                   _feed_forward(hidden, inner)))
    if config.add_adapter:
        strided_conv = _linear(width * config.adapter_kernel_size, 2 * width)  # residual_conv, self_attn_conv
        layer = 3 * _layer_norm(width) + 2 * strided_conv + _attention(width) + _feed_forward(width, inner)
        projection = _linear(hidden, width) + _layer_norm(width) if width != hidden else 0
        parts.append(ParameterPart(
            "adapter", ("num_adapter_layers", "output_hidden_size", "adapter_kernel_size", "intermediate_size"),
            projection + config.num_adapter_layers * layer,
        ))
    if config.add_inner_layer_norm:
        parts.append(ParameterPart("inner layer norm", ("output_hidden_size",), _layer_norm(width)))
    return parts


def head_parameter_parts(config: Wav2Vec2BertConfig) -> list[ParameterPart]:
    """What each head class adds to the bare model, named by the class and counted as `model_parameter_parts`."""
    hidden, labels = config.hidden_size, config.num_labels or 0  # None: id2label set to None
    output = config.output_hidden_size or hidden
    layer_weights = config.num_hidden_layers + 1 if config.use_weighted_layer_sum else 0
    ctc_width = ("output_hidden_size", output) if config.add_adapter else ("hidden_size", hidden)
    projection, tdnn, kernels = config.classifier_proj_size, config.tdnn_dim, config.tdnn_kernel
    xvector = config.xvector_output_dim
    codes = config.num_codevector_groups * config.num_codevectors_per_group
    xvector_input = output if config.add_adapter and not config.use_weighted_layer_sum else hidden
    tdnn_layers = sum(
        _linear(n_in * kernel, n_out) for n_in, kernel, n_out in zip((tdnn[0], *tdnn[:-1]), kernels, tdnn, strict=True)
    )
    return [
        ParameterPart(
            "Wav2Vec2BertForCTC", ("vocab_size", ctc_width[0]),
            _linear(ctc_width[1], config.vocab_size) if config.vocab_size is not None else 0,
        ),
        ParameterPart(
            "Wav2Vec2BertForSequenceClassification", ("hidden_size", "classifier_proj_size", "num_labels"),
            layer_weights + _linear(hidden, projection) + _linear(projection, labels),
        ),
        ParameterPart(
            "Wav2Vec2BertForAudioFrameClassification", ("hidden_size", "num_labels"),
            layer_weights + _linear(hidden, labels),
        ),
        ParameterPart(
            "Wav2Vec2BertForPreTraining",
            ("num_codevector_groups", "num_codevectors_per_group", "codevector_dim", "proj_codevector_dim"),
            _linear(config.feature_projection_input_dim, codes)  # quantizer.weight_proj
            + config.codevector_dim * config.num_codevectors_per_group  # quantizer.codevectors
            + _linear(hidden, config.proj_codevector_dim) + _linear(config.codevector_dim, config.proj_codevector_dim)
            + _linear(hidden, config.num_codevectors_per_group * config.num_target_codebooks)  # masked prediction
            + (0 if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0 else hidden),  # its mask embedding
        ),
        ParameterPart(
            "Wav2Vec2BertForXVector", ("tdnn_dim", "tdnn_kernel", "xvector_output_dim", "num_labels"),
            layer_weights + _linear(xvector_input, tdnn[0]) + tdnn_layers
            + _linear(2 * tdnn[-1], xvector) + _linear(xvector, xvector)
            + xvector * labels,  # the AM-softmax weight
        ),
    ]


def _about(count: int) -> str:
    """'2.4e+16'; past what a float holds (num_hidden_layers of 400 digits), the power of ten."""
    return f"{count:.2g}" if count < 1e300 else f"10^{math.log10(count):.0f}"


def estimated_parameters(config: Wav2Vec2BertConfig) -> int:
    """Parameters of the largest model the config can build: the bare model plus its largest head."""
    model = sum(part.parameters for part in model_parameter_parts(config))
    return model + max(part.parameters for part in head_parameter_parts(config))


def size_problem(config: Wav2Vec2BertConfig) -> str | None:
    """The message refusing a config whose largest model is over MAX_PARAMETERS; None when it is not.

    Reads most fields: it needs a config that passed every other check of `validate`.
    """
    total = estimated_parameters(config)
    if total <= MAX_PARAMETERS:
        return None
    biggest = max(model_parameter_parts(config) + head_parameter_parts(config), key=lambda part: part.parameters)
    shown = {name: getattr(config, name) for name in biggest.fields}  # as config.json writes them: lists, not tuples
    sizes = ", ".join(f"{name}={reprlib.repr(list(v) if isinstance(v, tuple) else v)}" for name, v in shown.items())
    limit = f"{MAX_PARAMETERS:.0e} ({4 * MAX_PARAMETERS / 1e9:,.0f} GB in float32, W2v-BERT 2.0 has 5.8e8)"
    return (
        f"these sizes make a model of about {_about(total)} parameters, over the limit of {limit}: "
        f"lower {sizes} (they size the {biggest.name}, the largest part)"
    )
