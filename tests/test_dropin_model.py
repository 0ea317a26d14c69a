"""The model classes behave as transformers' do where code written against transformers reads them: the output flags
a config sets, any 0/1 attention mask, the gradient-checkpointing and parameter-count API the Trainer and peft call.

The oracle is transformers' class of the same name, built from the same checkpoint (conftest.model_pair) or the
same config, in the same test.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import HEAD_CASES, HEADS, case_id, model_pair, random_batch
from w2vbert.model.inputs import mask_padding

ATOL = 1e-5


def as_list(values) -> list:
    """A model output as the list of what it holds, nested tuples flattened (hidden states, attentions)."""
    flat = []
    for value in values:
        flat.extend(value if isinstance(value, tuple) else [value])
    return flat


def assert_same_tensors(ours, theirs):
    ours, theirs = as_list(ours), as_list(theirs)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


# ------------------------------------------------------------------------------------------------ output flags
@pytest.mark.parametrize("head", HEADS)
def test_output_flags_set_on_the_config_apply_to_every_call_as_in_transformers(head, tmp_path):
    reference, ours = model_pair(head, tmp_path, position_embeddings_type="relative_key")
    features, mask = random_batch([30, 22])
    for model in (reference, ours):
        model.config._attn_implementation = "eager"  # transformers returns attention probabilities only in eager
        model.config.output_hidden_states = True
        model.config.output_attentions = True
    with torch.no_grad():
        expected, actual = reference(features, attention_mask=mask), ours(features, attention_mask=mask)
    assert len(actual.hidden_states) == len(expected.hidden_states) == 3
    assert len(actual.attentions) == len(expected.attentions) == 2
    assert_same_tensors(actual.hidden_states, expected.hidden_states)
    assert_same_tensors(actual.attentions, expected.attentions)


@pytest.mark.parametrize("head", HEADS)
def test_return_dict_false_on_the_config_gives_transformers_tuples(head, tmp_path):
    """transformers' heads fail on `config.return_dict = False` (their encoder then returns a tuple, which the head
    reads as an output object: AttributeError); its bare model and every call-level `return_dict=False` give the
    tuple, which is what a head here gives for the config's flag too."""
    reference, ours = model_pair(head, tmp_path)
    features, mask = random_batch([30, 22])
    labels = {
        "Wav2Vec2BertModel": None,
        "Wav2Vec2BertForCTC": torch.tensor([[1, 2, 3], [4, 5, -100]]),
        "Wav2Vec2BertForAudioFrameClassification": None,
    }.get(head, torch.tensor([0, 2]))
    extra = {} if labels is None else {"labels": labels}
    for model in (reference, ours):
        model.config.output_hidden_states = True
    ours.config.return_dict = False
    reference_extra = dict(extra)
    if head == "Wav2Vec2BertModel":
        reference.config.return_dict = False
    else:
        reference_extra["return_dict"] = False
    with torch.no_grad():
        expected = reference(features, attention_mask=mask, **reference_extra)
        actual = ours(features, attention_mask=mask, **extra)
    assert type(actual) is tuple and type(expected) is tuple
    assert_same_tensors(actual, expected)


@pytest.mark.parametrize("head", ["Wav2Vec2BertModel", "Wav2Vec2BertForCTC"])
def test_call_arguments_override_the_flags_the_config_sets(head, tmp_path):
    reference, ours = model_pair(head, tmp_path)
    features, _ = random_batch([20])
    for model in (reference, ours):
        model.config.output_hidden_states = True
    with torch.no_grad():
        expected = reference(features, output_hidden_states=False, return_dict=False)
        actual = ours(features, output_hidden_states=False, return_dict=False)
    assert type(actual) is tuple and type(expected) is tuple
    assert_same_tensors(actual, expected)


# ------------------------------------------------------------------------------------------- any 0/1 mask
ADAPTER = dict(add_adapter=True, num_adapter_layers=2, use_intermediate_ffn_before_adapter=True)
PAIRS = Path(tempfile.mkdtemp(prefix="w2vbert-dropin-"))  # checkpoints of the cached model pairs
atexit.register(shutil.rmtree, PAIRS, ignore_errors=True)


