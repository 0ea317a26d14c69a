"""Behaviour of the model classes beyond transformers parity: batch invariance, bad input, embeddings,
outputs, memory, training features and the full-size configuration."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import w2vbert
from conftest import HEAD_CASES, case_id, random_batch, tiny_config_kwargs
from w2vbert.loading import devices
from w2vbert.model import attention, layers
from w2vbert.model import conformer as modeling

ATOL = 1e-5


def build(head: str = "Wav2Vec2BertModel", **overrides):
    torch.manual_seed(0)
    return getattr(w2vbert, head)(w2vbert.Wav2Vec2BertConfig(**tiny_config_kwargs(**overrides))).eval()


def main_output(output):
    return output.last_hidden_state if hasattr(output, "last_hidden_state") else output.logits


# ------------------------------------------------------------------------------------------ batch invariance
@pytest.mark.parametrize("head,position,adapter", HEAD_CASES, ids=[case_id(case) for case in HEAD_CASES])
@settings(max_examples=4, deadline=None)
@given(lengths=st.lists(st.integers(min_value=20, max_value=48), min_size=2, max_size=4))
def test_clip_output_is_the_same_alone_and_in_a_padded_batch(head, position, adapter, lengths):
    adapter_options = dict(add_adapter=True, num_adapter_layers=2) if adapter else {}
    model = build(head, position_embeddings_type=position, use_weighted_layer_sum=head != "Wav2Vec2BertForCTC",
                  **adapter_options)
    features, mask = random_batch(lengths, seed=len(lengths))
    with torch.no_grad():
        batched = main_output(model(features, attention_mask=mask))
        for row, length in enumerate(lengths):
            alone = main_output(model(features[row : row + 1, :length]))[0]
            got = batched[row, : alone.shape[0]] if batched.ndim == 3 else batched[row]
            torch.testing.assert_close(got, alone, atol=ATOL, rtol=0)


def test_adapter_output_mask_marks_each_clips_frames():
    model = build(add_adapter=True, num_adapter_layers=2)
    features, mask = random_batch([40, 21, 7])
    with torch.no_grad():
        out = model(features, attention_mask=mask).last_hidden_state
    output_mask = model.get_feature_vector_attention_mask(out.shape[1], mask)
    assert output_mask.sum(-1).tolist() == [10, 6, 2]  # 40 -> 20 -> 10, 21 -> 11 -> 6, 7 -> 4 -> 2
    assert output_mask.dtype == torch.bool


# ------------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "features,message",
    [
        (torch.randn(20, 160), "add the batch dimension"),
        (torch.randn(1, 20, 80), "80-bin fbank before stacking"),
        (torch.randn(16000), "not raw audio"),
        (torch.randn(1, 0, 160), "empty"),
        (torch.randint(0, 3, (1, 20, 160)), "floating point"),
    ],
)
def test_malformed_input_features_raise_naming_expected_shape(features, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()(features)


def test_nan_or_inf_features_are_rejected_with_the_row():
    features = torch.randn(3, 20, 160)
    features[1, 5, 7] = float("nan")
    features[2, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"NaN or inf.*\[1, 2\]"):
        build()(features)


@pytest.mark.parametrize(
    "mask,message",
    [
        (torch.ones(2, 19), r"shape \(batch, frames\) = \(2, 20\)"),
        (torch.ones(20), r"shape \(batch, frames\)"),
        (torch.tensor([[1] * 20, [0] * 20]), r"rows \[1\] are all padding"),
        (torch.full((2, 20), 2), "only 0/1"),
    ],
)
def test_bad_attention_masks_raise_clear_errors(mask, message):
    with pytest.raises(ValueError, match=message):
        build()(torch.randn(2, 20, 160), attention_mask=mask)


def test_clip_too_short_for_the_adapter_is_rejected():
    model = build(add_adapter=True, adapter_kernel_size=5, adapter_stride=2, num_adapter_layers=2)
    with pytest.raises(ValueError, match="too short for the adapter"):
        model(torch.randn(1, 2, 160))


def test_ctc_head_needs_a_vocabulary_and_valid_labels():
    with pytest.raises(ValueError, match="vocab_size"):
        build("Wav2Vec2BertForCTC", vocab_size=None)
    model = build("Wav2Vec2BertForCTC")
    with pytest.raises(ValueError, match="< vocab_size=11"):
        model(torch.randn(1, 20, 160), labels=torch.tensor([[3, 11]]))
    with pytest.raises(ValueError, match=r"shape \(batch=1"):
        model(torch.randn(1, 20, 160), labels=torch.tensor([3, 4]))


def test_classification_heads_reject_the_adapter_like_transformers():
    with pytest.raises(ValueError, match="adapter"):
        build("Wav2Vec2BertForSequenceClassification", add_adapter=True)


def test_xvector_rejects_clips_too_short_for_its_statistics():
    with pytest.raises(ValueError, match="too short for the x-vector"):
        build("Wav2Vec2BertForXVector")(torch.randn(1, 6, 160))


# ----------------------------------------------------------------------------------------------- embeddings
@pytest.mark.parametrize("layer", [0, 1, 2, -1, -3])
def test_embed_returns_the_hidden_state_of_that_layer(layer):
    model = build(num_hidden_layers=3)
    features, mask = random_batch([30, 22])
    with torch.no_grad():
        expected = model(features, attention_mask=mask, output_hidden_states=True).hidden_states[layer]
    embedding = model.embed(features, attention_mask=mask, layer=layer)
    valid = mask.bool()
    torch.testing.assert_close(embedding.hidden_state[valid], expected[valid], atol=ATOL, rtol=0)
    assert torch.equal(embedding.attention_mask, valid)


def test_embed_does_not_run_the_blocks_above_the_layer():
    model = build(num_hidden_layers=4)
    calls = []
    for index, block in enumerate(model.encoder.layers):
        block.register_forward_hook(lambda *_, index=index: calls.append(index))
    model.embed(torch.randn(1, 20, 160), layer=2)
    assert calls == [0, 1]


def test_embed_rejects_a_layer_outside_the_model():
    with pytest.raises(ValueError, match="layer must be in"):
        build().embed(torch.randn(1, 10, 160), layer=3)


# ------------------------------------------------------------------------------------------------- outputs
def test_outputs_index_by_name_position_and_as_tuples():
    model = build("Wav2Vec2BertForCTC")
    features = torch.randn(1, 20, 160)
    labels = torch.tensor([[1, 2]])
    out = model(features, labels=labels)
    assert out["logits"] is out.logits and out[0] is out.loss and out[1] is out.logits
    loss, logits = out[:2]
    assert logits.shape == (1, 20, 11) and list(out.keys()) == ["loss", "logits"]
    as_tuple = model(features, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    torch.testing.assert_close(as_tuple[1], logits)
    with pytest.raises(KeyError, match="hidden_states"):
        out["hidden_states"]


def test_eager_and_sdpa_attention_agree():
    model = build()
    features, mask = random_batch([30, 18])
    with torch.no_grad():
        fused = model(features, attention_mask=mask).last_hidden_state
        model.set_attn_implementation("eager")
        explicit = model(features, attention_mask=mask).last_hidden_state
    valid = mask.bool()
    torch.testing.assert_close(fused[valid], explicit[valid], atol=ATOL, rtol=0)


@pytest.mark.parametrize("position", ["relative_key", "relative"])
def test_attention_in_query_chunks_equals_one_chunk(position, monkeypatch):
    model = build(position_embeddings_type=position)
    features, mask = random_batch([37, 25])
    with torch.no_grad():
        whole = model(features, attention_mask=mask).last_hidden_state
        monkeypatch.setattr(attention, "ATTENTION_CHUNK_ELEMENTS", 2 * 4 * 37 * 5)  # 5 query rows per chunk
        chunked = model(features, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(chunked, whole, atol=ATOL, rtol=0)


@settings(max_examples=30, deadline=None)
@given(
    left=st.integers(1, 9), right=st.integers(0, 6), rows=st.integers(1, 12),
    lengths=st.lists(st.integers(1, 70), min_size=1, max_size=3), dtype=st.sampled_from(["float32", "bfloat16"]),
)
def test_shaw_attention_by_key_regions_equals_the_bias_path(left, right, rows, lengths, dtype):
    """Splitting the keys into the far-left / band / far-right regions (long CPU clips) changes no output: any
    clamp range, chunk size, clip lengths and padding, including chunks whose band reaches either end."""
    config = w2vbert.Wav2Vec2BertConfig(**tiny_config_kwargs(
        left_max_position_embeddings=left, right_max_position_embeddings=right))
    torch.manual_seed(len(lengths) + rows)
    module = modeling.Wav2Vec2BertSelfAttention(config).eval().to(getattr(torch, dtype))
    heads, size, frames = module.num_heads, module.head_size, max(lengths)
    query, key, value = (torch.randn(len(lengths), heads, frames, size).to(module.linear_q.weight.dtype)
                         for _ in range(3))
    valid = torch.arange(frames)[None] < torch.tensor(lengths)[:, None]
    position = attention.ShawPosition(module.distance_embedding.weight * 3, left)  # larger than initialised
    options = dict(position=position, valid=valid, scale=module.scaling, rows=rows)
    outputs = {}
    with torch.no_grad():
        outputs[False], _ = attention.attend_in_chunks(query, key, value, **options)
        outputs[True] = attention.attend_by_regions(query, key, value, **options)
        if dtype == "bfloat16":  # the same inputs in float32: what both bf16 paths are measured against
            exact = dict(options, position=attention.ShawPosition(position.table.float(), left))
            outputs["float32"], _ = attention.attend_in_chunks(query.float(), key.float(), value.float(), **exact)
    real = valid[:, None].expand(-1, heads, -1)
    if dtype == "float32":
        torch.testing.assert_close(outputs[True][real], outputs[False][real], atol=ATOL, rtol=0)
        return
    # bf16 keeps 8 bits of mantissa and the paths round at different points (the bias path's softmax reads bf16
    # scores, the regions path merges its parts in float32), so each is held to the float32 result of the same
    # inputs, within 4 bf16 ulps of an output of 2-4 plus 2^-6 relative: over 150 random draws of this test the
    # worst excess over the relative part was 0.048 (regions), 0.050 (bias path) and 0.046 for the fused kernel
    # the bias path used in bf16 before.
    for regions in (True, False):
        torch.testing.assert_close(outputs[regions][real].float(), outputs["float32"][real], atol=2**-4, rtol=2**-6)


def test_shaw_attention_memory_grows_linearly_not_with_frames_squared_times_head_dim():
    """120 s of audio (6000 steps) through one Shaw block of 16 heads, on the bias path (the key-regions path
    switched off): transformers builds a 6000 x 6000 x head_dim tensor (9 GB in fp32 for the real model), and even
    one unchunked (16, 6000, 6000) bias is 2.3 GB. Here the peak must stay a small multiple of the per-chunk bias
    (under 128 MB), which only holds while the bias is built chunk by chunk."""
    script = textwrap.dedent(
        r"""
        import re, torch, w2vbert, w2vbert.model.attention
        w2vbert.model.attention.FLASH_CPU = None  # no key regions: every chunk builds its (16, rows, 6000) bias
        config = w2vbert.Wav2Vec2BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=16,
                                            intermediate_size=64)
        model = w2vbert.Wav2Vec2BertModel(config).eval()
        with torch.no_grad():
            model(torch.randn(1, 6000, 160))
        # VmHWM: this process's own peak since exec (ru_maxrss would start from pytest's RSS at the fork)
        print(int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1)) // 1024)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    peak_mb = int(result.stdout.strip().splitlines()[-1])
    assert peak_mb < 1500, f"peak RSS {peak_mb} MB for 6000 frames"


