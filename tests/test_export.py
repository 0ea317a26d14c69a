"""ONNX export (export.py, export_attention.py): the exported graph run in ONNX Runtime against PyTorch."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import w2vbert
from conftest import random_batch, tiny_config_kwargs
from w2vbert.audio.features import default_feature_extractor
from w2vbert.export.attention import EXPORT_CHUNK_ROWS, shaw_bias
from w2vbert.export.onnx import OUTPUT_NAMES, export_onnx
from w2vbert.model.attention import ShawPosition, position_bias

ort = pytest.importorskip("onnxruntime")

# Clips longer than the traced example (EXPORT_CHUNK_ROWS + 44 frames), one of exactly two query chunks, and
# short ones, in one padded batch.
LENGTHS = [3 * EXPORT_CHUNK_ROWS + 17, 2 * EXPORT_CHUNK_ROWS, 13, 401]


def build(head: str, **overrides) -> w2vbert.Wav2Vec2BertPreTrainedModel:
    torch.manual_seed(0)
    model = getattr(w2vbert, head)(w2vbert.Wav2Vec2BertConfig(**tiny_config_kwargs(**overrides)))
    with torch.no_grad():  # non-trivial biases and norms, so that a wrong wiring shows
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model.eval()


def run_onnx(path, features: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input_features": features.numpy(), "attention_mask": mask.int().numpy()})
    return {meta.name: value for meta, value in zip(session.get_outputs(), outputs, strict=True)}


@pytest.mark.parametrize("head, overrides", [
    ("Wav2Vec2BertModel", {}),
    ("Wav2Vec2BertForCTC", {"add_adapter": True}),
    ("Wav2Vec2BertForSequenceClassification", {"position_embeddings_type": None, "use_weighted_layer_sum": True}),
    ("Wav2Vec2BertForAudioFrameClassification", {}),
    ("Wav2Vec2BertForXVector", {"position_embeddings_type": "rotary"}),
], ids=["encoder-shaw", "ctc-adapter", "sequence-none-weighted", "frames-shaw", "xvector-rotary"])
def test_exported_model_matches_pytorch_on_a_padded_batch_longer_than_the_export_example(head, overrides, tmp_path):
    model = build(head, **overrides)
    path = export_onnx(model, tmp_path / "model.onnx")
    for lengths in (LENGTHS, [20]):  # a padded batch with clips longer than the example; one short clip alone
        features, mask = random_batch(lengths)
        got = run_onnx(path, features, mask)
        with torch.no_grad():
            expected = model(features, mask, return_dict=True)
        assert sorted(got) == sorted(OUTPUT_NAMES[type(model)])
        for name, value in got.items():
            reference = getattr(expected, name).numpy()
            assert value.shape == reference.shape, (name, lengths)
            np.testing.assert_allclose(value, reference, atol=1e-4, rtol=0, err_msg=f"{name} {lengths}")


def test_exported_model_runs_on_the_feature_extractors_own_output_and_exports_without_warnings(tmp_path, capfd):
    model = build("Wav2Vec2BertModel").train()  # a model left in training mode is exported in eval mode
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_onnx(model, tmp_path / "model.onnx")
    messages = [str(warning.message) for warning in caught]
    assert not [message for message in messages if "training mode" in message]
    assert not [message for message in messages if "axis name" in message or "LeafSpec" in message]
    assert "torchvision is not installed" not in capfd.readouterr().err
    assert model.training  # left as it came

    generator = np.random.default_rng(0)
    clips = [generator.standard_normal(n).astype(np.float32) for n in (16000, 7000)]
    inputs = default_feature_extractor()(clips, sampling_rate=16000, return_tensors="np")
    assert inputs["attention_mask"].dtype == np.int32
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, dict(inputs))  # the extractor's arrays as they come
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(inputs["input_features"]), torch.from_numpy(inputs["attention_mask"]))
    valid = inputs["attention_mask"].astype(bool)
    np.testing.assert_allclose(got[valid], expected.last_hidden_state.numpy()[valid], atol=1e-4, rtol=0)


def test_int8_export_keeps_cosine_similarity_above_0_99(tmp_path):
    model = build("Wav2Vec2BertModel")
    path = export_onnx(model, tmp_path / "model.onnx", quantize="int8")
    features, mask = random_batch(LENGTHS)
    got = torch.from_numpy(run_onnx(path, features, mask)["last_hidden_state"])
    with torch.no_grad():
        expected = model(features, mask).last_hidden_state
    valid = mask.bool()
    assert torch.cosine_similarity(got[valid], expected[valid], dim=-1).min() >= 0.99


def test_fp16_export_takes_half_features_and_stays_close(tmp_path):
    model = build("Wav2Vec2BertModel")
    path = export_onnx(model, tmp_path / "model.onnx", dtype="fp16")
    assert model.dtype == torch.float32  # the export ran on a copy
    features, mask = random_batch(LENGTHS)
    got = torch.from_numpy(run_onnx(path, features.half(), mask)["last_hidden_state"]).float()
    with torch.no_grad():
        expected = model(features, mask).last_hidden_state
    valid = mask.bool()
    assert torch.cosine_similarity(got[valid], expected[valid], dim=-1).min() >= 0.999


def test_export_refuses_transformer_xl_positions_naming_the_supported_ones(tmp_path):
    model = build("Wav2Vec2BertModel", position_embeddings_type="relative")
    with pytest.raises(ValueError, match="supports position_embeddings_type 'relative_key' or 'rotary' or None, "
                                         "got 'relative'"):
        export_onnx(model, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_export_refuses_the_pretraining_model_naming_the_supported_classes(tmp_path):
    from w2vbert.model.pretraining import Wav2Vec2BertForPreTraining

    model = Wav2Vec2BertForPreTraining(w2vbert.Wav2Vec2BertConfig(**tiny_config_kwargs()))
    with pytest.raises(ValueError, match="supports Wav2Vec2BertModel, .*Wav2Vec2BertForXVector; got "
                                         "Wav2Vec2BertForPreTraining"):
        export_onnx(model, tmp_path / "model.onnx")


@pytest.mark.parametrize("start", [0, 5, 40])
def test_export_shaw_bias_equals_the_eager_strided_bias(start):
    generator = torch.Generator().manual_seed(0)
    left, distances, rows, keys = 6, 10, 8, 50
    table = torch.randn(distances, 4, generator=generator)
    query = torch.randn(2, 3, rows, 4, generator=generator)
    eager = position_bias(ShawPosition(table, left), query, row_offset=start, keys=keys, scale=1.0)
    exported = shaw_bias(query @ table.T, torch.tensor(start), keys, left)
    torch.testing.assert_close(exported, eager, atol=1e-6, rtol=0)


def test_cli_export_writes_the_onnx_file_with_the_processor_files_beside_it(tmp_path, capsys):
    from w2vbert.audio.features import default_feature_extractor
    from w2vbert.cli.parser import main

    model_dir, out = tmp_path / "model", tmp_path / "out"
    build("Wav2Vec2BertForCTC").save_pretrained(model_dir)
    default_feature_extractor().save_pretrained(model_dir)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{chr(ord("a") + i): 3 + i for i in range(8)}}
    (model_dir / "vocab.json").write_text(json.dumps(vocab))
    assert main(["export", str(model_dir), str(out), "--format", "onnx"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "model.onnx")
    for name in ("model.onnx", "config.json", "preprocessor_config.json", "vocab.json"):
        assert (out / name).is_file(), name
    features, mask = random_batch([400, 300])
    logits = run_onnx(out / "model.onnx", features, mask)["logits"]
    assert logits.shape == (2, 400, 11)
    assert main(["export", str(model_dir), str(out)]) == 1  # model.onnx exists: refused, nothing overwritten
    assert "exists" in capsys.readouterr().err


@pytest.fixture
def ctc_model_dir(tmp_path):
    from w2vbert.audio.features import default_feature_extractor

    model_dir = tmp_path / "model"
    build("Wav2Vec2BertForCTC").save_pretrained(model_dir)
    default_feature_extractor().save_pretrained(model_dir)
    return model_dir


@pytest.mark.parametrize("out", ["", "{model}", "{model}/onnx", "{model}/./"], ids=["empty", "same", "inside", "dot"])
def test_cli_export_refuses_an_empty_output_or_one_in_the_model_directory_before_writing(ctc_model_dir, out, capsys,
                                                                                          monkeypatch, tmp_path):
    from w2vbert.cli.parser import main

    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert main(["export", str(ctc_model_dir), out.format(model=ctc_model_dir)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1
    assert "output directory" in error and ("empty" in error if not out else "model directory" in error)
    assert sorted(tmp_path.rglob("*")) == before  # nothing written, in the model directory or here


def test_cli_export_refuses_a_model_with_a_nan_weight_naming_it(ctc_model_dir, capsys, tmp_path):
    from safetensors.torch import load_file, save_file

    from w2vbert.cli.parser import main

    weights = load_file(ctc_model_dir / "model.safetensors")
    name = "wav2vec2_bert.encoder.layers.0.ffn1.intermediate_dense.weight"
    weights[name][0, 0] = float("nan")
    save_file(weights, ctc_model_dir / "model.safetensors", metadata={"format": "pt"})
    assert main(["export", str(ctc_model_dir), str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and name in error and "NaN" in error
    assert not (tmp_path / "out").exists()
