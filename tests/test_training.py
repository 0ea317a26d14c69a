"""The trainer: LR schedules, learning, exact resume, crash-safe checkpoints, DDP = one process, both tasks."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiny_config_kwargs
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForCTC, Wav2Vec2BertModel
from w2vbert.loading.weights import load_weights
from w2vbert.text.encoding import pad_labels
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
from w2vbert.training.checkpoints import DAMAGED, TrainerState, find_checkpoint, publish_directory, read_trainer_state
from w2vbert.training.recipes import DataConfig, finetune
from w2vbert.training.schedule import lr_factor
from w2vbert.training.trainer import Trainer, TrainingConfig

VOCAB = {"[PAD]": 0, "a": 1, "b": 2, "c": 3, "d": 4, "|": 5, "[UNK]": 6}


def tokenizer():
    return Wav2Vec2CTCTokenizer(vocab=VOCAB, unk_token="[UNK]", pad_token="[PAD]")


class FeatureData:
    """Precomputed random features and transcripts: trains the loop without audio decoding."""

    def __init__(self, count: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        tok = tokenizer()
        self.items = []
        for _ in range(count):
            frames = int(rng.integers(24, 48))
            text = " ".join("".join(rng.choice(list("abcd"), size=rng.integers(1, 3))) for _ in range(2))
            self.items.append({"features": torch.from_numpy(rng.standard_normal((frames, 160), dtype=np.float32)),
                               "target": tok.encode(text), "text": text, "seconds": frames * 0.02})
        self.seconds = [item["seconds"] for item in self.items]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def collate(items):
    frames = max(item["features"].shape[0] for item in items)
    features = torch.zeros(len(items), frames, 160)
    mask = torch.zeros(len(items), frames, dtype=torch.long)
    for row, item in enumerate(items):
        features[row, : item["features"].shape[0]] = item["features"]
        mask[row, : item["features"].shape[0]] = 1
    return {"input_features": features, "attention_mask": mask, "labels": pad_labels([i["target"] for i in items]),
            "seconds": sum(i["seconds"] for i in items), "texts": [i["text"] for i in items]}


def tiny_ctc(seed: int = 0, **overrides) -> Wav2Vec2BertForCTC:
    torch.manual_seed(seed)
    kwargs = tiny_config_kwargs(vocab_size=len(VOCAB), pad_token_id=0, add_adapter=True, ctc_zero_infinity=True,
                                ctc_loss_reduction="mean")
    kwargs.update(overrides)
    return Wav2Vec2BertForCTC(Wav2Vec2BertConfig(**kwargs))


def train_config(tmp_path, **overrides) -> TrainingConfig:
    values = dict(output_dir=str(tmp_path), learning_rate=3e-3, warmup_steps=2, max_steps=6, max_batch_seconds=2.5,
                  eval_every=0, save_every=100, log_every=1, progress=False, tensorboard=False)
    values.update(overrides)
    return TrainingConfig(**values)


def kill_at(step: int):
    """A trainer callback that stops the run after optimizer step `step`, as a kill would."""
    def kill(trainer, at):
        if at == step:
            raise KeyboardInterrupt
    return kill


def assert_same_weights(a: dict, b: dict) -> None:
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, rtol=0, atol=1e-6, msg=name)


def losses(output_dir) -> list[float]:
    records = [json.loads(line) for line in open(os.path.join(output_dir, "metrics.jsonl"))]
    return [r["loss"] for r in records if r["split"] == "train"]


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_lr_schedule_matches_transformers(schedule):
    import transformers

    make = {"linear": transformers.get_linear_schedule_with_warmup,
            "cosine": transformers.get_cosine_schedule_with_warmup,
            "constant": transformers.get_constant_schedule_with_warmup}[schedule]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    kwargs = {"num_warmup_steps": 7} | ({} if schedule == "constant" else {"num_training_steps": 40})
    reference = make(optimizer, **kwargs)
    for step in range(45):
        assert lr_factor(step, 7, 40, schedule) == pytest.approx(reference.lr_lambdas[0](step), abs=1e-12)


def test_few_steps_of_ctc_training_reduce_the_loss(tmp_path):
    data = FeatureData(8)
    config = train_config(tmp_path, max_steps=25, max_batch_seconds=10.0, warmup_steps=3)
    Trainer(tiny_ctc(), config, data, collate).train()
    curve = losses(tmp_path)
    assert len(curve) == 25
    assert np.mean(curve[-3:]) < 0.7 * np.mean(curve[:3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_ctc_training_on_cuda_with_autocast_reduces_the_loss(tmp_path, precision):
    data = FeatureData(8)
    config = train_config(tmp_path, max_steps=25, max_batch_seconds=10.0, warmup_steps=3, device="cuda",
                          precision=precision)
    Trainer(tiny_ctc(), config, data, collate).train()
    curve = losses(tmp_path)
    assert len(curve) == 25 and all(np.isfinite(curve))
    assert np.mean(curve[-3:]) < 0.7 * np.mean(curve[:3])


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """Kill after step 5 (last checkpoint at 4), resume to 8: same weights as 8 steps straight, with dropout,
    LayerDrop and SpecAugment drawing random numbers and gradient accumulation spanning batches."""
    data = FeatureData(14)
    model_kwargs = dict(hidden_dropout=0.1, layerdrop=0.2, mask_time_prob=0.3, mask_time_length=2,
                        mask_time_min_masks=1)
    options = dict(max_steps=8, save_every=2, gradient_accumulation_steps=2, max_batch_seconds=2.0)

    straight_and_resumed(tmp_path, data, model_kwargs, options)


def straight_and_resumed(tmp_path, data, model_kwargs: dict, options: dict) -> tuple[Trainer, Trainer]:
    """8 steps straight into tmp_path/a; into tmp_path/b, killed after step 5 (last checkpoint at 4) and resumed
    to 8 in a model built anew. Asserts the two end with the same weights and loss curve."""
    straight = Trainer(tiny_ctc(**model_kwargs), train_config(tmp_path / "a", **options), data, collate)
    straight.train()
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_ctc(**model_kwargs), train_config(tmp_path / "b", **options), data, collate,
                callbacks=[kill_at(5)]).train()
    assert json.loads((tmp_path / "b" / "last" / "trainer_state.json").read_text())["step"] == 4
    # A fresh process would build the model anew (other random init): the checkpoint must override it.
    resumed = Trainer(tiny_ctc(seed=1, **model_kwargs), train_config(tmp_path / "b", **options), data, collate)
    resumed.train(resume=True)
    assert resumed.state.epoch == straight.state.epoch and resumed.state.step == 8
    assert_same_weights(straight.model.state_dict(), resumed.model.state_dict())
    assert losses(tmp_path / "a") == pytest.approx(losses(tmp_path / "b"), abs=1e-5)
    return straight, resumed


def test_a_kill_while_publishing_leaves_last_loadable_and_the_run_resumes_right(tmp_path, monkeypatch):
    data = FeatureData(10)
    options = dict(max_steps=4, save_every=1)
    straight = Trainer(tiny_ctc(), train_config(tmp_path / "a", **options), data, collate)
    straight.train()

    import w2vbert.training.checkpoints as trainer_module

    real_replace, swaps = os.replace, []

    def crash_on_step_3(src, dst):
        if os.path.basename(dst) == "last":
            swaps.append(dst)
        # The step-3 save: its folder is complete and renamed; now the link `last` would be swapped onto it.
        if len(swaps) == 3:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(trainer_module.os, "replace", crash_on_step_3)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny_ctc(), train_config(tmp_path / "b", **options), data, collate).train()
    monkeypatch.setattr(trainer_module.os, "replace", real_replace)
    # `last` never went missing: it still names step 2's checkpoint, which loads as a model directory.
    assert json.loads((tmp_path / "b" / "last" / "trainer_state.json").read_text())["step"] == 2
    assert Wav2Vec2BertForCTC.from_pretrained(tmp_path / "b" / "last").config.vocab_size == len(VOCAB)
    resumed = Trainer(tiny_ctc(seed=3), train_config(tmp_path / "b", **options), data, collate)
    resumed.train(resume=True)
    assert find_checkpoint(tmp_path / "b") == tmp_path / "b" / "last"
    assert len(list((tmp_path / "b").glob("last*"))) == 2  # the link and its folder: the leftover is cleared
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kill_at", range(3))  # before the rename of the folder, the link swap, the clean-up
def test_publishing_keeps_a_complete_checkpoint_under_its_name_whenever_it_is_killed(tmp_path, monkeypatch, kill_at):
    import w2vbert.training.checkpoints as trainer_module

    def checkpoint(folder, step):
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"step": step}))

    checkpoint(tmp_path / ".tmp-last", 1)
    publish_directory(tmp_path / ".tmp-last", tmp_path / "last")
    checkpoint(tmp_path / ".tmp-last", 2)
    calls = []

    def killed(original):
        def call(*args, **kwargs):
            calls.append(original)
            if len(calls) > kill_at:
                raise KeyboardInterrupt
            return original(*args, **kwargs)
        return call

    monkeypatch.setattr(trainer_module.os, "replace", killed(os.replace))
    monkeypatch.setattr(trainer_module.shutil, "rmtree", killed(trainer_module.shutil.rmtree))
    with pytest.raises(KeyboardInterrupt):
        publish_directory(tmp_path / ".tmp-last", tmp_path / "last")
    monkeypatch.undo()
    step = json.loads((find_checkpoint(tmp_path) / "trainer_state.json").read_text())["step"]
    assert find_checkpoint(tmp_path) == tmp_path / "last" and step in (1, 2)


def test_publish_directory_keeps_the_old_checkpoint_until_the_new_one_is_in_place(tmp_path):
    final, temporary = tmp_path / "last", tmp_path / ".tmp-last"
    for folder, step in ((final, 1), (temporary, 2)):
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"step": step}))
    publish_directory(temporary, final)
    assert json.loads((final / "trainer_state.json").read_text()) == {"step": 2}
    assert not temporary.exists() and not (tmp_path / "last.old").exists()
    half_written = tmp_path / "best"
    half_written.mkdir()
    (half_written / "model.safetensors").write_bytes(b"")
    assert find_checkpoint(tmp_path, "best") is None  # no trainer_state.json: never taken for a checkpoint


# Dropout, LayerDrop and SpecAugment draw per-rank random numbers; off, the two runs compute the same thing.
NO_RANDOMNESS = dict(final_dropout=0.0, conformer_conv_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0)


def _ddp_worker(rank, world_size, port, output_dir, sharding):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        data = FeatureData(12)
        config = train_config(output_dir, max_steps=5, max_batch_seconds=3.0, gradient_accumulation_steps=2,
                              sharding=sharding)
        trainer = Trainer(tiny_ctc(**NO_RANDOMNESS), config, data,
                          collate, eval_data=FeatureData(4, seed=1), tokenizer=tokenizer())
        trainer.train()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("sharding", ["ddp", "fsdp"])
@pytest.mark.filterwarnings("ignore:FSDP2-wrapped module")
def test_two_processes_follow_the_loss_curve_of_one_process(tmp_path, sharding):
    single = Trainer(tiny_ctc(**NO_RANDOMNESS),
                     train_config(tmp_path / "one", max_steps=5, max_batch_seconds=3.0, gradient_accumulation_steps=2),
                     FeatureData(12), collate, eval_data=FeatureData(4, seed=1), tokenizer=tokenizer())
    single.train()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(tmp_path / "two"), sharding), nprocs=2)
    np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-4)
    two = load_weights(tmp_path / "two" / "last")
    for name, tensor in single.model.state_dict().items():
        torch.testing.assert_close(two[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    evals = [json.loads(line) for line in open(tmp_path / "two" / "metrics.jsonl") if '"eval"' in line]
    assert evals[-1]["loss"] == pytest.approx(single.state.history[-1]["loss"], rel=1e-4)


# ------------------------------------------------------------------------------------ end to end, on audio
def write_wav(path, samples, rate=16000):
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes())


def tone_manifest(folder, name, count, seed):
    """Clips of low or high beeps, labelled so: a classification task a tiny model learns in a few steps.

    Beeps, not a steady tone: the features are normalised per mel bin over time, which flattens a steady tone."""
    rng = np.random.default_rng(seed)
    rows = ["audio,label"]
    for i in range(count):
        label = ["low", "high"][i % 2]
        freq = (200 if label == "low" else 2000) * rng.uniform(0.9, 1.1)
        t = np.arange(int(16000 * rng.uniform(0.3, 0.6))) / 16000
        beeps = np.sin(2 * np.pi * 6 * t) > 0
        audio = 0.5 * beeps * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(len(t))
        write_wav(folder / f"{name}{i}.wav", audio)
        rows.append(f"{name}{i}.wav,{label}")
    (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return folder / f"{name}.csv"


def test_classify_task_end_to_end_from_manifests(tmp_path):
    import transformers

    base = tmp_path / "base"
    torch.manual_seed(0)
    from w2vbert import Wav2Vec2BertModel

    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(base)
    train = tone_manifest(tmp_path, "train", 12, 0)
    held = tone_manifest(tmp_path, "held", 6, 1)
    with open(train, "a") as f:
        f.write("missing.wav,low\n")
    out = tmp_path / "run"
    config = TrainingConfig(output_dir=str(out), task="classify", learning_rate=3e-3, warmup_steps=2, max_steps=24,
                            max_batch_seconds=3.0, eval_every=8, save_every=8, log_every=4, progress=False)
    summary = finetune(str(base), DataConfig(str(train), str(held)), config)
    assert summary["bad_examples"] == {"missing audio": 1} and summary["train_examples"] == 12
    assert summary["final_eval"]["accuracy"] == 1.0
    reference = transformers.Wav2Vec2BertForSequenceClassification.from_pretrained(out / "best")
    assert reference.config.id2label == {0: "high", 1: "low"}
    assert transformers.SeamlessM4TFeatureExtractor.from_pretrained(out / "best").sampling_rate == 16000
    assert (out / "tensorboard").is_dir() and (out / "summary.json").is_file()


def test_ctc_finetune_writes_checkpoints_transformers_loads_with_their_processor(tmp_path):
    import transformers

    from w2vbert.cli.parser import build_parser

    base = tmp_path / "base"
    torch.manual_seed(0)
    Wav2Vec2BertConfig(**tiny_config_kwargs())  # validate kwargs
    from w2vbert import Wav2Vec2BertModel

    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(base)
    rng = np.random.default_rng(0)
    rows = ["audio\ttext"]
    for i, text in enumerate(["Hello, World!", "abc def", "a b", "", "hello hello hello hello"]):
        seconds = 0.12 if i == 4 else 0.6  # the last is far too short for its transcript
        write_wav(tmp_path / f"{i}.wav", 0.1 * rng.standard_normal(int(16000 * seconds)))
        rows.append(f"{i}.wav\t{text}")
    (tmp_path / "train.tsv").write_text("\n".join(rows) + "\n")
    args = build_parser().parse_args([
        "finetune", "--model", str(base), "--train", str(tmp_path / "train.tsv"), "--eval", str(tmp_path / "train.tsv"),
        "--output-dir", str(tmp_path / "run"), "--max-steps", "3", "--warmup-steps", "1", "--eval-every", "2",
        "--save-every", "2", "--max-batch-seconds", "2",
    ])
    assert args.run(args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # Each of train and eval reads the same manifest: one empty transcript and one too-short clip per read.
    assert summary["bad_examples"] == {"empty transcript": 2, "too short for transcript": 2}
    assert not math.isnan(summary["final_eval"]["wer"])
    for name in ("best", "last"):
        model = transformers.Wav2Vec2BertForCTC.from_pretrained(tmp_path / "run" / name)
        tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "run" / name)
        assert model.config.vocab_size == len(tok) and model.config.pad_token_id == tok.pad_token_id
        assert model.config.add_adapter and model.config.ctc_zero_infinity
        assert "," not in tok.get_vocab() and "H" not in tok.get_vocab()  # normalised: lowercase, no punctuation
        assert Wav2Vec2BertForCTC.from_pretrained(tmp_path / "run" / name).config.vocab_size == len(tok)
        assert len(Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "run" / name)) == len(tok)


def test_frozen_parts_stay_put_under_checkpointing_and_bf16_autocast(tmp_path):
    model = tiny_ctc()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = train_config(tmp_path, max_steps=3, freeze_feature_projection=True, freeze_layers=1,
                          gradient_checkpointing=True, precision="bf16", max_batch_seconds=10.0)
    Trainer(model, config, FeatureData(6), collate).train()
    assert model.is_gradient_checkpointing
    after = model.state_dict()
    frozen = ("wav2vec2_bert.feature_projection.", "wav2vec2_bert.encoder.layers.0.")
    for name, tensor in before.items():
        if name.startswith(frozen):
            assert torch.equal(after[name], tensor), name
    assert not torch.equal(after["wav2vec2_bert.encoder.layers.1.ffn1.intermediate_dense.weight"],
                           before["wav2vec2_bert.encoder.layers.1.ffn1.intermediate_dense.weight"])
    assert all(math.isfinite(loss) for loss in losses(tmp_path))


class PlantedPickle:
    """A pickle that would create a file when loaded with full unpickling."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("planted", ["optimizer.pt", "scheduler.pt", "rng_state_0.pt"])