# ------------------------------------------------------------------------------------------------ training
def test_spec_augment_masks_time_steps_only_in_training():
    model = build(mask_time_prob=0.5, mask_time_length=2, mask_time_min_masks=1)
    features = torch.randn(2, 30, 160)
    with torch.no_grad():
        eval_out = model(features).last_hidden_state
        assert torch.equal(eval_out, model(features).last_hidden_state)
        model.train()
        torch.manual_seed(1)
        train_out = model(features).last_hidden_state
    assert not torch.allclose(train_out, eval_out)


def test_given_mask_time_indices_replace_frames_with_the_learned_embedding():
    model = build()
    features = torch.randn(1, 12, 160)
    indices = torch.zeros(1, 12, dtype=torch.bool)
    indices[0, 3:6] = True
    out = model(features, mask_time_indices=indices, output_hidden_states=True)
    first_block_input = out.hidden_states[0]
    torch.testing.assert_close(first_block_input[0, 4], model.masked_spec_embed.detach().expand(32))


def test_compute_mask_indices_respects_lengths_and_span_length():
    from w2vbert.model.spec_augment import compute_mask_indices

    generator = torch.Generator().manual_seed(0)
    mask = compute_mask_indices((3, 100), 0.3, 5, torch.tensor([100, 50, 5]), min_masks=1, generator=generator)
    assert mask.shape == (3, 100) and mask.dtype == torch.bool
    assert not mask[1, 50:].any() and not mask[2, 5:].any()
    assert mask[2, :5].all()  # a 5-frame clip with min_masks=1 gets exactly its one possible span
    assert 10 <= int(mask[0].sum()) <= 35


