"""Checkpoint I/O: every Hugging Face weights layout, the hub cache offline, and clear errors for bad files."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

import w2vbert
from conftest import random_batch, tiny_config_kwargs
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForCTC, Wav2Vec2BertModel
from w2vbert.loading.fingerprint import weights_fingerprint
from w2vbert.loading.weights import save_weights


def tiny_model(cls=Wav2Vec2BertModel, **overrides):
    torch.manual_seed(0)
    return cls(Wav2Vec2BertConfig(**tiny_config_kwargs(**overrides))).eval()


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_and_load_round_trip_is_exact(tmp_path):
    model = tiny_model(Wav2Vec2BertForCTC)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["Wav2Vec2BertForCTC"]
    loaded = Wav2Vec2BertForCTC.from_pretrained(tmp_path)
    assert same_weights(model, loaded) and not loaded.training


def test_sharded_safetensors_load_here_and_in_transformers(tmp_path):
    import transformers

    model = tiny_model(Wav2Vec2BertForCTC)
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 2 and (tmp_path / "model.safetensors.index.json").exists()
    assert not (tmp_path / "model.safetensors").exists()
    assert same_weights(model, Wav2Vec2BertForCTC.from_pretrained(tmp_path))
    theirs = transformers.Wav2Vec2BertForCTC.from_pretrained(tmp_path)
    assert all(torch.equal(theirs.state_dict()[k], v) for k, v in model.state_dict().items())


def test_transformers_sharded_checkpoint_loads(tmp_path):
    import transformers

    torch.manual_seed(0)
    theirs = transformers.Wav2Vec2BertModel(transformers.Wav2Vec2BertConfig(**tiny_config_kwargs()))
    theirs.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    ours, info = Wav2Vec2BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info == {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
    assert all(torch.equal(ours.state_dict()[k], v) for k, v in theirs.state_dict().items())


def test_resaving_in_another_layout_leaves_no_stale_file_that_would_shadow_it(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    other = tiny_model()
    torch.nn.init.zeros_(other.feature_projection.projection.weight)
    other.save_pretrained(tmp_path)  # now a single file
    assert not list(tmp_path.glob("model-*.safetensors")) and not (tmp_path / "model.safetensors.index.json").exists()
    assert same_weights(other, Wav2Vec2BertModel.from_pretrained(tmp_path))


def test_pytorch_model_bin_loads_with_weights_only(tmp_path):
    model = tiny_model()
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    assert same_weights(model, Wav2Vec2BertModel.from_pretrained(tmp_path))


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned-by-w2vbert-test",))


def test_a_pickle_that_asks_for_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_model().config.save_pretrained(tmp_path)
    torch.save({"feature_projection.projection.weight": Exploit()}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="refusing to load .*pytorch_model.bin.*unpickle"):
        Wav2Vec2BertModel.from_pretrained(tmp_path)
    assert not (tmp_path / "pwned-by-w2vbert-test").exists()


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
def test_a_truncated_weights_file_is_reported(tmp_path, name):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    if name == "pytorch_model.bin":
        (tmp_path / "model.safetensors").unlink()
        torch.save(model.state_dict(), tmp_path / name)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{name} is not a (readable|valid) .*truncated or corrupt"):
        Wav2Vec2BertModel.from_pretrained(tmp_path)


def test_a_shard_index_naming_tensors_no_shard_holds_is_reported(tmp_path):
    tiny_model().save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    index["weight_map"]["encoder.layers.9.ffn1.intermediate_dense.weight"] = "model-00001-of-00009.safetensors"
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="lists tensors that no shard holds.*encoder.layers.9"):
        Wav2Vec2BertModel.from_pretrained(tmp_path)


def test_a_directory_without_weights_is_reported(tmp_path):
    tiny_model().config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="has no weights: expected model.safetensors"):
        Wav2Vec2BertModel.from_pretrained(tmp_path)


def test_a_checkpoint_of_another_model_type_is_refused(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text()) | {"model_type": "wav2vec2"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type 'wav2vec2', expected 'wav2vec2-bert'"):
        Wav2Vec2BertModel.from_pretrained(tmp_path)


def test_base_checkpoint_loads_into_a_head_reporting_the_new_head(tmp_path, caplog):
    base = tiny_model()
    base.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        ctc, info = Wav2Vec2BertForCTC.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == {"lm_head.bias", "lm_head.weight"} and not info["unexpected_keys"]
    assert "newly initialised 2 tensors" in caplog.text and "lm_head.weight" in caplog.text
    assert all(torch.equal(ctc.wav2vec2_bert.state_dict()[k], v) for k, v in base.state_dict().items())
    assert ctc.lm_head.weight.std() > 0 and not ctc.lm_head.weight.is_meta  # initialised, not left empty


def test_head_checkpoint_loads_into_the_base_model_reporting_the_head_as_unexpected(tmp_path):
    ctc = tiny_model(Wav2Vec2BertForCTC)
    ctc.save_pretrained(tmp_path)
    base, info = Wav2Vec2BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["unexpected_keys"] == {"lm_head.bias", "lm_head.weight"} and not info["missing_keys"]
    assert same_weights(ctc.wav2vec2_bert, base)


def test_a_checkpoint_missing_an_encoder_tensor_initialises_only_that_tensor(tmp_path):
    from safetensors.torch import load_file, save_file

    model = tiny_model()
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    dropped = "encoder.layers.1.conv_module.depthwise_conv.weight"
    del state[dropped]
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded, info = Wav2Vec2BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == {dropped}
    for name, tensor in loaded.state_dict().items():
        if name != dropped:
            assert torch.equal(tensor, model.state_dict()[name]), name
    fresh = loaded.state_dict()[dropped]
    assert fresh.shape == model.state_dict()[dropped].shape and torch.isfinite(fresh).all() and fresh.std() > 0


def test_a_new_vocabulary_needs_ignore_mismatched_sizes(tmp_path):
    tiny_model(Wav2Vec2BertForCTC).save_pretrained(tmp_path)  # vocab_size 11
    with pytest.raises(ValueError, match=r"lm_head.weight: checkpoint \(11, 32\), model \(40, 32\).*ignore_mismatched"):
        Wav2Vec2BertForCTC.from_pretrained(tmp_path, vocab_size=40)
    model, info = Wav2Vec2BertForCTC.from_pretrained(
        tmp_path, vocab_size=40, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert info["mismatched_keys"] == {("lm_head.bias", (11,), (40,)), ("lm_head.weight", (11, 32), (40, 32))}
    assert model.lm_head.weight.shape == (40, 32) and model.config.vocab_size == 40
    features, _ = random_batch([12])
    assert model(features).logits.shape == (1, 12, 40)


def test_dtypes_default_to_float32_and_follow_torch_dtype(tmp_path):
    tiny_model().to(torch.bfloat16).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"  # transformers 5's key
    assert Wav2Vec2BertModel.from_pretrained(tmp_path).dtype == torch.float32  # as transformers
    assert Wav2Vec2BertModel.from_pretrained(tmp_path, torch_dtype="auto").dtype == torch.bfloat16
    assert Wav2Vec2BertModel.from_pretrained(tmp_path, torch_dtype=torch.float16).dtype == torch.float16
    assert Wav2Vec2BertModel.from_pretrained(tmp_path, dtype="float64").dtype == torch.float64
    with pytest.raises(ValueError, match="torch_dtype must be a floating torch dtype.*'int8'"):
        Wav2Vec2BertModel.from_pretrained(tmp_path, torch_dtype="int8")


def test_config_overrides_and_attention_implementation_apply(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    model = Wav2Vec2BertModel.from_pretrained(tmp_path, layerdrop=0.3, attn_implementation="eager")
    assert model.config.layerdrop == 0.3
    assert not any(getattr(module, "use_sdpa", False) for module in model.modules())


def test_load_in_8bit_says_it_is_not_supported(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    with pytest.raises((NotImplementedError, RuntimeError, ImportError), match="8bit|8-bit|bitsandbytes"):
        Wav2Vec2BertModel.from_pretrained(tmp_path, load_in_8bit=True)


def fake_hub_cache(cache, repo_id: str, files: dict[str, bytes]) -> None:
    """Lay files out as huggingface_hub's cache does (models--owner--name/snapshots/<commit>/...)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)