def test_resume_never_unpickles_code_planted_in_the_run_directory(tmp_path, planted):
    data = FeatureData(6)
    config = train_config(tmp_path / "run", max_steps=2, save_every=1)
    Trainer(tiny_ctc(), config, data, collate).train()
    pwned = tmp_path / "pwned"
    torch.save({"state": PlantedPickle(pwned)}, tmp_path / "run" / "last" / planted)
    with pytest.raises(ValueError, match=f"refusing to load .*{planted}.*system"):
        Trainer(tiny_ctc(), train_config(tmp_path / "run", max_steps=3), data, collate).train(resume=True)
    assert not pwned.exists()


def test_a_second_run_on_the_same_output_directory_is_refused_clearly(tmp_path):
    data = FeatureData(6)
    second = []

    def start_another(trainer, step):
        if step == 1:
            with pytest.raises(RuntimeError, match="in use by another training run"):
                Trainer(tiny_ctc(), train_config(tmp_path, max_steps=2), data, collate).train()
            second.append(step)

    Trainer(tiny_ctc(), train_config(tmp_path, max_steps=2), data, collate, callbacks=[start_another]).train()
    assert second == [1]
    Trainer(tiny_ctc(), train_config(tmp_path, max_steps=3), data, collate).train(resume=True)  # free again