def test_layerdrop_skips_blocks_in_training_but_keeps_hidden_state_count():
    model = build(layerdrop=1.0, num_hidden_layers=3).train()
    out = model(torch.randn(1, 10, 160), output_hidden_states=True)
    assert len(out.hidden_states) == 4
    torch.testing.assert_close(out.last_hidden_state, out.hidden_states[0])  # every block skipped


def test_gradient_checkpointing_gives_the_same_gradients():
    model = build("Wav2Vec2BertForCTC", layerdrop=0.0, mask_time_prob=0.0).train()
    features, mask = random_batch([30, 20])
    labels = torch.tensor([[1, 2, 3], [4, 5, -100]])

    def gradients():
        torch.manual_seed(0)  # the same dropout masks in both runs; recomputation must replay them
        model.zero_grad()
        model(features, attention_mask=mask, labels=labels).loss.backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = gradients()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed = gradients()
    for a, b in zip(plain, checkpointed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_freeze_base_model_leaves_only_the_head_trainable():
    model = build("Wav2Vec2BertForSequenceClassification")
    model.freeze_base_model()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"projector.weight", "projector.bias", "classifier.weight", "classifier.bias"}


# ----------------------------------------------------------------------------------------------- full size
@pytest.mark.slow
def test_full_size_w2v_bert_2_0_has_580_493_120_parameters_and_runs_on_cpu():
    config = w2vbert.Wav2Vec2BertConfig()  # the defaults are facebook/w2v-bert-2.0
    with torch.device("meta"):
        assert w2vbert.Wav2Vec2BertModel(config).num_parameters() == 580_493_120  # from the issue / model card
    model = w2vbert.Wav2Vec2BertModel(config).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 50, 160)).last_hidden_state  # one second of audio
    assert out.shape == (1, 50, 1024) and torch.isfinite(out).all()


