"""LoRA through peft: merged = unmerged, only adapters and head train, plain checkpoints transformers loads, the
adapter alone under peft, unknown targets named, exact resume, the command line end to end."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_config_kwargs
from test_training import (
    FeatureData,
    collate,
    straight_and_resumed,
    tiny_ctc,
    tone_manifest,
    train_config,
    write_wav,
)
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForCTC, Wav2Vec2BertModel
from w2vbert.training.lora import (
    DEFAULT_TARGETS,
    LoraSettings,
    apply_lora,
    lora_layers,
    lora_targets,
    merged_state_dict,
    save_adapter,
)
from w2vbert.training.trainer import Trainer

peft = pytest.importorskip("peft")


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """peft starts B at zero (the adapter adds nothing): random factors make a wrong merge show."""
    torch.manual_seed(5)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["default"].weight.normal_(std=0.2)
    return model.eval()


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    mask = torch.ones(2, 40, dtype=torch.long)
    mask[1, 29:] = 0
    return torch.randn(2, 40, 160), mask


@pytest.mark.parametrize("head", ["Wav2Vec2BertForCTC", "Wav2Vec2BertForSequenceClassification",
                                  "Wav2Vec2BertForXVector"])
def test_the_merged_state_dict_gives_the_outputs_of_the_unmerged_adapters(head):
    import w2vbert

    torch.manual_seed(0)
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(add_adapter=head == "Wav2Vec2BertForCTC"))
    model = perturbed(apply_lora(getattr(w2vbert, head)(config), LoraSettings(rank=4, dropout=0.1)))
    plain = getattr(w2vbert, head)(config).eval()
    merged = merged_state_dict(model)
    assert not [key for key in merged if "lora_" in key or "base_layer" in key]
    plain.load_state_dict(merged)  # strict: exactly the plain model's keys
    features, mask = inputs()
    with torch.no_grad():
        torch.testing.assert_close(plain(features, mask).logits, model(features, mask).logits, rtol=0, atol=1e-5)


def test_only_the_adapters_and_the_head_train():
    model = tiny_ctc()
    hidden, inner, layers = 32, 48, 2
    head = sum(p.numel() for name, p in model.named_parameters()
               if name.startswith(("lm_head.", "wav2vec2_bert.adapter.")))
    apply_lora(model, LoraSettings(rank=4))
    # Per block: q, k, v, out (hidden -> hidden) and two FFNs (hidden -> inner -> hidden); r (in + out) each.
    per_block = 4 * 4 * (hidden + hidden) + 2 * 2 * 4 * (hidden + inner)
    assert model.num_parameters(only_trainable=True) == layers * per_block + head
    assert all(not p.requires_grad for name, p in model.named_parameters()
               if name.startswith("wav2vec2_bert.") and "lora_" not in name and ".adapter." not in name)


def test_a_target_naming_no_linear_layer_is_refused_naming_it_and_the_layers_there_are():
    model = tiny_ctc()
    assert len(lora_targets(model, DEFAULT_TARGETS)) == 2 * 8
    with pytest.raises(ValueError) as error:
        apply_lora(model, LoraSettings(rank=4, targets=("linear_q", "q_proj")))
    message = str(error.value)
    assert "'q_proj'" in message and "linear_q" in message and "intermediate_dense" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match="'lm_head' names no linear layer of the encoder"):
        lora_targets(model, ("lm_head",))  # the head trains whole: no adapter on it


def test_settings_are_checked_and_alpha_defaults_to_twice_the_rank():
    assert LoraSettings(rank=8).alpha == 16
    with pytest.raises(ValueError, match="rank must be >= 1, got 0; dropout must be in"):
        LoraSettings(rank=0, alpha=1, dropout=1.5)


def test_lora_checkpoints_are_plain_models_transformers_loads_with_the_trained_outputs(tmp_path):
    import transformers

    settings = LoraSettings(rank=4, alpha=8, targets=("linear_q", "linear_v", "output_dense"))
    trainer = Trainer(tiny_ctc(), train_config(tmp_path, max_steps=4, lora=settings), FeatureData(6), collate)
    trainer.train()
    last = tmp_path / "last"
    assert (last / "lora_state.safetensors").is_file() and not (last / "adapter_config.json").exists()
    features, mask = inputs()
    model = trainer.model.eval()
    reference = transformers.Wav2Vec2BertForCTC.from_pretrained(last).eval()
    ours = Wav2Vec2BertForCTC.from_pretrained(last).eval()
    with torch.no_grad():
        expected = model(features, mask).logits
        torch.testing.assert_close(ours(features, mask).logits, expected, rtol=0, atol=1e-5)
        # Unpadded: transformers' batched adapter reads the padding (modeling.py, Wav2Vec2BertAdapterLayer).
        torch.testing.assert_close(reference(features).logits, model(features).logits, rtol=0, atol=1e-5)


def test_the_adapter_alone_rebuilds_the_fine_tuned_model_under_peft_on_transformers(tmp_path):
    import transformers

    start = tiny_ctc()
    start.save_pretrained(tmp_path / "start")
    settings = LoraSettings(rank=4, save_adapter=True)
    trainer = Trainer(start, train_config(tmp_path / "run", max_steps=3, lora=settings), FeatureData(6), collate)
    trainer.train()
    adapter = tmp_path / "run" / "last"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["modules_to_save"] == ["lm_head", "wav2vec2_bert.adapter"] and config["r"] == 4
    base = transformers.Wav2Vec2BertForCTC.from_pretrained(tmp_path / "start")
    rebuilt = peft.PeftModel.from_pretrained(base, adapter).eval()
    features, mask = inputs()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(input_features=features).logits, trainer.model.eval()(features).logits,
                                   rtol=0, atol=1e-5)


def test_the_adapter_alone_refuses_a_head_with_a_bare_parameter(tmp_path):
    import w2vbert

    config = Wav2Vec2BertConfig(**tiny_config_kwargs(use_weighted_layer_sum=True))
    model = apply_lora(w2vbert.Wav2Vec2BertForSequenceClassification(config), LoraSettings(rank=2))
    with pytest.raises(ValueError, match="cannot hold the head's parameter.s. layer_weights"):
        save_adapter(model, tmp_path)


def test_a_resumed_lora_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """As the full fine-tuning test (test_training): killed after step 5 (last at 4), resumed to 8, with dropout
    in the model and in the adapters, and accumulation spanning batches."""
    data = FeatureData(14)
    model_kwargs = dict(hidden_dropout=0.1, mask_time_prob=0.3, mask_time_length=2, mask_time_min_masks=1)
    options = dict(max_steps=8, save_every=2, gradient_accumulation_steps=2, max_batch_seconds=2.0,
                   lora=LoraSettings(rank=4, dropout=0.1))
    straight_and_resumed(tmp_path, data, model_kwargs, options)
    # Resuming it as a full fine-tuning run would train other weights than it saved: refused.
    with pytest.raises(ValueError, match="was written by a LoRA run, this one has lora=None"):
        Trainer(tiny_ctc(), train_config(tmp_path / "b", max_steps=9), data, collate).train(resume=True)


def ctc_manifest(folder):
    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["audio\ttext"]
    for i, text in enumerate(["abc def", "a b", "hello", "bad cab"]):
        write_wav(folder / f"{i}.wav", 0.1 * rng.standard_normal(int(16000 * 0.6)))
        rows.append(f"{i}.wav\t{text}")
    (folder / "train.tsv").write_text("\n".join(rows) + "\n")
    return folder / "train.tsv"


def test_cli_lora_finetune_ctc_end_to_end_writes_merged_checkpoints_and_the_adapter(tmp_path):
    import transformers

    from w2vbert.cli.parser import main

    base = tmp_path / "base"
    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(base)
    manifest = ctc_manifest(tmp_path)
    run = tmp_path / "run"
    command = ["finetune", "--model", str(base), "--train", str(manifest), "--eval", str(manifest),
               "--output-dir", str(run), "--max-steps", "3", "--warmup-steps", "1", "--eval-every", "2",
               "--save-every", "2", "--max-batch-seconds", "2", "--no-progress", "--lora", "4", "--lora-alpha", "16",
               "--lora-dropout", "0.05", "--lora-targets", "linear_q,linear_v", "--save-adapter"]
    assert main(command) == 0
    state = json.loads((run / "last" / "trainer_state.json").read_text())
    assert state["config"]["lora"] == {"rank": 4, "alpha": 16.0, "dropout": 0.05,
                                       "targets": ["linear_q", "linear_v"], "save_adapter": True}
    for name in ("best", "last"):
        assert (run / name / "adapter_model.safetensors").is_file()
        model = transformers.Wav2Vec2BertForCTC.from_pretrained(run / name)  # plain: no missing or extra tensor
        assert model.config.add_adapter
    # The encoder outside the adapted layers is the base checkpoint's, bit for bit; the adapted ones moved.
    trained = Wav2Vec2BertForCTC.from_pretrained(run / "last").state_dict()
    for key, tensor in Wav2Vec2BertModel.from_pretrained(base).state_dict().items():
        moved = not torch.equal(trained[f"wav2vec2_bert.{key}"], tensor)
        assert moved == (key.endswith(("linear_q.weight", "linear_v.weight")) and key.startswith("encoder.")), key
    # And it resumes: two more steps from `last`.
    assert main([*command[:9], "--max-steps", "5", *command[11:], "--resume"]) == 0
    assert json.loads((run / "last" / "trainer_state.json").read_text())["step"] == 5


def test_cli_lora_finetune_classify_trains_the_head_whole(tmp_path):
    from w2vbert.cli.parser import main

    base = tmp_path / "base"
    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(base)
    train = tone_manifest(tmp_path, "train", 8, 0)
    assert main(["finetune", "--task", "classify", "--model", str(base), "--train", str(train), "--output-dir",
                 str(tmp_path / "run"), "--max-steps", "4", "--warmup-steps", "1", "--max-batch-seconds", "3",
                 "--learning-rate", "3e-3", "--no-progress", "--lora", "2"]) == 0
    from w2vbert import Wav2Vec2BertForSequenceClassification

    trained = Wav2Vec2BertForSequenceClassification.from_pretrained(tmp_path / "run" / "last")
    assert trained.config.id2label == {0: "high", 1: "low"}
    assert set(json.loads((tmp_path / "run" / "summary.json").read_text())) >= {"steps", "train_examples"}


def test_cli_refuses_an_unknown_lora_target_in_one_line_and_lora_options_without_lora(tmp_path, capsys):
    from w2vbert.cli.parser import main

    base = tmp_path / "base"
    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(base)
    manifest = ctc_manifest(tmp_path)
    command = ["finetune", "--model", str(base), "--train", str(manifest), "--output-dir", str(tmp_path / "run"),
               "--max-steps", "2", "--no-progress"]
    assert main([*command, "--lora", "4", "--lora-targets", "linear_q,qkv"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("w2vbert: error: LoRA target 'qkv' names no linear layer") and "\n" not in error
    assert main([*command, "--lora-alpha", "8"]) == 2
    assert "need --lora RANK" in capsys.readouterr().err


def test_frozen_blocks_freeze_their_adapters_too_under_gradient_checkpointing(tmp_path):
    model = tiny_ctc()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = train_config(tmp_path, max_steps=3, freeze_layers=1, gradient_checkpointing=True,
                          max_batch_seconds=10.0, lora=LoraSettings(rank=4))
    Trainer(model, config, FeatureData(6), collate).train()
    after = model.state_dict()
    for key, tensor in after.items():
        if ".lora_B." in key:  # peft starts B at zero
            assert bool(tensor.eq(0).all()) == key.startswith("wav2vec2_bert.encoder.layers.0."), key
        elif "lora_" not in key and key.startswith("wav2vec2_bert.") and ".adapter." not in key:
            assert torch.equal(tensor, before[key.replace(".base_layer.", ".")]), key  # the encoder stays put


def test_lora_is_applied_once():
    model = apply_lora(tiny_ctc(), LoraSettings(rank=2))
    with pytest.raises(ValueError, match="already has LoRA layers"):
        apply_lora(model, LoraSettings(rank=2))


@pytest.mark.parametrize("task", ["frames", "xvector"])
def test_cli_lora_finetune_of_frames_and_xvector_merges_adapters_and_leaves_the_rest_of_the_encoder(tmp_path, task):
    from test_frames import tone_recordings
    from test_xvector import speaker_clips
    from w2vbert import Wav2Vec2BertForAudioFrameClassification, Wav2Vec2BertForXVector
    from w2vbert.cli.parser import main
    from w2vbert.loading.weights import load_weights

    base = tmp_path / "base"
    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(base)
    train = tone_recordings(tmp_path, "t", 6, 0) if task == "frames" else speaker_clips(tmp_path, "t", range(3), 3, 0)
    assert main(["finetune", "--task", task, "--model", str(base), "--train", str(train), "--output-dir",
                 str(tmp_path / "run"), "--max-steps", "3", "--warmup-steps", "1", "--max-batch-seconds", "3",
                 "--learning-rate", "3e-3", "--no-progress", "--lora", "2"]) == 0
    head = Wav2Vec2BertForAudioFrameClassification if task == "frames" else Wav2Vec2BertForXVector
    trained = head.from_pretrained(tmp_path / "run" / "last")
    before, after = load_weights(base), trained.state_dict()
    projection = "feature_projection.projection.weight"
    assert torch.equal(after[f"wav2vec2_bert.{projection}"], before[projection])  # not a LoRA target: frozen
    query = "encoder.layers.0.self_attn.linear_q.weight"
    assert not torch.equal(after[f"wav2vec2_bert.{query}"], before[query])  # its adapter merged in