def test_a_torn_last_metrics_record_does_not_block_resume_but_a_bad_middle_line_is_named(tmp_path):
    data = FeatureData(6)
    Trainer(tiny_ctc(), train_config(tmp_path, max_steps=2, save_every=1), data, collate).train()
    metrics = tmp_path / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 3, "split": "tra')  # what a kill mid-write leaves
    Trainer(tiny_ctc(), train_config(tmp_path, max_steps=3), data, collate).train(resume=True)
    assert [json.loads(line)["step"] for line in metrics.read_text().splitlines()] == [1, 2, 3]
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "not json", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: not a metrics record"):
        Trainer(tiny_ctc(), train_config(tmp_path, max_steps=4), data, collate).train(resume=True)


class PartlyBadData(FeatureData):
    """Feature items with one clip per epoch that 'fails to decode' (None, as SpeechDataset gives with skip)."""

    def __getitem__(self, index):
        return None if index == 3 else super().__getitem__(index)


def collate_skipping(items):
    good = [item for item in items if item is not None]
    batch = collate(good) if good else {"input_features": torch.zeros(0, 1, 160),
                                        "attention_mask": torch.zeros(0, 1, dtype=torch.long),
                                        "labels": torch.zeros(0, 0, dtype=torch.long), "seconds": 0.0, "texts": []}
    return batch | {"bad": ["unreadable audio"] * (len(items) - len(good))}


