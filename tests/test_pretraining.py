"""Continued pre-training: the w2v-BERT objective against its formulas, what the draws depend on, loading and
saving, the command, learning on espeak-ng speech, resume and two processes, and bad input."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import subprocess
import wave

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import w2vbert
from conftest import random_batch, tiny_config_kwargs
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForPreTraining, Wav2Vec2BertModel
from w2vbert.model.pretraining import example_seeds, sample_masks
from w2vbert.training.recipes import DataConfig, pretrain
from w2vbert.training.trainer import TrainingConfig

SMALL = dict(num_codevectors_per_group=16, codevector_dim=24, proj_codevector_dim=20, num_negatives=6)


def tiny(seed: int = 0, **overrides) -> Wav2Vec2BertForPreTraining:
    torch.manual_seed(seed)
    return Wav2Vec2BertForPreTraining(Wav2Vec2BertConfig(**tiny_config_kwargs(**SMALL | overrides)))


# -------------------------------------------------------------------------------------------- the objective
def test_the_losses_equal_their_formulas_computed_independently():
    """Eval mode (the quantizer's argmax, no noise), given masks and distractors: every term from the formulas of
    the module map, written out here from the encoder's hidden states."""
    model = tiny().eval()
    with torch.no_grad():  # non-trivial biases, so that a wrong wiring shows
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
    features, attention = random_batch([40, 31])
    mask, negatives = sample_masks(attention.sum(-1), 40, torch.tensor([3, 4]), model.config)
    with torch.no_grad():
        out = model(features, attention_mask=attention, mask_time_indices=mask, sampled_negative_indices=negatives)
        states = model.wav2vec2_bert(features, attention, mask_time_indices=mask, output_hidden_states=True)
    config = model.config
    groups, entries = config.num_codevector_groups, config.num_codevectors_per_group
    x = states.extract_features[mask]  # the layer-normed input at the masked frames
    logits = (x @ model.quantizer.weight_proj.weight.T + model.quantizer.weight_proj.bias).view(-1, groups, entries)
    choice = logits.argmax(-1)  # (N, G)
    table = model.quantizer.codevectors[0].view(groups, entries, -1)
    quantized = torch.cat([table[g, choice[:, g]] for g in range(groups)], dim=-1)
    q = quantized @ model.project_q.weight.T + model.project_q.bias
    c = states.hidden_states[config.contrastive_layer][mask] @ model.project_hid.weight.T + model.project_hid.bias
    flat = mask.flatten().nonzero().flatten().tolist()
    contrastive, correct = 0.0, 0
    for i, position in enumerate(flat):
        row, frame = divmod(position, 40)
        others = [flat.index(int(k)) for k in negatives[row, frame]]
        candidates = torch.stack([q[i]] + [q[j] for j in others])
        similarity = F.cosine_similarity(c[i][None], candidates) / config.contrastive_logits_temperature
        similarity[1:][(candidates[1:] == q[i]).all(-1)] = -math.inf
        contrastive += -torch.log_softmax(similarity, 0)[0]
        correct += int(similarity.argmax() == 0)
    mean = logits.softmax(-1).mean(0)
    perplexity = sum(torch.exp(-(mean[g] * torch.log(mean[g] + 1e-7)).sum()) for g in range(groups))
    diversity = (groups * entries - perplexity) / (groups * entries)
    head = model.masked_prediction_head
    prediction = (states.hidden_states[-1][mask] @ head.weight.T + head.bias).view(len(flat), entries, groups)
    masked = sum(-torch.log_softmax(prediction[i, :, g], 0)[choice[i, g]] for i in range(len(flat))
                 for g in range(config.num_target_codebooks))
    n = len(flat)
    total = masked + contrastive + config.diversity_loss_weight * diversity * n
    for actual, expected in [(out.contrastive_loss, contrastive), (out.diversity_loss, diversity),
                             (out.masked_prediction_loss, masked), (out.codevector_perplexity, perplexity),
                             (out.loss, total / n), (out.contrastive_accuracy, correct / n)]:
        torch.testing.assert_close(torch.as_tensor(actual).double(), torch.as_tensor(expected).double(),
                                   atol=1e-5, rtol=1e-5)
    assert int(out.masked_frames) == n and out.loss > 0


def test_training_reaches_every_part_and_the_temperature_follows_its_schedule():
    model = tiny().train()
    features, attention = random_batch([50, 38])
    for step in range(3):
        out = model(features, attention_mask=attention, gumbel_seeds=torch.tensor([1, 2]))
        assert float(out.gumbel_temperature) == pytest.approx(max(2.0 * 0.999995**step, 0.1))
    out.loss.backward()
    lacking = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert lacking == [] and int(model.quantizer.num_updates) == 3
    for name in ("quantizer.weight_proj.weight", "quantizer.codevectors", "project_hid.weight", "project_q.weight",
                 "masked_prediction_head.weight", "wav2vec2_bert.masked_spec_embed"):
        assert dict(model.named_parameters())[name].grad.abs().sum() > 0, name


def test_a_clips_draws_depend_on_its_seed_and_length_only_not_on_its_batch():
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(**SMALL))
    alone_mask, alone_negatives = sample_masks(torch.tensor([37]), 37, torch.tensor([11]), config)
    mask, negatives = sample_masks(torch.tensor([52, 37]), 52, torch.tensor([5, 11]), config)
    assert torch.equal(mask[1, :37], alone_mask[0]) and not mask[1, 37:].any()
    # the same frames, indexed in the second row of the batch (flat indices of row 1 start at 52)
    torch.testing.assert_close(negatives[1][mask[1]] - 52, alone_negatives[0][alone_mask[0]])
    masked = alone_mask[0].nonzero().flatten()
    for frame in masked:  # distractors: the clip's other masked frames, never the frame itself
        picks = alone_negatives[0, frame]
        assert set(picks.tolist()) <= set(masked.tolist()) and frame not in picks
    spans = math.floor(config.pretraining_mask_prob / config.mask_time_length * 36)
    assert int(alone_mask.sum()) <= spans * config.mask_time_length
    model = tiny(conformer_conv_dropout=0.0).train()  # no dropout: the Gumbel noise is the only draw left
    features, attention = random_batch([52, 37])
    with torch.no_grad():
        both = model(features, attention_mask=attention, gumbel_seeds=torch.tensor([5, 11]))
        model.quantizer.num_updates.zero_()
        first = model(features[:1], attention_mask=attention[:1], gumbel_seeds=torch.tensor([5]))
        model.quantizer.num_updates.zero_()
        second = model(features[1:, :37], gumbel_seeds=torch.tensor([11]))
    summed = float(first.contrastive_loss) + float(second.contrastive_loss)
    assert float(both.contrastive_loss) == pytest.approx(summed, rel=1e-5)


