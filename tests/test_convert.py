"""Meta's fairseq2 checkpoints (conformer_shaw.pt, the SeamlessM4T v2 speech encoder): every original name
converts, the result runs like the original, and bad files fail before anything is written."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import w2vbert
from conftest import random_batch
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertModel
from w2vbert.cli.convert import convert
from w2vbert.cli.parser import main
from w2vbert.model.fairseq2 import convert_state_dict


def fairseq2_state(dim=1024, layers=24, heads=16, ffn=4096, kernel=31, device=None, seed=0):
    """Every tensor of conformer_shaw.pt, by the names and shapes of the reference (shared/reference)."""
    generator = torch.Generator().manual_seed(seed)

    def t(*shape):
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=generator) * 0.1

    state = {
        "encoder_frontend.post_extract_layer_norm.weight": t(160),
        "encoder_frontend.post_extract_layer_norm.bias": t(160),
        "encoder_frontend.model_dim_proj.weight": t(dim, 160),
        "encoder_frontend.model_dim_proj.bias": t(dim),
        "masker.temporal_mask_embed": t(dim),
        "quantizer.entry_proj.weight": t(640, 160),
        "quantizer.entry_proj.bias": t(640),
        "quantizer.entries": t(1, 640, 384),
        "quantizer.num_updates": torch.tensor(7),
        "final_proj.weight": t(768, dim),
        "final_proj.bias": t(768),
        "final_target_proj.weight": t(768, 768),
        "final_target_proj.bias": t(768),
    }
    for n in range(layers):
        p = f"encoder.layers.{n}."
        for norm in (
            "ffn1_layer_norm",
            "self_attn_layer_norm",
            "conv_layer_norm",
            "conv.layer_norm",
            "ffn2_layer_norm",
            "layer_norm",
        ):
            state[p + norm + ".weight"], state[p + norm + ".bias"] = t(dim), t(dim)
        for ffn_name in ("ffn1", "ffn2"):
            state[p + ffn_name + ".inner_proj.weight"], state[p + ffn_name + ".inner_proj.bias"] = t(ffn, dim), t(ffn)
            state[p + ffn_name + ".output_proj.weight"], state[p + ffn_name + ".output_proj.bias"] = t(dim, ffn), t(dim)
        for proj in ("q_proj", "k_proj", "v_proj", "output_proj"):
            state[p + f"self_attn.{proj}.weight"], state[p + f"self_attn.{proj}.bias"] = t(dim, dim), t(dim)
        state[p + "self_attn.sdpa.rel_k_embed.weight"] = t(73, dim // heads)
        state[p + "conv.pointwise_conv1.weight"] = t(2 * dim, dim, 1)
        state[p + "conv.depthwise_conv.weight"] = t(dim, 1, kernel)
        state[p + "conv.pointwise_conv2.weight"] = t(dim, dim, 1)
    return state


# The reference's table, spelled out a second time as plain renames, to build the model "directly".
RENAMES = [
    ("encoder_frontend.post_extract_layer_norm", "feature_projection.layer_norm"),
    ("encoder_frontend.model_dim_proj", "feature_projection.projection"),
    ("masker.temporal_mask_embed", "masked_spec_embed"),
    (".ffn1.inner_proj", ".ffn1.intermediate_dense"),
    (".ffn2.inner_proj", ".ffn2.intermediate_dense"),
    (".ffn1.output_proj", ".ffn1.output_dense"),
    (".ffn2.output_proj", ".ffn2.output_dense"),
    ("self_attn.q_proj", "self_attn.linear_q"),
    ("self_attn.k_proj", "self_attn.linear_k"),
    ("self_attn.v_proj", "self_attn.linear_v"),
    ("self_attn.output_proj", "self_attn.linear_out"),
    ("self_attn.sdpa.rel_k_embed", "self_attn.distance_embedding"),
    (".conv_layer_norm", ".conv_module.layer_norm"),
    (".conv.layer_norm", ".conv_module.depthwise_layer_norm"),
    (".conv.", ".conv_module."),
    (".layer_norm.", ".final_layer_norm."),
]


def by_hand(state):
    out = {}
    for name, tensor in state.items():
        if name.startswith(("quantizer", "final_proj", "final_target_proj")):
            continue
        for old, new in RENAMES:
            if old in name and not (
                old == ".layer_norm."
                and ("_layer_norm" in name or "conv_module" in name or name.startswith("feature_projection"))
            ):
                name = name.replace(old, new)
        out[name] = tensor
    return out


SMALL = dict(dim=32, layers=2, heads=4, ffn=48, kernel=5)


def test_the_full_size_table_maps_781_tensors_to_773_and_580_493_120_parameters():
    state = fairseq2_state(device="meta")
    assert len(state) == 781
    converted, config = convert_state_dict(state)
    assert len(converted) == 773 and sum(t.numel() for t in converted.values()) == 580_493_120
    assert config == Wav2Vec2BertConfig(architectures=["Wav2Vec2BertModel"])


def test_a_converted_checkpoint_runs_like_the_model_built_from_the_same_tensors(tmp_path):
    import transformers

    state = fairseq2_state(**SMALL)
    torch.save({"model": state, "step_nr": 0}, tmp_path / "conformer_shaw.pt")
    convert(tmp_path / "conformer_shaw.pt", tmp_path / "converted")
    assert sorted(p.name for p in (tmp_path / "converted").iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    config = Wav2Vec2BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48, conv_depthwise_kernel_size=5
    )
    direct = Wav2Vec2BertModel(config).eval()
    direct.load_state_dict(by_hand(state))
    features, mask = random_batch([30, 21])
    expected = direct(features, attention_mask=mask).last_hidden_state
    for loaded in (
        Wav2Vec2BertModel.from_pretrained(tmp_path / "converted"),
        Wav2Vec2BertModel.from_pretrained(tmp_path / "conformer_shaw.pt"),
    ):
        torch.testing.assert_close(loaded(features, attention_mask=mask).last_hidden_state, expected, atol=1e-5, rtol=0)
    theirs = transformers.Wav2Vec2BertModel.from_pretrained(tmp_path / "converted").eval()
    with torch.no_grad():
        alone = theirs(features[:1, :30]).last_hidden_state
    torch.testing.assert_close(alone, expected[:1, :30], atol=1e-5, rtol=0)


def test_a_checkpoint_in_the_pre_zip_format_converts_too(tmp_path):
    state = fairseq2_state(**SMALL)
    torch.save({"model": state}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    loaded = Wav2Vec2BertModel.from_pretrained(convert(tmp_path / "old.pt", tmp_path / "out"))
    torch.testing.assert_close(
        loaded.state_dict()["feature_projection.projection.weight"],
        state["encoder_frontend.model_dim_proj.weight"],
        atol=0,
        rtol=0,
    )


def test_the_convert_command_writes_the_directory(tmp_path, capsys):
    torch.save({"model": fairseq2_state(**SMALL)}, tmp_path / "shaw.pt")
    assert main(["convert", str(tmp_path / "shaw.pt"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").exists()


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-convert-test",))


BAD = ["other architecture", "missing tensor", "truncated", "not a checkpoint", "pickle with code"]
BAD += ["legacy pickle with code", "no model"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_checkpoints_fail_clearly_and_write_nothing(tmp_path, monkeypatch, kind):
    monkeypatch.chdir(tmp_path)
    state = fairseq2_state(**SMALL)
    src = tmp_path / "bad.pt"
    if kind == "other architecture":
        state["decoder.layers.0.weight"] = torch.zeros(2)
        message = "not W2v-BERT 2.0 .*decoder.layers.0.weight"
    elif kind == "missing tensor":
        del state["encoder.layers.1.conv.depthwise_conv.weight"]
        message = "lacks 1 tensor.*encoder.layers.1.conv_module.depthwise_conv.weight"
    elif kind.endswith("pickle with code"):
        state["masker.temporal_mask_embed"] = Exploit()
        message = f"refusing to load .*{os.system.__module__}.system"
    elif kind == "no model":
        state = {"encoder": state}
        message = "expected a dict with a 'model' state dict"
    # torch < 1.6 wrote a bare pickle stream, not a zip; it loads without mmap, through the same allow-list
    legacy = kind.startswith("legacy")
    torch.save({"model": state} if kind != "no model" else state, src, _use_new_zipfile_serialization=not legacy)
    if kind == "truncated":
        src.write_bytes(src.read_bytes()[:5000])
        message = "truncated or corrupt"
    elif kind == "not a checkpoint":
        src.write_text("model weights, honest")
        message = "truncated or corrupt"
    with pytest.raises(ValueError, match=message):
        convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    assert not (tmp_path / "pwned-by-convert-test").exists()


def test_an_existing_directory_with_files_is_refused_and_left_alone(tmp_path):
    torch.save({"model": fairseq2_state(**SMALL)}, tmp_path / "shaw.pt")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not an empty directory"):
        convert(tmp_path / "shaw.pt", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]


HEADS = ["Wav2Vec2BertModel", "Wav2Vec2BertForCTC", "Wav2Vec2BertForSequenceClassification"]
HEADS += ["Wav2Vec2BertForAudioFrameClassification", "Wav2Vec2BertForXVector"]


@pytest.mark.parametrize("head", HEADS)
def test_every_model_class_loads_the_original_file_directly(tmp_path, head):
    state = fairseq2_state(**SMALL)
    torch.save({"model": state}, tmp_path / "conformer_shaw.pt")
    overrides = {"vocab_size": 12} if head == "Wav2Vec2BertForCTC" else {}
    model = getattr(w2vbert, head).from_pretrained(tmp_path / "conformer_shaw.pt", **overrides)
    encoder = model if head == "Wav2Vec2BertModel" else model.wav2vec2_bert
    loaded = encoder.state_dict()
    for name, tensor in by_hand(state).items():
        torch.testing.assert_close(loaded[name], tensor, atol=0, rtol=0)


# transformers' SeamlessM4Tv2SpeechEncoder names -> the fairseq2 names of seamlessM4T_v2_large.pt, spelled out
# from transformers' convert_fairseq2_to_hf.py for SeamlessM4T v2 (first matching prefix, then block renames).
SEAMLESS_PREFIXES = [
    ("feature_projection.layer_norm.", "speech_encoder_frontend.post_extract_layer_norm."),
    ("feature_projection.projection.", "speech_encoder_frontend.model_dim_proj."),
    ("encoder.layers.", "speech_encoder.inner.layers."),
    ("encoder.layer_norm.", "speech_encoder.inner_layer_norm."),
    ("intermediate_ffn.intermediate_dense.", "speech_encoder.proj1."),
    ("intermediate_ffn.output_dense.", "speech_encoder.proj2."),
    ("adapter.layers.", "speech_encoder.adaptor_layers."),
    ("inner_layer_norm.", "speech_encoder.layer_norm."),
]
BLOCK_NAMES = [
    (".final_layer_norm.", ".layer_norm."),
    ("conv_module.depthwise_layer_norm.", "conv.layer_norm."),
    ("conv_module.layer_norm.", "conv_layer_norm."),
    ("conv_module.", "conv."),
    ("linear_out", "output_proj"),
    ("linear_q", "q_proj"),
    ("linear_k", "k_proj"),
    ("linear_v", "v_proj"),
    ("intermediate_dense", "inner_proj"),
    ("output_dense", "output_proj"),
    ("distance_embedding", "sdpa.rel_k_embed"),
]


def seamless_fairseq2_name(name):
    prefix, fairseq2 = next((old, new) for old, new in SEAMLESS_PREFIXES if name.startswith(old))
    rest = name[len(prefix) :]
    for old, new in BLOCK_NAMES:
        rest = rest.replace(old, new)
    return fairseq2 + rest


def test_the_seamless_m4t_v2_speech_encoder_extracts_to_the_same_numbers_as_transformers(tmp_path, caplog):
    from transformers import SeamlessM4Tv2Config
    from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import SeamlessM4Tv2SpeechEncoder

    config = SeamlessM4Tv2Config(
        hidden_size=32,
        speech_encoder_layers=2,
        speech_encoder_attention_heads=4,
        speech_encoder_intermediate_size=48,
        conv_depthwise_kernel_size=5,
        adaptor_kernel_size=8,  # seamlessM4T_v2_large: one adaptor layer, kernel 8, stride 8
        adaptor_stride=8,
        num_adapter_layers=1,
    )
    torch.manual_seed(0)
    theirs = SeamlessM4Tv2SpeechEncoder(config).eval()
    with torch.no_grad():  # LayerNorms start at 1/0: perturb them too, so a swapped norm would show
        for parameter in theirs.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    state = {seamless_fairseq2_name(n): t.clone() for n, t in theirs.state_dict().items()}
    assert "speech_encoder.adaptor_layers.0.self_attn.output_proj.weight" in state  # the table's names, checked
    state |= {
        "text_encoder.layers.0.ffn.inner_proj.weight": torch.zeros(2),
        "text_decoder_frontend.embed.weight": torch.zeros(3, 2),
        "final_proj.weight": torch.zeros(3, 2),
    }
    torch.save({"model": state}, tmp_path / "seamlessM4T_v2_large.pt")
    with caplog.at_level("INFO", logger="w2vbert"):
        convert(tmp_path / "seamlessM4T_v2_large.pt", tmp_path / "encoder")
    assert "text_encoder.layers.0.ffn.inner_proj.weight" in caplog.text  # dropped, and said so
    assert "adaptor_layers" not in caplog.text  # the adaptor is kept
    ours = Wav2Vec2BertModel.from_pretrained(tmp_path / "encoder")
    c = ours.config
    assert c.num_hidden_layers == 2 and c.add_adapter and c.num_adapter_layers == 1
    assert (c.adapter_kernel_size, c.adapter_stride) == (8, 8) and c.use_intermediate_ffn_before_adapter
    assert c.add_encoder_layer_norm and c.add_inner_layer_norm

    # The whole speech encoder, adaptor included. transformers' adaptor convolutions read padded frames, so
    # each clip is compared with transformers run on it alone (ours is the same alone or batched).
    lengths = [45, 30, 21]
    features, mask = random_batch(lengths)
    with torch.no_grad():
        batched = ours(features, attention_mask=mask).last_hidden_state
        for row, length in enumerate(lengths):
            expected = theirs(features[row : row + 1, :length]).last_hidden_state[0]
            assert expected.shape[0] == int(ours.get_feat_extract_output_lengths(length))
            torch.testing.assert_close(batched[row, : expected.shape[0]], expected, atol=1e-5, rtol=0)
            assert expected.abs().max() > 1e-3


def test_an_adaptor_part_without_its_layers_is_named_not_a_crash(tmp_path):
    torch.save({"model": fairseq2_state(**SMALL) | {"speech_encoder.proj1.weight": torch.zeros(48, 32)}},
               tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match=r"no place in the model .*speech_encoder\.proj1\.weight"):
        Wav2Vec2BertModel.from_fairseq2(tmp_path / "mixed.pt", kind="w2v-bert")


def test_a_model_without_the_seamless_layer_norms_writes_the_transformers_config_layout(tmp_path):
    Wav2Vec2BertConfig(hidden_size=32, num_attention_heads=4).save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert "add_encoder_layer_norm" not in written and "add_inner_layer_norm" not in written
    config = Wav2Vec2BertConfig(hidden_size=32, num_attention_heads=4, add_encoder_layer_norm=True,
                                add_inner_layer_norm=True)
    config.save_pretrained(tmp_path)
    assert Wav2Vec2BertConfig.from_pretrained(tmp_path).add_inner_layer_norm


def test_kind_must_match_the_checkpoint(tmp_path):
    torch.save({"model": fairseq2_state(**SMALL)}, tmp_path / "shaw.pt")
    with pytest.raises(ValueError, match="not W2v-BERT 2.0 names .kind 'seamless-m4t-v2'"):
        convert(tmp_path / "shaw.pt", tmp_path / "out", kind="seamless-m4t-v2")
    with pytest.raises(ValueError, match="kind must be"):
        convert(tmp_path / "shaw.pt", tmp_path / "out", kind="w2v-bert-1")
    assert not (tmp_path / "out").exists()


SMALL_STATE = fairseq2_state(**SMALL)
NEEDED = sorted(n for n in SMALL_STATE if not n.startswith(("quantizer", "final_proj", "final_target_proj")))


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(NEEDED))
def test_any_missing_tensor_is_named_by_its_model_name(name):
    state = dict(SMALL_STATE)
    del state[name]
    model_name = next(iter(by_hand({name: None})))
    with tempfile.TemporaryDirectory() as folder:  # hypothesis runs many examples in one test: no tmp_path
        torch.save({"model": state}, Path(folder) / "shaw.pt")
        with pytest.raises(ValueError, match=f"lacks .*{re.escape(model_name)}"):
            Wav2Vec2BertModel.from_fairseq2(Path(folder) / "shaw.pt")


@settings(max_examples=25, deadline=None)
@given(st.from_regex(r"[a-z_]{1,12}(\.[a-z_0-9]{1,12}){0,4}", fullmatch=True))
def test_any_name_outside_the_table_is_refused_by_name(name):
    assume(name not in SMALL_STATE and not name.startswith(("quantizer.", "final_proj.", "final_target_proj.")))
    with pytest.raises(ValueError, match=f"not W2v-BERT 2.0 names.*{re.escape(name)}"):
        convert_state_dict(SMALL_STATE | {name: torch.zeros(1)}, kind="w2v-bert")


def test_the_full_size_seamless_m4t_v2_speech_encoder_maps_802_tensors_and_635_046_720_parameters():
    from transformers import SeamlessM4Tv2Config
    from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import SeamlessM4Tv2SpeechEncoder

    with torch.device("meta"):  # shapes only: transformers' default config is seamlessM4T_v2_large's
        theirs = SeamlessM4Tv2SpeechEncoder(SeamlessM4Tv2Config())
    state = {seamless_fairseq2_name(n): t for n, t in theirs.state_dict().items()}
    converted, config = convert_state_dict(state)
    assert len(converted) == 802 and sum(t.numel() for t in converted.values()) == 635_046_720
    assert (config.adapter_kernel_size, config.adapter_stride, config.num_adapter_layers) == (8, 8, 1)
