"""The model classes behave as transformers' do where code written against transformers reads them: the output flags
a config sets, any 0/1 attention mask, the gradient-checkpointing and parameter-count API the Trainer and peft call.

The oracle is transformers' class of the same name, built from the same checkpoint (conftest.model_pair) or the
same config, in the same test.
"""

from __future__ import annotations

import functools
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