def test_a_batch_with_no_masked_frame_gives_zero_losses_not_nan():
    model = tiny().train()
    features, attention = random_batch([30, 22])
    out = model(features, attention_mask=attention, mask_time_indices=torch.zeros(2, 30, dtype=torch.bool),
                sampled_negative_indices=torch.zeros(2, 30, 6, dtype=torch.long))
    assert float(out.loss.detach()) == 0.0 and int(out.masked_frames) == 0
    out.loss.backward()  # still a graph: DDP's gradient reduction stays in step
    assert all(math.isfinite(v) for v in out.log_values().values())


def test_bad_inputs_and_configs_are_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="pre-training runs on the encoder without the adapter"):
        tiny(add_adapter=True)
    with pytest.raises(ValueError, match="codevector_dim=25 is not divisible by num_codevector_groups=2"):
        tiny(codevector_dim=25)  # refused where the model is built (issue 27: the config itself is made)
    with pytest.raises(ValueError, match="too short to mask: pre-training needs more than mask_time_length=10"):
        tiny()(torch.randn(1, 8, 160))
    tiny().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"quantizer.codevectors: checkpoint \(1, 32, 12\), model \(1, 64, 12\)"):
        Wav2Vec2BertForPreTraining.from_pretrained(tmp_path, num_codevectors_per_group=32)


