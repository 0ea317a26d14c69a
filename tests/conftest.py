"""Shared test helpers: tiny random configs, and model pairs (transformers, w2vbert) with the same weights."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from hypothesis import settings

# CI runs the same examples every time (no random draw may turn it red, and no failure stored by an earlier run
# replays); locally hypothesis explores afresh on each run. `.ci/run` sets CI=1.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the network
logging.getLogger("transformers").setLevel(logging.ERROR)

HEADS = [
    "Wav2Vec2BertModel",
    "Wav2Vec2BertForCTC",
    "Wav2Vec2BertForSequenceClassification",
    "Wav2Vec2BertForAudioFrameClassification",
    "Wav2Vec2BertForXVector",
]
POSITION_TYPES = ["relative_key", None, "relative", "rotary"]


def tiny_config_kwargs(**overrides) -> dict:
    """A few-thousand-parameter config that still exercises every code path (odd kernel, clamped distances)."""
    kwargs = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        conv_depthwise_kernel_size=5, left_max_position_embeddings=6, right_max_position_embeddings=3,
        vocab_size=11, num_labels=3, classifier_proj_size=24, tdnn_dim=(16, 16, 20), tdnn_kernel=(3, 3, 1),
        tdnn_dilation=(1, 2, 1), xvector_output_dim=12, layerdrop=0.0,
    )
    kwargs.update(overrides)
    return kwargs


def head_supports_adapter(head: str) -> bool:
    return head not in ("Wav2Vec2BertForSequenceClassification", "Wav2Vec2BertForAudioFrameClassification",
                        "Wav2Vec2BertForPreTraining")


# Every (head, position type, adapter on/off) the model family allows: transformers' classification heads
# refuse the adapter.
HEAD_CASES = [
    (head, position, adapter)
    for head in HEADS
    for position in POSITION_TYPES
    for adapter in (False, True)
    if head_supports_adapter(head) or not adapter
]


def case_id(case) -> str:
    head, position, adapter = case
    return f"{head.removeprefix('Wav2Vec2Bert')}-{position}-{'adapter' if adapter else 'plain'}"


def model_pair(head: str, tmp_path, **overrides):
    """(transformers model, w2vbert model) of class `head`, the second loaded from the first's checkpoint."""
    import transformers

    import w2vbert

    torch.manual_seed(0)
    reference = getattr(transformers, head)(transformers.Wav2Vec2BertConfig(**tiny_config_kwargs(**overrides)))
    with torch.no_grad():  # make biases and norms non-trivial so that a wrong wiring shows
        for name, parameter in reference.named_parameters():
            if name.endswith("bias") or "layer_norm" in name or "pos_bias" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    reference.eval()
    reference.save_pretrained(tmp_path)
    ours = getattr(w2vbert, head).from_pretrained(tmp_path)
    return reference, ours


def random_batch(lengths: list[int], dim: int = 160, seed: int = 0):
    """Right-padded features (B, max(lengths), dim) and the matching 0/1 attention mask."""
    generator = torch.Generator().manual_seed(seed)
    frames = max(lengths)
    features = torch.randn(len(lengths), frames, dim, generator=generator)
    mask = (torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]).long()
    features = features * mask[..., None]  # padding value is irrelevant, but keep it tidy
    return features, mask


@pytest.fixture
def tiny_kwargs():
    return tiny_config_kwargs()


@pytest.fixture(params=[0o022, 0o077])
def umask(request):
    """The process's umask set for one test (and put back): written files must get 0o666 less it, as `open()`
    gives."""
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def assert_same_outputs(ours, theirs):
    """The same keys, each the same kind (tensor, array or list), dtype, shape and values (exactly), and the
    same attribute access: what code written against transformers' processors reads."""
    import numpy as np

    assert sorted(ours.keys()) == sorted(theirs.keys())
    for key in theirs.keys():
        a, b = ours[key], theirs[key]
        assert type(a) is type(b), (key, type(a), type(b))
        if isinstance(b, (torch.Tensor, np.ndarray)):
            assert a.dtype == b.dtype and a.shape == b.shape, (key, a.dtype, b.dtype, a.shape, b.shape)
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=key)
        else:
            assert a == b, key
        assert getattr(ours, key) is a


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory):
    """A tiny random language-ID model (three labels) saved with its feature extractor."""
    from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForSequenceClassification
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor

    path = tmp_path_factory.mktemp("cls")
    torch.manual_seed(0)
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(id2label={0: "en", 1: "de", 2: "mn"}, num_labels=None))
    Wav2Vec2BertForSequenceClassification(config).save_pretrained(path)
    SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(path)
    return path