def test_inputs_of_the_wrong_kind_are_refused_by_name():
    model = build()
    features, mask = random_batch([20, 12])
    with pytest.raises(TypeError, match=r"input_features are torch.float64 but the model computes in torch.float32"):
        model(features.double(), attention_mask=mask)
    with pytest.raises(TypeError, match=r"attention_mask must be a torch.Tensor .*got ndarray"):
        model(features, attention_mask=mask.numpy())
    with pytest.raises(TypeError, match=r"attention_mask must be a torch.Tensor .*got list"):
        model(features, attention_mask=mask.tolist())
    model.to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"are torch.float32 but the model computes in torch.bfloat16.*\.to\(model"):
        model(features, attention_mask=mask)


@pytest.mark.parametrize("head", ["Wav2Vec2BertForSequenceClassification", "Wav2Vec2BertForXVector"])
def test_class_labels_out_of_range_or_of_the_wrong_kind_are_refused(head):
    model = build(head)
    features, _ = random_batch([30, 30])
    for labels, error, message in [
        (torch.tensor([0, 3]), ValueError, r"class ids must be in \[0, 3\) \(num_labels=3\), got \[0, 3\]"),
        (torch.tensor([-1, 0]), ValueError, r"class ids must be in \[0, 3\)"),
        (torch.tensor([0]), ValueError, r"one class id per clip, shape \(2,\), got \(1,\)"),
        ([0, 1], TypeError, "labels must be a tensor of integer ids, got list"),
        (torch.tensor([0.0, 1.0]), TypeError, "labels must be a tensor of integer ids, got torch.float32"),
    ]:
        with pytest.raises(error, match=message):
            model(features, labels=labels)
    assert model(features, labels=torch.tensor([2, 0])).loss.isfinite()