@functools.cache
def cached_pair(case: tuple) -> tuple:
    """model_pair for a (head, position type, adapter) case, built once per test session."""
    head, position, adapter = case
    folder = PAIRS / case_id(case)
    folder.mkdir()
    width = {} if head == "Wav2Vec2BertForXVector" else {"output_hidden_size": 40}  # transformers' x-vector
    return model_pair(head, folder, position_embeddings_type=position, **(dict(ADAPTER, **width) if adapter else {}))


@st.composite
def holed_masks(draw) -> torch.Tensor:
    """(B, T) 0/1 masks that are not right-padded: holes anywhere, left padding, a clip's frames in pieces; each
    clip keeps at least 3/4 of its frames (the x-vector head's TDNN behind two adapter layers needs ~30)."""
    frames = draw(st.integers(40, 56))
    rows = []
    for _ in range(draw(st.integers(1, 3))):
        holes = draw(st.sets(st.integers(0, frames - 1), max_size=frames // 4))
        rows.append([0 if i in holes else 1 for i in range(frames)])
    mask = torch.tensor(rows)
    if bool((mask == 1).all()) or mask_padding(mask, torch.zeros(*mask.shape, 160)).right_padded:
        mask[0, 0] = 0  # a hole at the start: left padding
    return mask


def labels_for(head: str, batch: int) -> dict:
    generator = torch.Generator().manual_seed(batch)
    if head == "Wav2Vec2BertForCTC":
        return {"labels": torch.randint(1, 11, (batch, 4), generator=generator)}
    if head in ("Wav2Vec2BertForSequenceClassification", "Wav2Vec2BertForXVector"):
        return {"labels": torch.randint(0, 3, (batch,), generator=generator)}
    return {}


@pytest.mark.parametrize("case", HEAD_CASES, ids=case_id)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mask=holed_masks())
def test_any_0_1_mask_gives_transformers_numbers_at_every_frame(case, mask):
    head = case[0]
    reference, ours = cached_pair(case)
    features = torch.randn(*mask.shape, 160, generator=torch.Generator().manual_seed(mask.sum().item()))
    extra = labels_for(head, mask.shape[0])
    with torch.no_grad():
        expected = reference(features, attention_mask=mask, **extra)
        actual = ours(features, attention_mask=mask, **extra)
    if extra:  # the x-vector's AM-softmax scales cosines by 30: its loss carries float32 noise x 30
        torch.testing.assert_close(actual.loss, expected.loss, atol=ATOL, rtol=1e-5)
    assert_same_tensors(actual.to_tuple()[bool(extra):], expected.to_tuple()[bool(extra):])


def test_a_right_padded_mask_keeps_the_fast_path_and_another_mask_does_not():
    features = torch.zeros(2, 6, 160)
    right = mask_padding(torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]), features)
    left = mask_padding(torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1]]), features)
    assert right.right_padded and right.lengths.tolist() == [6, 3]
    assert not left.right_padded and left.lengths.tolist() == [6, 3]
    assert left.valid.tolist()[1] == [False, False, False, True, True, True]
    assert mask_padding(torch.ones(2, 6), features) is None  # nothing padded: no masking work at all


# ------------------------------------------------------------------------- what the Trainer and peft call
def model_pairs_from_config(attributes: dict | None = None, **overrides):
    """(transformers model, w2vbert model) of every head class, built fresh from the same config values, with
    `attributes` set on both configs after they are made (as code sets `config.gradient_checkpointing = True`)."""
    import transformers

    import w2vbert
    from conftest import tiny_config_kwargs

    kwargs = tiny_config_kwargs(**overrides)
    for head in HEADS:
        configs = transformers.Wav2Vec2BertConfig(**kwargs), w2vbert.Wav2Vec2BertConfig(**kwargs)
        for config in configs:
            for name, value in (attributes or {}).items():
                setattr(config, name, value)
        yield getattr(transformers, head)(configs[0]), getattr(w2vbert, head)(configs[1])


@pytest.mark.parametrize("position", ["relative_key", "rotary"])
def test_num_parameters_counts_as_transformers_with_and_without_embeddings_and_frozen_parts(position):
    for reference, ours in model_pairs_from_config(position_embeddings_type=position):
        for model in (reference, ours):
            for parameter in model.base_model.feature_projection.parameters():
                parameter.requires_grad = False
        for only_trainable in (False, True):
            for exclude_embeddings in (False, True):
                keywords = dict(only_trainable=only_trainable, exclude_embeddings=exclude_embeddings)
                assert ours.num_parameters(**keywords) == reference.num_parameters(**keywords), keywords