def test_clips_that_fail_while_training_are_left_out_and_counted_every_time_they_are_read(tmp_path):
    data = PartlyBadData(8)
    config = train_config(tmp_path, max_steps=12, max_batch_seconds=1.2, max_batch_size=1)  # one clip per batch
    summary = Trainer(tiny_ctc(), config, data, collate_skipping).train()
    assert summary["bad_examples_in_training"] == {"unreadable audio": 1}  # 12 batches of 8 clips: read once
    assert all(math.isfinite(loss) for loss in losses(tmp_path))
    summary = Trainer(tiny_ctc(), train_config(tmp_path / "b", max_steps=24, max_batch_seconds=1.2,
                                               max_batch_size=1), data, collate_skipping).train()
    assert summary["bad_examples_in_training"] == {"unreadable audio": 3}  # three epochs


def truncated_wav(path, announced: float, held: float, seed: int = 0) -> None:
    """A WAV whose header announces `announced` seconds but whose file ends after `held` (a copy cut short)."""
    write_wav(path, 0.1 * np.random.default_rng(seed).standard_normal(int(16000 * announced)))
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 2 * int(16000 * held)])  # 44 header bytes, then 16-bit samples


def test_a_clip_cut_short_is_counted_too_short_for_its_transcript_once_decoded(tmp_path, caplog):
    """The header of 1.wav announces 1 s, enough for its 23 characters; the file holds 0.07 s (1 output frame)."""
    torch.manual_seed(0)

    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(tmp_path / "base")
    write_wav(tmp_path / "0.wav", 0.1 * np.random.default_rng(0).standard_normal(8000))
    truncated_wav(tmp_path / "1.wav", announced=1.0, held=0.07)
    (tmp_path / "train.tsv").write_text("audio\ttext\n0.wav\tab\n1.wav\tthe quick brown fox jum\n")
    config = train_config(tmp_path / "run", max_steps=2, max_batch_seconds=2.0)
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        summary = finetune(str(tmp_path / "base"), DataConfig(str(tmp_path / "train.tsv")), config)
    assert summary["train_examples"] == 2 and summary["bad_examples"] == {}  # the header promised enough
    assert summary["bad_examples_in_training"] == {"too short for transcript": 2}  # one read per step
    assert f"skipped {tmp_path / 'train.tsv'}:3: 0.07 s gives 1 output frames, CTC needs 23" in caplog.text


