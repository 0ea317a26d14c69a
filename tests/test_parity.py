"""Same numbers as transformers: every position type, with and without adapter, every head, padded batches.

The oracle is transformers' own classes loaded from the same checkpoint (fp32, 1e-5 absolute). Where the
adapter makes transformers' padded-batch output depend on padding (its adapter convolutions read padded
frames), the batch is compared with transformers run on each clip alone.
"""

from __future__ import annotations

import pytest
import torch

import w2vbert
from conftest import HEAD_CASES, HEADS, POSITION_TYPES, case_id, model_pair, random_batch

ATOL = 1e-5
LENGTHS = [41, 34, 29]

def adapter_kwargs(adapter: bool, head: str = "") -> dict:
    if not adapter:
        return {}
    # transformers' x-vector head only works when the adapter keeps the width.
    width = None if head == "Wav2Vec2BertForXVector" else 40
    return dict(
        add_adapter=True, num_adapter_layers=2, output_hidden_size=width, use_intermediate_ffn_before_adapter=True
    )


def main_output(output) -> torch.Tensor:
    return output.last_hidden_state if hasattr(output, "last_hidden_state") else output.logits


def frame_level(head: str) -> bool:
    return head in ("Wav2Vec2BertModel", "Wav2Vec2BertForCTC", "Wav2Vec2BertForAudioFrameClassification")


def valid_frames(model, mask: torch.Tensor, row: int, frames: int) -> int:
    return int(model.get_feat_extract_output_lengths(mask[row].sum()))


@pytest.mark.parametrize("case", HEAD_CASES, ids=case_id)
def test_single_clip_matches_transformers(case, tmp_path):
    head, position, adapter = case
    reference, ours = model_pair(head, tmp_path, position_embeddings_type=position, **adapter_kwargs(adapter, head))
    features, _ = random_batch([29])
    with torch.no_grad():
        expected, actual = reference(features), ours(features)
    torch.testing.assert_close(main_output(actual), main_output(expected), atol=ATOL, rtol=0)
    if head == "Wav2Vec2BertForXVector":
        torch.testing.assert_close(actual.embeddings, expected.embeddings, atol=ATOL, rtol=0)
    assert main_output(actual).abs().max() > 1e-3  # a real signal, not two zero tensors agreeing


@pytest.mark.parametrize("case", HEAD_CASES, ids=case_id)
def test_padded_batch_matches_transformers_per_clip(case, tmp_path):
    head, position, adapter = case
    reference, ours = model_pair(head, tmp_path, position_embeddings_type=position, **adapter_kwargs(adapter, head))
    features, mask = random_batch(LENGTHS)
    with torch.no_grad():
        batched = main_output(ours(features, attention_mask=mask))
        for row, length in enumerate(LENGTHS):
            alone = main_output(reference(features[row : row + 1, :length]))[0]
            if frame_level(head):
                n = valid_frames(ours, mask, row, batched.shape[1])
                assert alone.shape[0] == n
                torch.testing.assert_close(batched[row, :n], alone, atol=ATOL, rtol=0)
            else:
                torch.testing.assert_close(batched[row], alone, atol=ATOL, rtol=0)


NO_ADAPTER_BATCH_HEADS = [h for h in HEADS if h != "Wav2Vec2BertForXVector"]


@pytest.mark.parametrize("position", POSITION_TYPES)
@pytest.mark.parametrize("head", NO_ADAPTER_BATCH_HEADS)
def test_padded_batch_matches_transformers_batched(head, position, tmp_path):
    """Without the adapter transformers is padding-independent too, so batches compare directly."""
    reference, ours = model_pair(head, tmp_path, position_embeddings_type=position)
    features, mask = random_batch(LENGTHS)
    with torch.no_grad():
        expected = main_output(reference(features, attention_mask=mask))
        actual = main_output(ours(features, attention_mask=mask))
    if frame_level(head):
        valid = mask.bool()
        torch.testing.assert_close(actual[valid], expected[valid], atol=ATOL, rtol=0)
    else:
        torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("position", POSITION_TYPES)