def test_embedding_getters_answer_as_transformers_speech_models_do():
    for reference, ours in model_pairs_from_config():
        assert ours.get_output_embeddings() is None and reference.get_output_embeddings() is None
        for model in (reference, ours):
            with pytest.raises(NotImplementedError):
                model.get_input_embeddings()
        assert ours.can_generate() is reference.can_generate() is False
        assert ours.main_input_name == reference.main_input_name == "input_features"
        assert ours.supports_gradient_checkpointing is reference.supports_gradient_checkpointing is True


def test_checkpointing_api_switches_as_transformers_does_and_the_config_flag_turns_it_on():
    for reference, ours in model_pairs_from_config():
        for model in (reference, ours):
            assert not model.is_activation_checkpointing
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert model.is_activation_checkpointing and model.is_gradient_checkpointing
            model.gradient_checkpointing_disable()
            assert not model.is_activation_checkpointing
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=None, every_n_layers=1, offload=False)
            assert model.is_activation_checkpointing
    for reference, ours in model_pairs_from_config({"gradient_checkpointing": True}):
        assert ours.is_activation_checkpointing and reference.is_activation_checkpointing
        for model in (reference, ours):  # consumed: a saved config does not turn it on again
            assert "gradient_checkpointing" not in model.config.to_dict()


@pytest.mark.parametrize("every_n_layers,offload", [(1, False), (2, True)])
def test_checkpointed_training_gives_transformers_gradients(every_n_layers, offload, tmp_path):
    reference, ours = model_pair(  # training mode, nothing random: no dropout, no SpecAugment
        "Wav2Vec2BertForCTC", tmp_path, num_hidden_layers=3, mask_time_prob=0.0, final_dropout=0.0,
        conformer_conv_dropout=0.0,
    )
    features, mask = random_batch([30, 22])
    labels = torch.tensor([[1, 2, 3], [4, 5, -100]])
    gradients = []
    # transformers' offload pins host memory, which a machine without an accelerator cannot (RuntimeError); where
    # to keep the saved tensors changes no number, so its run keeps them in place
    for model, offloaded in ((reference, False), (ours, offload)):
        model.train()
        model.activation_checkpointing_enable(every_n_layers=every_n_layers, offload=offloaded)
        model(features, attention_mask=mask, labels=labels).loss.backward()
        gradients.append({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    expected, actual = gradients
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=1e-4, msg=name)


def test_input_require_grads_lets_reentrant_checkpointing_train_adapters_of_a_frozen_encoder():
    """peft freezes the encoder and calls enable_input_require_grads before reentrant checkpointing: without it
    no block input requires gradients and the blocks' trainable parts get none (transformers' speech models have
    no input embeddings to hook; here the feature projection's output is hooked)."""
    import w2vbert
    from conftest import tiny_config_kwargs

    model = w2vbert.Wav2Vec2BertForCTC(w2vbert.Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0)))
    model.train()
    for parameter in model.parameters():
        parameter.requires_grad = False
    adapted = model.wav2vec2_bert.encoder.layers[0].self_attn.linear_q.weight  # a layer peft would adapt
    adapted.requires_grad = True
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    features, _ = random_batch([20])
    assert not model(features).logits.requires_grad  # the adapted layer's gradient has no path out
    model.enable_input_require_grads()
    model(features).logits.sum().backward()
    assert adapted.grad is not None and adapted.grad.abs().sum() > 0
    model.disable_input_require_grads()
    assert not model._require_grads_hooks