# --------------------------------------------------------------------------------------- loading and saving
def test_a_saved_pretraining_model_loads_as_an_encoder_here_and_in_transformers(tmp_path):
    import transformers

    model = tiny().eval()
    model.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["architectures"] == ["Wav2Vec2BertForPreTraining"] and written["num_codevectors_per_group"] == 16
    # config.json (to_diff_dict) of a plain config carries no pre-training field; to_dict lists every attribute
    assert "num_codevectors_per_group" not in Wav2Vec2BertConfig(**tiny_config_kwargs()).to_diff_dict()
    features, _ = random_batch([30])
    expected = model.wav2vec2_bert(features).last_hidden_state
    ours, info = Wav2Vec2BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and "quantizer.codevectors" in info["unexpected_keys"]
    theirs, their_info = transformers.Wav2Vec2BertModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not their_info["missing_keys"]
    with torch.no_grad():
        torch.testing.assert_close(ours(features).last_hidden_state, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(theirs.eval()(features).last_hidden_state, expected, atol=1e-5, rtol=0)
    ctc = transformers.Wav2Vec2BertForCTC.from_pretrained(tmp_path, vocab_size=7)
    assert ctc.config.vocab_size == 7
    assert type(w2vbert.load_model(tmp_path)) is Wav2Vec2BertForPreTraining
    # ... and in our CTC class, which fine-tuning from `pt/last` starts from: the encoder as saved, the head fresh.
    ours_ctc, ctc_info = w2vbert.Wav2Vec2BertForCTC.from_pretrained(tmp_path, vocab_size=7, output_loading_info=True)
    assert sorted(ctc_info["missing_keys"]) == ["lm_head.bias", "lm_head.weight"]
    with torch.no_grad():
        torch.testing.assert_close(ours_ctc.eval().wav2vec2_bert(features).last_hidden_state, expected, atol=1e-5,
                                   rtol=0)


def test_starting_from_a_hugging_face_checkpoint_initialises_the_pretraining_parts_and_says_so(tmp_path, caplog):
    torch.manual_seed(0)
    base = Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs()))
    base.save_pretrained(tmp_path)
    with caplog.at_level("WARNING", logger="w2vbert"):
        model, info = Wav2Vec2BertForPreTraining.from_pretrained(tmp_path, output_loading_info=True, **SMALL)
    assert sorted({name.split(".")[0] for name in info["missing_keys"]}) == [
        "masked_prediction_head", "project_hid", "project_q", "quantizer"]
    assert "newly initialised 10 tensors" in caplog.text
    assert torch.equal(model.wav2vec2_bert.encoder.layers[0].ffn1.intermediate_dense.weight,
                       base.encoder.layers[0].ffn1.intermediate_dense.weight)
    assert int(model.quantizer.num_updates) == 0 and float(model.quantizer.codevectors.abs().sum()) > 0


