"""The model classes behave as transformers' do where code written against transformers reads them: the output flags
a config sets, any 0/1 attention mask, the gradient-checkpointing and parameter-count API the Trainer and peft call.

The oracle is transformers' class of the same name, built from the same checkpoint (conftest.model_pair) or the
same config, in the same test.
"""

from __future__ import annotations

import pytest
import torch

from conftest import HEADS, model_pair, random_batch

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