def test_ctc_and_frame_labels_of_the_wrong_kind_are_refused():
    ctc, frames = build("Wav2Vec2BertForCTC"), build("Wav2Vec2BertForAudioFrameClassification")
    features, _ = random_batch([30, 30])
    with pytest.raises(TypeError, match="labels must be a tensor of integer ids, got list"):
        ctc(features, labels=[[1, 2], [3, 4]])
    with pytest.raises(ValueError, match=r"one-hot per frame, shape \(batch, frames, num_labels\) = \(2, 30, 3\), "
                                         r"or class ids per frame \(2, 30\)"):
        frames(features, labels=torch.zeros(2, 29, dtype=torch.long))
    with pytest.raises(TypeError, match=r"\(batch, frames, num_labels\) tensor, got list"):
        frames(features, labels=[[0] * 30] * 2)


@pytest.mark.skipif(not devices.native(torch.device("cpu"), torch.bfloat16), reason="needs native CPU bf16")
def test_bf16_feed_forward_fuses_its_silu_and_rounds_once():
    """bf16 CPU inference runs the feed-forward's first matmul with its SiLU fused (one rounding of the float32
    accumulators): it agrees with float32 at least as well as the two calls do, and training keeps them apart."""
    config = w2vbert.Wav2Vec2BertConfig(**tiny_config_kwargs())
    torch.manual_seed(0)
    block = modeling.Wav2Vec2BertFeedForward(config).eval()
    hidden = torch.randn(2, 40, config.hidden_size)
    with torch.no_grad():
        exact = block.intermediate_act_fn(block.intermediate_dense(hidden))
        block.to(torch.bfloat16)
        fused = layers.linear_then_activation(block.intermediate_dense, block.intermediate_act_fn,
                                              hidden.to(torch.bfloat16))
        two_calls = block.intermediate_act_fn(block.intermediate_dense(hidden.to(torch.bfloat16)))
    assert fused.dtype == torch.bfloat16 and fused.shape == exact.shape
    assert (fused.float() - exact).abs().max() <= (two_calls.float() - exact).abs().max()
    assert (fused.float() - exact).abs().mean() < (two_calls.float() - exact).abs().mean()
    seen = []  # a hook on the activation (feature extraction, offloading) is a reason to keep the two calls
    handle = block.intermediate_act_fn.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    with torch.no_grad():
        hooked = layers.linear_then_activation(block.intermediate_dense, block.intermediate_act_fn,
                                               hidden.to(torch.bfloat16))
    handle.remove()
    assert seen == [hooked.shape] and torch.equal(hooked, two_calls)
    block.train()
    trained = layers.linear_then_activation(block.intermediate_dense, block.intermediate_act_fn,
                                            hidden.to(torch.bfloat16))
    assert trained.grad_fn is not None and "Silu" in type(trained.grad_fn).__name__