def test_the_full_size_release_converts_with_every_tensor_kept_and_the_head_fresh(caplog):
    from test_convert import fairseq2_state
    from w2vbert.model.fairseq2 import infer_config, rename

    state = fairseq2_state(device="meta")
    assert len(state) == 781
    with caplog.at_level("INFO", logger="w2vbert"):
        tensors, sources = rename(state, "w2v-bert", pretraining=True)
    assert len(tensors) == 781 and "dropped" not in caplog.text  # zero unknown, zero dropped
    config = infer_config(tensors, "w2v-bert")
    assert (config.num_codevector_groups, config.num_codevectors_per_group, config.codevector_dim,
            config.proj_codevector_dim) == (2, 320, 768, 768)
    with torch.device("meta"):
        model = Wav2Vec2BertForPreTraining(config)
    expected = model.state_dict()
    assert set(tensors) | {"masked_prediction_head.weight", "masked_prediction_head.bias"} == {
        name.removeprefix("wav2vec2_bert.") if name.startswith("wav2vec2_bert.") else name for name in expected}
    assert all(tuple(t.shape) == tuple(expected.get(n, expected.get("wav2vec2_bert." + n)).shape)
               for n, t in tensors.items())
    assert config.contrastive_layer == 8


def test_a_small_release_file_loads_its_quantizer_into_the_pretraining_class(tmp_path, caplog):
    from test_convert import SMALL as SMALL_SHAPES
    from test_convert import fairseq2_state

    state = fairseq2_state(**SMALL_SHAPES)
    torch.save({"model": state}, tmp_path / "conformer_shaw.pt")
    with caplog.at_level("WARNING", logger="w2vbert"):
        model = Wav2Vec2BertForPreTraining.from_pretrained(tmp_path / "conformer_shaw.pt")
    assert torch.equal(model.quantizer.codevectors, state["quantizer.entries"])
    assert torch.equal(model.project_hid.weight, state["final_proj.weight"])
    assert int(model.quantizer.num_updates) == 7
    assert "newly initialised 2 tensors" in caplog.text and "masked_prediction_head.weight" in caplog.text
    encoder = Wav2Vec2BertModel.from_pretrained(tmp_path / "conformer_shaw.pt")  # other classes still drop them
    assert not any(name.startswith("quantizer") for name in encoder.state_dict())