def test_resuming_a_finished_run_says_so_and_trains_nothing(tmp_path, caplog):
    data = FeatureData(6)
    first = Trainer(tiny_ctc(), train_config(tmp_path, max_steps=3), data, collate).train()
    before = (tmp_path / "metrics.jsonl").read_text(), load_weights(tmp_path / "last")
    with caplog.at_level(logging.WARNING, logger="w2vbert"):
        again = Trainer(tiny_ctc(seed=1), train_config(tmp_path, max_steps=3), data, collate).train(resume=True)
    assert again["steps"] == first["steps"] == 3 and again["epochs"] == first["epochs"]
    assert [r.message for r in caplog.records] == [
        f"{tmp_path} is finished: step 3 of max_steps=3, nothing to train (raise max_steps to continue it)"]
    assert (tmp_path / "metrics.jsonl").read_text() == before[0]
    assert_same_weights(before[1], load_weights(tmp_path / "last"))


STATE = {"step": 3, "epoch": 1, "batches_in_epoch": 2, "best_metric": 0.5, "best_step": 2, "audio_seconds": 4.5,
         "history": [{"step": 2, "wer": 0.5}], "bad_examples": {"unreadable audio": 1}, "world_size": 1}
WRONG = {  # field -> values it must refuse (JSON's kinds: a bool is not a number, a string is not a count)
    "step": st.one_of(st.integers(max_value=-1), st.floats(), st.text(), st.none(), st.booleans()),
    "epoch": st.one_of(st.integers(max_value=-1), st.floats(), st.text(), st.none()),
    "batches_in_epoch": st.one_of(st.integers(max_value=-1), st.text(), st.lists(st.integers())),
    "best_metric": st.one_of(st.text(), st.booleans(), st.lists(st.floats())),
    "best_step": st.one_of(st.integers(max_value=-1), st.text(), st.floats()),
    "audio_seconds": st.one_of(st.floats(max_value=-1e-9), st.text(), st.none()),
    "history": st.one_of(st.integers(), st.text(), st.lists(st.integers(), min_size=1)),
    "bad_examples": st.one_of(st.lists(st.integers()), st.dictionaries(st.text(), st.integers(max_value=-1),
                                                                         min_size=1)),
    "world_size": st.one_of(st.integers(max_value=0), st.text(), st.none()),
}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(WRONG)).flatmap(lambda name: st.tuples(st.just(name), WRONG[name])))
def test_a_damaged_trainer_state_is_refused_naming_the_file_and_the_field(damage):
    name, value = damage
    with tempfile.TemporaryDirectory() as folder:  # hypothesis runs many examples in one test: no tmp_path
        (Path(folder) / "trainer_state.json").write_text(json.dumps(STATE | {name: value}))
        with pytest.raises(ValueError, match=rf"trainer_state\.json: field '{name}' must be .*: the checkpoint is "
                                             "damaged") as refused:
            read_trainer_state(Path(folder), world_size=1)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("text", ["", "{\"step\": 3", "[3]", "{\"world_size\": 1}"])