def test_attn_implementation_is_recorded_on_the_config_as_transformers_reports_it(tmp_path):
    import transformers

    import w2vbert

    reference, ours = model_pair("Wav2Vec2BertForCTC", tmp_path)
    assert ours.config._attn_implementation == reference.config._attn_implementation == "sdpa"
    for implementation in ("eager", "sdpa"):
        theirs = transformers.Wav2Vec2BertForCTC.from_pretrained(tmp_path, attn_implementation=implementation)
        loaded = w2vbert.Wav2Vec2BertForCTC.from_pretrained(tmp_path, attn_implementation=implementation)
        assert loaded.config._attn_implementation == theirs.config._attn_implementation == implementation
        ours.set_attn_implementation(implementation)
        assert ours.config._attn_implementation == implementation
    for unknown in ("flash_attention_2", "bogus"):
        with pytest.raises(ValueError) as theirs_error:
            transformers.Wav2Vec2BertForCTC.from_pretrained(tmp_path, attn_implementation=unknown)
        with pytest.raises(ValueError, match="attn_implementation must be 'sdpa' or 'eager'") as ours_error:
            w2vbert.Wav2Vec2BertForCTC.from_pretrained(tmp_path, attn_implementation=unknown)
        if unknown == "bogus":  # a name transformers does not know: its message opens as ours, which code may match
            opening = 'Specified `attn_implementation="bogus"` is not supported'
            assert str(theirs_error.value).startswith(opening) and str(ours_error.value).startswith(opening)
    assert w2vbert.Wav2Vec2BertForCTC._can_set_attn_implementation()  # what the Trainer and peft ask first


# ---------------------------------------------------------------------------------------------- loading
def test_from_pretrained_none_builds_from_config_and_state_dict_as_transformers(tmp_path):
    import transformers

    import w2vbert

    reference, ours = model_pair("Wav2Vec2BertForCTC", tmp_path)
    state_dict = {name: tensor.clone() for name, tensor in reference.state_dict().items()}
    theirs = transformers.Wav2Vec2BertForCTC.from_pretrained(None, config=reference.config, state_dict=state_dict)
    loaded = w2vbert.Wav2Vec2BertForCTC.from_pretrained(None, config=ours.config, state_dict=state_dict)
    assert not loaded.training and not theirs.training
    features, mask = random_batch([30, 22])
    with torch.no_grad():
        torch.testing.assert_close(loaded(features, attention_mask=mask).logits,
                                   theirs(features, attention_mask=mask).logits, atol=ATOL, rtol=0)
    with pytest.raises(ValueError):
        transformers.Wav2Vec2BertForCTC.from_pretrained(None, config=reference.config)
    with pytest.raises(ValueError, match="needs state_dict="):
        w2vbert.Wav2Vec2BertForCTC.from_pretrained(None, config=ours.config)
    with pytest.raises(OSError, match="pass config="):
        w2vbert.Wav2Vec2BertForCTC.from_pretrained(None, state_dict=state_dict)


def test_a_state_dict_and_a_checkpoint_at_once_are_refused_as_transformers_refuses_them(tmp_path):
    import transformers

    import w2vbert

    reference, _ = model_pair("Wav2Vec2BertModel", tmp_path)
    state_dict = reference.state_dict()
    with pytest.raises(ValueError):
        transformers.Wav2Vec2BertModel.from_pretrained(tmp_path, state_dict=state_dict)
    with pytest.raises(ValueError, match="state_dict cannot be passed together with a checkpoint"):
        w2vbert.Wav2Vec2BertModel.from_pretrained(tmp_path, state_dict=state_dict)


@pytest.mark.parametrize(
    "saved,loaded,overrides",
    [
        ("Wav2Vec2BertModel", "Wav2Vec2BertForCTC", {}),  # a base checkpoint into a head: the head is missing
        ("Wav2Vec2BertForCTC", "Wav2Vec2BertModel", {}),  # a head checkpoint into the base: the head is unexpected
        ("Wav2Vec2BertForCTC", "Wav2Vec2BertForCTC", {"vocab_size": 7, "ignore_mismatched_sizes": True}),
        ("Wav2Vec2BertForSequenceClassification", "Wav2Vec2BertForSequenceClassification", {}),
    ],
)
def test_output_loading_info_is_what_transformers_returns(saved, loaded, overrides, tmp_path):
    import transformers

    import w2vbert

    model_pair(saved, tmp_path)  # the checkpoint, saved by transformers
    _, expected = getattr(transformers, loaded).from_pretrained(tmp_path, output_loading_info=True, **overrides)
    _, actual = getattr(w2vbert, loaded).from_pretrained(tmp_path, output_loading_info=True, **overrides)
    assert actual == expected
    assert {type(value) for value in actual.values()} == {set, list}