def test_padded_batch_on_cuda_matches_transformers_on_cuda(position, tmp_path, monkeypatch):
    """The GPU path (SDPA kernels with the position bias and padding mask) against transformers on the same GPU."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # exact fp32 convolutions on both sides
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    reference, ours = model_pair("Wav2Vec2BertModel", tmp_path, position_embeddings_type=position)
    reference, ours = reference.cuda(), ours.cuda()
    features, mask = random_batch(LENGTHS)
    with torch.no_grad():
        expected = reference(features.cuda(), attention_mask=mask.cuda()).last_hidden_state
        actual = ours(features.cuda(), attention_mask=mask.cuda()).last_hidden_state
    valid = mask.bool().cuda()
    torch.testing.assert_close(actual[valid], expected[valid], atol=1e-4, rtol=0)  # GPU kernels sum in other orders


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_loss_matches_transformers(reduction, zero_infinity, tmp_path):
    reference, ours = model_pair(
        "Wav2Vec2BertForCTC", tmp_path, ctc_loss_reduction=reduction, ctc_zero_infinity=zero_infinity
    )
    features, mask = random_batch(LENGTHS)
    # Row 2 has 29 frames but 20 repeats of one label, which need 39: infinite loss unless zero_infinity.
    labels = torch.tensor([[1, 2, 3, 3, 4] + [-100] * 15, [5, 6, 7] + [-100] * 17, [2] * 20])
    with torch.no_grad():
        expected = reference(features, attention_mask=mask, labels=labels).loss
        actual = ours(features, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=1e-6, equal_nan=True)
    assert torch.isfinite(actual).all() == zero_infinity


def test_ctc_loss_with_adapter_matches_transformers_per_clip(tmp_path):
    reference, ours = model_pair("Wav2Vec2BertForCTC", tmp_path, **adapter_kwargs(True), ctc_loss_reduction="sum")
    features, mask = random_batch([31, 26])
    labels = torch.tensor([[1, 2, 3], [4, 5, -100]])
    with torch.no_grad():
        actual = ours(features, attention_mask=mask, labels=labels).loss
        expected = sum(
            reference(features[i : i + 1, :n], labels=labels[i : i + 1]).loss for i, n in enumerate([31, 26])
        )
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=1e-6)


@pytest.mark.parametrize("head", ["Wav2Vec2BertForSequenceClassification", "Wav2Vec2BertForAudioFrameClassification"])
@pytest.mark.parametrize("weighted", [False, True])
def test_classification_losses_match_transformers(head, weighted, tmp_path):
    reference, ours = model_pair(head, tmp_path, use_weighted_layer_sum=weighted)
    features, mask = random_batch(LENGTHS)
    if head == "Wav2Vec2BertForSequenceClassification":
        labels = torch.tensor([0, 2, 1])
    else:
        labels = torch.nn.functional.one_hot(torch.randint(0, 3, (3, features.shape[1])), 3)
    with torch.no_grad():
        expected = reference(features, attention_mask=mask, labels=labels)
        actual = ours(features, attention_mask=mask, labels=labels)
    torch.testing.assert_close(actual.loss, expected.loss, atol=ATOL, rtol=1e-6)
    torch.testing.assert_close(actual.logits, expected.logits, atol=ATOL, rtol=0) if not frame_level(head) else None


def test_xvector_loss_matches_transformers(tmp_path):
    reference, ours = model_pair("Wav2Vec2BertForXVector", tmp_path, use_weighted_layer_sum=True)
    features, _ = random_batch([30, 30])
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        expected = reference(features, labels=labels)
        actual = ours(features, labels=labels)
    torch.testing.assert_close(actual.loss, expected.loss, atol=ATOL, rtol=1e-6)
    torch.testing.assert_close(actual.embeddings, expected.embeddings, atol=ATOL, rtol=0)


@pytest.mark.parametrize("position", POSITION_TYPES)
def test_hidden_states_and_attentions_match_transformers_eager(position, tmp_path):
    reference, ours = model_pair(
        "Wav2Vec2BertModel", tmp_path, position_embeddings_type=position, attn_implementation="eager"
    )
    reference.config._attn_implementation = "eager"
    features, mask = random_batch(LENGTHS)
    with torch.no_grad():
        expected = reference(features, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        actual = ours(features, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert len(actual.hidden_states) == len(expected.hidden_states) == 3
    valid = mask.bool()
    for mine, theirs in zip(actual.hidden_states, expected.hidden_states, strict=True):
        torch.testing.assert_close(mine[valid], theirs[valid], atol=ATOL, rtol=0)
    torch.testing.assert_close(actual.extract_features, expected.extract_features, atol=ATOL, rtol=0)
    for mine, theirs in zip(actual.attentions, expected.attentions, strict=True):
        # Rows of padded queries are arbitrary in both; compare the real ones.
        torch.testing.assert_close(mine.transpose(1, 2)[valid], theirs.transpose(1, 2)[valid], atol=ATOL, rtol=0)


@pytest.mark.parametrize("head", HEADS)
def test_checkpoints_load_both_ways_without_missing_or_unexpected_keys(head, tmp_path):
    import transformers

    reference, ours = model_pair(head, tmp_path / "hf", position_embeddings_type="relative")
    _, info = getattr(w2vbert, head).from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert info == {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
    ours.save_pretrained(tmp_path / "ours")
    back, hf_info = getattr(transformers, head).from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not hf_info["missing_keys"] and not hf_info["unexpected_keys"] and not hf_info["mismatched_keys"]
    features, _ = random_batch([15])
    with torch.no_grad():
        torch.testing.assert_close(main_output(back.eval()(features)), main_output(ours(features)), atol=ATOL, rtol=0)


@pytest.mark.parametrize("chunk_elements", [2**25, 3000])  # one chunk of query rows, or several
@pytest.mark.parametrize("position", ["relative_key", "relative"])
def test_gradients_match_transformers(position, chunk_elements, tmp_path, monkeypatch):
    """Fine-tuning relies on the backward too: the strided position-bias views must pass gradients right."""
    import w2vbert.model.attention

    monkeypatch.setattr(w2vbert.model.attention, "ATTENTION_CHUNK_ELEMENTS", chunk_elements)
    reference, ours = model_pair("Wav2Vec2BertModel", tmp_path, position_embeddings_type=position)
    features, mask = random_batch(LENGTHS)
    for model in (reference, ours):
        output = model(features, attention_mask=mask).last_hidden_state
        (output * mask[..., None]).pow(2).mean().backward()
    expected = dict(reference.named_parameters())
    for name, parameter in ours.named_parameters():
        if parameter.grad is not None:
            torch.testing.assert_close(parameter.grad, expected[name].grad, atol=1e-5, rtol=1e-4, msg=name)
    if position == "relative_key":  # the distance table itself learns
        assert ours.encoder.layers[0].self_attn.distance_embedding.weight.grad.abs().max() > 0


@pytest.mark.parametrize("lengths", [[90], [90, 71, 40]])  # one clip; a padded batch
def test_long_clip_shaw_attention_by_key_regions_matches_transformers(lengths, tmp_path, monkeypatch):
    """Long clips on CPU split the keys into the two far regions (plain attention over shifted keys) and the band
    of clamped distances; small chunks here make a 90-frame clip take that path, which must equal the bias path."""
    import w2vbert.model.attention

    monkeypatch.setattr(w2vbert.model.attention, "ATTENTION_CHUNK_ROWS_CPU", 8)  # regions from 2 * (8 + 10) frames on
    calls = []
    by_regions = w2vbert.model.attention.attend_by_regions
    monkeypatch.setattr(w2vbert.model.attention, "attend_by_regions",
                        lambda *args, **options: calls.append(1) or by_regions(*args, **options))
    reference, ours = model_pair("Wav2Vec2BertModel", tmp_path, position_embeddings_type="relative_key")
    features, mask = random_batch(lengths)
    with torch.no_grad():
        expected = reference(features, attention_mask=mask).last_hidden_state
        output = ours(features, attention_mask=mask).last_hidden_state
    assert calls, "the key-regions path was not taken"
    valid = mask.bool()
    torch.testing.assert_close(output[valid], expected[valid], atol=ATOL, rtol=0)


@pytest.mark.parametrize("padding_value", [1.0, 0.0])  # W2v-BERT 2.0's preprocessor config, and transformers' default
def test_adapter_model_gives_transformers_numbers_alone_for_odd_and_even_clips_and_the_same_in_a_batch(
    tmp_path, padding_value
):
    """A clip of an odd number of 10 ms frames ends in a half-padded step, which transformers' adapter reads when
    the clip is alone (the case of every single-clip call): processor + model must give its numbers, and the
    clip inside any padded batch the same."""
    import transformers

    from w2vbert import SeamlessM4TFeatureExtractor, load_audio

    reference, ours = model_pair("Wav2Vec2BertForCTC", tmp_path, **adapter_kwargs(True))
    speech = load_audio("tests/data/quick.wav")
    # 400 + 160 (frames - 1) samples make `frames` fbank frames: odd, even, odd, even.
    clips = [speech[: 400 + 160 * (frames - 1)] for frames in (41, 46, 57, 60)]
    theirs_fe = transformers.SeamlessM4TFeatureExtractor(padding_value=padding_value)
    ours_fe = SeamlessM4TFeatureExtractor(padding_value=padding_value)
    alone = []
    with torch.no_grad():
        for clip in clips:
            expected = reference(**theirs_fe(clip, sampling_rate=16000, return_tensors="pt")).logits
            actual = ours(**ours_fe(clip, sampling_rate=16000, return_tensors="pt")).logits
            torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)
            alone.append(actual[0])
        batch = ours_fe(clips, sampling_rate=16000, return_tensors="pt")
        batched = ours(**batch).logits
    for row, expected in enumerate(alone):
        n = int(ours.get_feat_extract_output_lengths(batch["attention_mask"][row].sum()))
        torch.testing.assert_close(batched[row, :n], expected[:n], atol=ATOL, rtol=0)