# -------------------------------------------------------------------------------------------- training runs
def speech_folder(folder, count, seed):
    """espeak-ng sentences from the demo data's word list (scripts/make_demo_data.py), in a folder."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (.ci/run installs it)")
    words = "zero one two three four five six seven eight nine red green blue big small cat dog bird runs".split()
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        text = " ".join(rng.choice(words, size=rng.integers(2, 5)))
        subprocess.run(["espeak-ng", "-s", str(rng.integers(140, 190)), "-w", str(folder / f"{i}.wav"), text],
                       check=True, capture_output=True)
    return folder


def pretraining_config(output_dir, **overrides) -> TrainingConfig:
    values = dict(output_dir=str(output_dir), task="pretrain", learning_rate=2e-3, warmup_steps=10, max_steps=120,
                  max_batch_seconds=12.0, eval_every=60, save_every=60, log_every=20, progress=False,
                  tensorboard=False)
    return TrainingConfig(**values | overrides)


def test_continued_pretraining_learns_on_speech_without_collapsing_the_codebooks(tmp_path):
    """300 steps of a 2-layer model on 48 espeak-ng sentences, evaluated on 12 others every 100 steps. Measured
    (2026-12-01, this CPU): held-out loss 6.97 -> 6.12, contrastive accuracy 0.27 -> 0.40 (chance with 6
    distractors: 0.14), perplexity 26-27 of 32 entries; about 15 s."""
    train = speech_folder(tmp_path / "train", 48, seed=0)
    held = speech_folder(tmp_path / "held", 12, seed=1)
    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(layerdrop=0.0))).save_pretrained(tmp_path / "base")
    config = pretraining_config(tmp_path / "run", max_steps=300, eval_every=100, log_every=50, learning_rate=5e-3,
                                warmup_steps=40)
    summary = pretrain(str(tmp_path / "base"), DataConfig(str(train), str(held)), config, model_overrides=SMALL)
    records = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    trained = [r for r in records if r["split"] == "train"]
    first, *_, last = [r for r in records if r["split"] == "eval"]
    assert summary["steps"] == 300 and trained[-1]["loss"] < 0.9 * trained[0]["loss"]
    assert last["loss"] < 0.95 * first["loss"] and last["contrastive_accuracy"] > first["contrastive_accuracy"]
    assert last["codevector_perplexity"] > 8  # of 2 x 16 entries: the codebooks are in use, not collapsed to a few


def test_a_killed_pretraining_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    clips = speech_folder(tmp_path / "clips", 16, seed=2)
    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(layerdrop=0.2, hidden_dropout=0.1))).save_pretrained(
        tmp_path / "base")
    options = dict(max_steps=8, save_every=3, eval_every=0, gradient_accumulation_steps=2, max_batch_seconds=6.0,
                   log_every=1)
    pretrain(str(tmp_path / "base"), DataConfig(str(clips)), pretraining_config(tmp_path / "a", **options),
             model_overrides=SMALL)

    def kill(trainer, step):
        if step == 5:
            raise KeyboardInterrupt

    import w2vbert.training.recipes as recipes

    original = recipes.Trainer
    recipes.Trainer = lambda *args, **kwargs: original(*args, **kwargs, callbacks=[kill])
    try:
        with pytest.raises(KeyboardInterrupt):
            pretrain(str(tmp_path / "base"), DataConfig(str(clips)), pretraining_config(tmp_path / "b", **options),
                     model_overrides=SMALL)
    finally:
        recipes.Trainer = original
    pretrain(str(tmp_path / "base"), DataConfig(str(clips)), pretraining_config(tmp_path / "b", **options),
             resume=True, model_overrides=SMALL)
    straight = w2vbert.loading.weights.load_weights(tmp_path / "a" / "last")
    resumed = w2vbert.loading.weights.load_weights(tmp_path / "b" / "last")
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=1e-6, msg=name)
    losses = [[json.loads(line)["loss"] for line in open(tmp_path / run / "metrics.jsonl")] for run in "ab"]
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)


def _two_process_worker(rank, port, clips, base, output_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        pretrain(base, DataConfig(clips), pretraining_config(output_dir, max_steps=4, eval_every=0, save_every=4,
                                                             log_every=1, max_batch_seconds=8.0),
                 model_overrides=SMALL)
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_pretrain_as_one_does(tmp_path):
    clips = speech_folder(tmp_path / "clips", 12, seed=3)
    torch.manual_seed(0)
    base = tmp_path / "base"
    # No dropout: each process draws its own (the objective's draws are per clip, from its seed).
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(conformer_conv_dropout=0.0))).save_pretrained(base)
    one = pretraining_config(tmp_path / "one", max_steps=4, eval_every=0, save_every=4, log_every=1,
                             max_batch_seconds=8.0)
    pretrain(str(base), DataConfig(str(clips)), one, model_overrides=SMALL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_two_process_worker, args=(port, str(clips), str(base), str(tmp_path / "two")),
                                nprocs=2)
    losses = [[json.loads(line)["loss"] for line in open(tmp_path / run / "metrics.jsonl")] for run in ("one", "two")]
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    single, double = (w2vbert.loading.weights.load_weights(tmp_path / run / "last") for run in ("one", "two"))
    for name, tensor in single.items():
        torch.testing.assert_close(double[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_the_pretrain_command_reads_a_folder_and_a_manifest_with_text_and_counts_short_clips(tmp_path, capsys, caplog):
    from w2vbert.cli.parser import main

    clips = speech_folder(tmp_path / "clips", 6, seed=4)
    with wave.open(str(clips / "tiny.wav"), "wb") as f:  # 0.1 s: fewer steps than a masked span
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes(np.zeros(1600, np.int16).tobytes())
    torch.manual_seed(0)
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(**SMALL))
    config.save_pretrained(tmp_path / "scratch")  # a config alone: --from-scratch builds the model from it
    code = main(["pretrain", "--model", str(tmp_path / "scratch"), "--from-scratch", "--train", str(clips),
                 "--output-dir", str(tmp_path / "run"), "--max-steps", "3", "--warmup-steps", "1",
                 "--max-batch-seconds", "10", "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["steps"] == 3 and summary["bad_examples"] == {"too short to mask": 1}
    assert type(w2vbert.load_model(tmp_path / "run" / "last")) is Wav2Vec2BertForPreTraining
    rows = ["audio\ttext"] + [f"{p.name}\tsome words" for p in sorted(clips.glob("[0-9].wav"))]
    (clips / "with_text.tsv").write_text("\n".join(rows) + "\n")
    # Continued from the run, with the trainer's bf16 autocast and gradient checkpointing; the text column is
    # ignored, and said once.
    with caplog.at_level(logging.INFO, logger="w2vbert"):
        code = main(["pretrain", "--model", str(tmp_path / "run" / "last"), "--train", str(clips / "with_text.tsv"),
                     "--output-dir", str(tmp_path / "again"), "--max-steps", "2", "--warmup-steps", "1",
                     "--max-batch-seconds", "10", "--no-progress", "--precision", "bf16",
                     "--gradient-checkpointing", "--log-every", "1"])
    assert code == 0 and json.loads(capsys.readouterr().out)["train_examples"] == 6
    assert caplog.text.count("pre-training reads audio only; columns ['text'] are ignored") == 1
    logged = [json.loads(line) for line in (tmp_path / "again" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)


def test_seeds_differ_per_epoch_and_example_and_repeat_for_the_same_pair():
    assert torch.equal(example_seeds(0, 1, [4, 5]), example_seeds(0, 1, [4, 5]))
    seeds = {int(s) for s in example_seeds(0, 1, range(50))} | {int(s) for s in example_seeds(0, 2, range(50))}
    assert len(seeds) == 100



def test_convert_keeps_the_pretraining_tensors_when_asked(tmp_path):
    from test_convert import SMALL as SMALL_SHAPES
    from test_convert import fairseq2_state
    from w2vbert.cli.parser import main

    state = fairseq2_state(**SMALL_SHAPES)
    torch.save({"model": state}, tmp_path / "conformer_shaw.pt")
    assert main(["convert", str(tmp_path / "conformer_shaw.pt"), str(tmp_path / "out"), "--pretraining"]) == 0
    model = w2vbert.load_model(tmp_path / "out")
    assert type(model) is Wav2Vec2BertForPreTraining
    assert torch.equal(model.quantizer.weight_proj.weight, state["quantizer.entry_proj.weight"])


def noise_folder(folder, count, seed):
    """Clips of 0.5-1 s of noise: enough to mask, and quick to train on."""
    from test_training import write_wav

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        write_wav(folder / f"{i}.wav", 0.1 * rng.standard_normal(int(16000 * rng.uniform(0.5, 1.0))))
    return folder


def test_pretrain_takes_the_encoder_of_a_ctc_checkpoint_with_an_adapter_and_finetune_puts_a_head_back(
        tmp_path, capsys, caplog):
    from w2vbert.cli.parser import main

    torch.manual_seed(0)
    ctc = w2vbert.Wav2Vec2BertForCTC(Wav2Vec2BertConfig(**tiny_config_kwargs(**SMALL, add_adapter=True, vocab_size=7)))
    ctc.save_pretrained(tmp_path / "ctc")
    clips = noise_folder(tmp_path / "clips", 3, seed=0)
    options = ["--train", str(clips), "--max-steps", "1", "--warmup-steps", "0", "--max-batch-seconds", "4",
               "--learning-rate", "1e-9", "--no-progress"]
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        assert main(["pretrain", "--model", str(tmp_path / "ctc"), "--output-dir", str(tmp_path / "run"),
                     *options]) == 0
    said = [r.message for r in caplog.records if "leaves out" in r.message]
    assert len(said) == 1 and said[0].startswith(f"pre-training takes the encoder of {tmp_path / 'ctc'} (a "
                                                 "Wav2Vec2BertForCTC) and leaves out its head and adapter (")
    pretrained = w2vbert.load_model(tmp_path / "run" / "last")
    assert type(pretrained) is Wav2Vec2BertForPreTraining and not pretrained.config.add_adapter
    for name, tensor in ctc.wav2vec2_bert.state_dict().items():  # the encoder is the checkpoint's (lr 1e-9)
        if not name.startswith("adapter."):
            torch.testing.assert_close(pretrained.wav2vec2_bert.state_dict()[name], tensor, atol=1e-6, rtol=0)
    rows = ["audio\ttext"] + [f"{p.name}\tab" for p in sorted(clips.glob("*.wav"))]
    (clips / "train.tsv").write_text("\n".join(rows) + "\n")
    assert main(["finetune", "--model", str(tmp_path / "run" / "last"), "--train", str(clips / "train.tsv"),
                 "--output-dir", str(tmp_path / "ctc-again"), *options[2:]]) == 0
    tuned = w2vbert.load_model(tmp_path / "ctc-again" / "last")
    assert type(tuned) is w2vbert.Wav2Vec2BertForCTC and tuned.config.add_adapter  # the CTC default, as from any
    torch.testing.assert_close(tuned.wav2vec2_bert.feature_projection.projection.weight,
                               pretrained.wav2vec2_bert.feature_projection.projection.weight, atol=1e-6, rtol=0)


def test_pretrain_reads_metas_pt_file_with_the_w2v_bert_front_end(tmp_path, caplog):
    from test_convert import SMALL as SMALL_SHAPES
    from test_convert import fairseq2_state
    from w2vbert.cli.parser import main

    state = fairseq2_state(**SMALL_SHAPES)
    torch.save({"model": state}, tmp_path / "conformer_shaw.pt")
    clips = noise_folder(tmp_path / "clips", 2, seed=1)
    assert main(["pretrain", "--model", str(tmp_path / "conformer_shaw.pt"), "--train", str(clips), "--output-dir",
                 str(tmp_path / "run"), "--max-steps", "1", "--warmup-steps", "0", "--max-batch-seconds", "4",
                 "--no-progress"]) == 0
    assert (tmp_path / "run" / "last" / "preprocessor_config.json").is_file()
    assert w2vbert.load_model(tmp_path / "run" / "last").quantizer.codevectors.shape == state["quantizer.entries"].shape


def test_a_clip_cut_short_below_a_masked_span_is_left_out_by_name_and_the_run_resumes(tmp_path, capsys, caplog):
    """cut.wav's header announces 1 s; the file holds 0.05 s, fewer steps than a masked span once decoded. The
    model is built from a CTC config with an adapter (--from-scratch): pre-training builds the encoder alone."""
    from test_training import truncated_wav
    from w2vbert.cli.parser import main

    clips = noise_folder(tmp_path / "clips", 2, seed=2)
    truncated_wav(clips / "cut.wav", announced=1.0, held=0.05)
    torch.manual_seed(0)
    Wav2Vec2BertConfig(**tiny_config_kwargs(**SMALL, add_adapter=True)).save_pretrained(tmp_path / "scratch")
    command = ["pretrain", "--model", str(tmp_path / "scratch"), "--from-scratch", "--train", str(clips),
               "--output-dir", str(tmp_path / "run"), "--warmup-steps", "0", "--max-batch-seconds", "4",
               "--no-progress"]
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        assert main([*command, "--max-steps", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 2 and summary["bad_examples_in_training"] == {"too short to mask": 2}  # each read
    assert f"skipped {clips / 'cut.wav'}: 0.05 s gives 1 steps of 20 ms; masking needs more than 10" in caplog.text
    assert main([*command, "--max-steps", "3", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    assert not w2vbert.load_model(tmp_path / "run" / "last").config.add_adapter