def test_a_hub_repo_id_loads_from_the_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny_model(Wav2Vec2BertForCTC)
    model.save_pretrained(tmp_path / "saved")
    files = {p.name: p.read_bytes() for p in (tmp_path / "saved").iterdir()}
    fake_hub_cache(tmp_path / "cache", "someone/w2v-bert-tiny", files)
    loaded = Wav2Vec2BertForCTC.from_pretrained("someone/w2v-bert-tiny", cache_dir=tmp_path / "cache")
    assert same_weights(model, loaded)


def test_a_hub_repo_missing_from_the_cache_offline_names_the_alternatives(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "cache").mkdir()
    with pytest.raises(OSError, match="HF_HUB_OFFLINE=1.*local directory") as error:
        Wav2Vec2BertModel.from_pretrained("facebook/w2v-bert-2.0", cache_dir=tmp_path / "cache")
    assert "`hf download REPO`" in str(error.value)  # today's hub command (huggingface-cli is deprecated)


def test_a_file_or_a_malformed_name_is_not_taken_for_a_repo(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises((NotADirectoryError, OSError), match="is a file"):
        Wav2Vec2BertModel.from_pretrained(tmp_path / "model.safetensors")
    with pytest.raises(OSError, match="not an existing directory and not a valid hub repo id"):
        Wav2Vec2BertModel.from_pretrained("no//such dir")


def test_a_crash_while_saving_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    old = tiny_model()
    old.save_pretrained(tmp_path)
    import safetensors.torch

    def crash(tensors, path, metadata=None):  # a kill half-way through writing the file
        open(path, "wb").write(b"half a file")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(w2vbert.loading.weights, "save_file", crash)
    new = tiny_model()
    torch.nn.init.zeros_(new.feature_projection.projection.weight)
    with pytest.raises(KeyboardInterrupt):
        new.save_pretrained(tmp_path)
    monkeypatch.setattr(w2vbert.loading.weights, "save_file", safetensors.torch.save_file)
    assert same_weights(old, Wav2Vec2BertModel.from_pretrained(tmp_path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only machine")
def test_device_map_values_of_transformers_work_or_are_refused_by_name(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    for device_map in ("cpu", "auto", "sequential", {"": "cpu"}, {"encoder": "cpu", "adapter": "cpu"}, -1):
        assert Wav2Vec2BertModel.from_pretrained(tmp_path, device_map=device_map).device.type == "cpu"
    with pytest.raises(ValueError, match=r"device_map places parts of the model on \['cpu', 'cuda:1'\].*one device"):
        Wav2Vec2BertModel.from_pretrained(tmp_path, device_map={"encoder": "cpu", "adapter": "cuda:1"})
    with pytest.raises(ValueError, match=r"device='cuda': CUDA is not available .*use device='cpu'"):
        Wav2Vec2BertModel.from_pretrained(tmp_path, device_map="cuda")
    with pytest.raises(ValueError, match="unknown device 'disk'"):
        Wav2Vec2BertModel.from_pretrained(tmp_path, device_map="disk")
    # The documented 8-bit snippet: a clear answer on a machine without a GPU, not a torch device error.
    with pytest.raises(RuntimeError, match="load_in_8bit=True .* needs device='cuda'.*quantize='int8'"):
        Wav2Vec2BertModel.from_pretrained(tmp_path, load_in_8bit=True, device_map="auto")


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/model.safetensors", ".."])
def test_a_shard_index_naming_files_outside_the_model_directory_is_refused(tmp_path, shard):
    tiny_model().save_pretrained(tmp_path / "model", max_shard_size="20KB")
    index = tmp_path / "model" / "model.safetensors.index.json"
    values = json.loads(index.read_text())
    first = next(iter(values["weight_map"]))
    values["weight_map"][first] = shard
    index.write_text(json.dumps(values))
    (tmp_path / "outside.safetensors").write_bytes(b"")  # would be opened if the name were followed
    with pytest.raises(ValueError, match=r"names shard files outside the model directory: \[.*plain file names"):
        Wav2Vec2BertModel.from_pretrained(tmp_path / "model")


def test_a_report_of_many_missing_tensors_counts_them_and_names_the_first_few(tmp_path, caplog):
    from safetensors.torch import save_file

    tiny_model().save_pretrained(tmp_path)
    kept = {"feature_projection.layer_norm.weight": torch.ones(160)}
    save_file(kept, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        _, info = Wav2Vec2BertModel.from_pretrained(tmp_path, output_loading_info=True)
    (message,) = [r.getMessage() for r in caplog.records if "newly initialised" in r.getMessage()]
    missing = len(info["missing_keys"])
    assert missing > 50 and f"newly initialised {missing} tensors" in message
    assert message.endswith(f"and {missing - 8} more") and len(message) < 1000


def test_the_weights_fingerprint_sees_weights_changed_in_any_layout_and_not_a_touch(tmp_path):
    state = {f"layer{n}.weight": torch.randn(64, 64) for n in range(4)}  # 16 KiB each
    save_weights(state, tmp_path / "sharded", max_shard_size=20_000)  # a tensor a shard, and the index
    (tmp_path / "bin").mkdir()
    big = {f"w{n}": torch.zeros(1024, 1024) for n in range(3)}  # 4 MiB each: more than the ends a digest reads
    torch.save(big, tmp_path / "bin" / "pytorch_model.bin")
    before = {layout: weights_fingerprint(tmp_path / layout) for layout in ("sharded", "bin")}
    assert len(before["sharded"]) == 5 and before["bin"].keys() == {"pytorch_model.bin"}
    for path in (tmp_path / "sharded").iterdir():
        os.utime(path, (0, 0))
    assert weights_fingerprint(tmp_path / "sharded") == before["sharded"]

    state["layer2.weight"] += 1e-3 * torch.randn(64, 64)  # one tensor trained further, the others frozen
    save_weights(state, tmp_path / "sharded", max_shard_size=20_000)
    big["w1"][512, 7] = 1.0  # in a PyTorch zip, one value mid-file is seen too
    torch.save(big, tmp_path / "bin" / "pytorch_model.bin")
    after = {layout: weights_fingerprint(tmp_path / layout) for layout in ("sharded", "bin")}
    assert [name for name in before["sharded"] if before["sharded"][name] != after["sharded"][name]] == [
        "model-00003-of-00004.safetensors"]
    assert after["bin"] != before["bin"]
    assert weights_fingerprint("no-such/model") == {} == weights_fingerprint(tmp_path / "missing")


@pytest.mark.parametrize("content", [
    b"model weights, honest\n",  # text: torch advised weights_only=False (other text: a bare KeyError)
    b"\x80\x02\x5c" + bytes(range(256)),  # a pickle stream it cannot read: torch advised weights_only=False
    b"PK\x03\x04 not a zip archive",  # a broken zip: torch's paragraph about corrupted checkpoints
], ids=["text", "bad-pickle", "bad-zip"])
def test_a_shard_index_naming_a_file_that_is_not_weights_says_so_in_one_line_without_torchs_advice(tmp_path, content,
                                                                                                   capsys):
    from w2vbert.cli.parser import main

    tiny_model().config.save_pretrained(tmp_path)
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": {"masked_spec_embed": "a.txt"}}))
    (tmp_path / "a.txt").write_bytes(content)
    with pytest.raises(ValueError) as caught:
        Wav2Vec2BertModel.from_pretrained(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'a.txt'} is not a valid weights file (not a readable PyTorch file: " \
                                "truncated or corrupt?)"
    assert main(["export", str(tmp_path), str(tmp_path.parent / f"{tmp_path.name}-out")]) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "a.txt is not a valid weights file" in error
    assert "weights_only" not in error


def test_a_deeply_nested_config_json_is_refused_naming_the_file(tmp_path, capsys):
    from w2vbert.cli.parser import main

    tiny_model().save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "wav2vec2-bert", "x": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(ValueError, match="config.json nests JSON arrays or objects too deeply"):
        Wav2Vec2BertModel.from_pretrained(tmp_path)
    assert main(["info", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and f"{tmp_path / 'config.json'} nests" in error