def test_quantization_config_gets_a_clear_answer(tmp_path):
    import transformers

    import w2vbert

    model_pair("Wav2Vec2BertForCTC", tmp_path)
    eight_bit = transformers.BitsAndBytesConfig(load_in_8bit=True)
    if not torch.cuda.is_available():  # transformers needs bitsandbytes and a GPU for it; here int8 has its name
        with pytest.raises(RuntimeError, match="needs device='cuda'.*on CPU pass quantize='int8'"):
            w2vbert.Wav2Vec2BertForCTC.from_pretrained(tmp_path, quantization_config=eight_bit)
    with pytest.raises(ValueError, match=r"'load_in_4bit': True.*int8 only, with quantize='int8'"):
        w2vbert.Wav2Vec2BertForCTC.from_pretrained(
            tmp_path, quantization_config=transformers.BitsAndBytesConfig(load_in_4bit=True)
        )
    with pytest.raises(TypeError, match="BitsAndBytesConfig or its dict, got str"):
        w2vbert.Wav2Vec2BertForCTC.from_pretrained(tmp_path, quantization_config="int8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bitsandbytes' LLM.int8 needs a CUDA GPU")
def test_quantization_config_of_8_bits_loads_int8_on_cuda(tmp_path):
    import transformers

    import w2vbert
    from w2vbert.model.quantization import quantized_layer

    model_pair("Wav2Vec2BertForCTC", tmp_path)
    model = w2vbert.Wav2Vec2BertForCTC.from_pretrained(
        tmp_path, device="cuda", quantization_config=transformers.BitsAndBytesConfig(load_in_8bit=True)
    )
    assert quantized_layer(model) is not None


def test_load_model_from_none_builds_the_class_the_config_names(tmp_path):
    import w2vbert

    _, ours = model_pair("Wav2Vec2BertForCTC", tmp_path)
    ours.config.architectures = ["Wav2Vec2BertForCTC"]
    model = w2vbert.load_model(None, config=ours.config, state_dict=ours.state_dict())
    assert type(model) is w2vbert.Wav2Vec2BertForCTC
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ours.state_dict().values(), strict=True))


def test_returned_attentions_and_hidden_states_carry_the_gradient_of_the_output_as_in_transformers(tmp_path):
    reference, ours = model_pair("Wav2Vec2BertForCTC", tmp_path, mask_time_prob=0.0)
    features, _ = random_batch([20])
    for model in (reference, ours):
        model.train()
        model.config._attn_implementation = "eager"
        outputs = model(features, output_hidden_states=True, output_attentions=True)
        hidden_states, attentions = outputs.hidden_states[0], outputs.attentions[0]
        hidden_states.retain_grad()
        attentions.retain_grad()
        outputs.logits.flatten()[0].backward()
        assert hidden_states.grad is not None and attentions.grad is not None, type(model)


def test_a_model_built_on_meta_then_given_storage_initialises_with_init_weights():
    """transformers' way to build without memory, then make the weights real (`to_empty` + `init_weights`)."""
    import w2vbert
    from conftest import tiny_config_kwargs

    config = w2vbert.Wav2Vec2BertConfig(**tiny_config_kwargs())
    with torch.device("meta"):
        model = w2vbert.Wav2Vec2BertForCTC(config).eval()
    model.to_empty(device="cpu")
    model.init_weights()
    features, _ = random_batch([20])
    assert torch.isfinite(model(features).logits).all()
    built = w2vbert.Wav2Vec2BertForCTC._from_config(config, attn_implementation="eager", dtype=torch.float64)
    assert built.dtype == torch.float64 and built.config._attn_implementation == "eager"


def test_a_head_of_another_size_is_refused_with_the_exception_transformers_raises(tmp_path):
    import transformers

    import w2vbert

    model_pair("Wav2Vec2BertForSequenceClassification", tmp_path)  # 3 labels
    with pytest.raises(RuntimeError):
        transformers.Wav2Vec2BertForSequenceClassification.from_pretrained(tmp_path, num_labels=42)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes=True"):
        w2vbert.Wav2Vec2BertForSequenceClassification.from_pretrained(tmp_path, num_labels=42)


def test_loading_under_a_meta_device_is_refused_as_transformers_refuses_it(tmp_path):
    import transformers

    import w2vbert

    model_pair("Wav2Vec2BertModel", tmp_path)
    with torch.device("meta"):
        for library in (transformers, w2vbert):
            with pytest.raises(RuntimeError, match="You are using `from_pretrained` with a meta device context"):
                library.Wav2Vec2BertModel.from_pretrained(tmp_path)