def test_a_trainer_state_that_is_not_a_state_object_is_refused_in_one_line(tmp_path, text):
    (tmp_path / "trainer_state.json").write_text(text)
    with pytest.raises(ValueError, match=r"trainer_state\.json: .*the checkpoint is damaged") as refused:
        read_trainer_state(tmp_path, world_size=1)
    assert "\n" not in str(refused.value)


def test_resume_from_a_damaged_trainer_state_fails_in_one_line_and_a_sound_one_reads_back(tmp_path, capsys):
    from w2vbert.cli.parser import main

    (tmp_path / "trainer_state.json").write_text(json.dumps(STATE))  # a sound state reads back whole
    assert read_trainer_state(tmp_path, 1) == TrainerState(**{k: v for k, v in STATE.items() if k != "world_size"})
    train = tone_manifest(tmp_path, "train", 2, 0)
    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs(mask_time_prob=0.0))).save_pretrained(tmp_path / "base")
    command = ["finetune", "--task", "classify", "--model", str(tmp_path / "base"), "--train", str(train),
               "--output-dir", str(tmp_path / "run"), "--max-steps", "1", "--no-progress"]
    assert main(command) == 0
    capsys.readouterr()
    assert main([*command, "--resume"]) == 0 and json.loads(capsys.readouterr().out)["steps"] == 1  # finished
    state = tmp_path / "run" / "last" / "trainer_state.json"
    state.write_text(json.dumps(json.loads(state.read_text()) | {"step": -5}))
    assert main([*command, "--max-steps", "2", "--resume"]) == 1
    error = capsys.readouterr().err
    assert error == f"w2vbert: error: {state}: field 'step' must be a whole number >= 0, got -5{DAMAGED}\n"
