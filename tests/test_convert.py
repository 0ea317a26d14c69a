"""Meta's fairseq2 W2v-BERT 2.0 checkpoint: every original name converts, and the result runs like the original."""

from __future__ import annotations

import os

import pytest
import torch

from conftest import random_batch
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertModel
from w2vbert.cli import main
from w2vbert.convert import convert, convert_state_dict


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


def test_the_convert_command_writes_the_directory(tmp_path, capsys):
    torch.save({"model": fairseq2_state(**SMALL)}, tmp_path / "shaw.pt")
    assert main(["convert", str(tmp_path / "shaw.pt"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "model.safetensors").exists()


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-convert-test",))


@pytest.mark.parametrize("kind", ["other architecture", "missing tensor", "truncated", "pickle with code", "no model"])
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
    elif kind == "pickle with code":
        state["masker.temporal_mask_embed"] = Exploit()
        message = "refusing to load"
    elif kind == "no model":
        state = {"encoder": state}
        message = "expected a dict with a 'model' state dict"
    torch.save({"model": state} if kind != "no model" else state, src)
    if kind == "truncated":
        src.write_bytes(src.read_bytes()[:5000])
        message = "truncated or corrupt"
    with pytest.raises(ValueError, match=message):
        convert(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    assert not (tmp_path / "pwned-by-convert-test").exists()
