"""Waveform augmentation: what a training clip may meet, drawn reproducibly, within the stated ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config_kwargs
from test_training import assert_same_weights, kill_at, tone_manifest
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForSequenceClassification, Wav2Vec2BertModel
from w2vbert.audio.augment import LSB_16BIT, Augmentation, Augmented
from w2vbert.audio.features import SeamlessM4TFeatureExtractor
from w2vbert.cli.parser import main
from w2vbert.training.datasets import Collator, SpeechDataset, load_examples
from w2vbert.training.examples import BadExamples
from w2vbert.training.trainer import Trainer, TrainingConfig


class Clips:
    """Two clips of a 440 Hz tone (the shape SpeechDataset items have), and one that failed to decode."""

    def __init__(self) -> None:
        tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
        self.items = [{"audio": tone, "seconds": 1.0, "text": "a"}, None, {"audio": tone[:8000], "seconds": 0.5}]
        self.seconds = [1.0, 0.0, 0.5]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def test_the_same_seed_draws_the_same_clip_and_another_read_draws_another():
    data = Augmented(Clips(), Augmentation())
    torch.manual_seed(3)
    first = data[0]["audio"]
    torch.manual_seed(3)
    again = data[0]["audio"]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(data[0]["audio"], first)


def test_offsets_gains_and_noise_floors_stay_within_their_ranges():
    silence = np.zeros(16000, np.float32)
    augmentation = Augmentation(max_offset_ms=40, gain_db=(-6, 6), noise_probability=1.0, noise_dbfs=(-60, -40),
                                dither_probability=0.0)
    torch.manual_seed(0)
    for _ in range(50):
        out = augmentation(silence)
        assert 16000 <= len(out) <= 16000 + 640 and out.dtype == np.float32
        level = 20 * np.log10(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
        assert -6 - 60 - 0.5 < level < 6 - 40 + 0.5  # the floor's level, scaled by the gain applied before it


def test_dither_alone_is_at_most_one_16bit_step_and_loud_clips_are_clipped_as_a_file_would_be():
    dither = Augmentation(max_offset_ms=0, gain_db=(0, 0), noise_probability=0.0, dither_probability=1.0)
    torch.manual_seed(0)
    out = dither(np.zeros(16000, np.float32))
    assert 0 < np.abs(out).max() <= LSB_16BIT
    loud = Augmentation(max_offset_ms=0, gain_db=(12, 12), noise_probability=0.0, dither_probability=0.0)
    assert np.abs(loud(np.full(100, 0.9, np.float32))).max() == 1.0


def test_a_clip_that_failed_to_decode_stays_none_and_lengths_include_the_mean_offset():
    data = Augmented(Clips(), Augmentation(max_offset_ms=40))
    assert data[1] is None
    assert data.seconds == pytest.approx([1.02, 0.02, 0.52])
    item = data[0]
    assert item["seconds"] == len(item["audio"]) / 16000 and item["text"] == "a"


@pytest.mark.parametrize("settings, named", [
    (dict(noise_probability=1.5), "noise_probability"),
    (dict(gain_db=(6, -6)), "gain_db"),
    (dict(max_offset_ms=-1), "max_offset_ms"),
])
def test_settings_out_of_range_are_refused_naming_the_field(settings, named):
    with pytest.raises(ValueError, match=named):
        Augmentation(**settings)


def test_a_resumed_run_with_augmentation_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """The draws come from torch's generator, which checkpoints save: a resumed run draws what one run draws."""
    tone_manifest(tmp_path, "train", 6, 0)
    examples = load_examples(tmp_path / "train.csv", "classify", BadExamples("fail"))
    labels = {"high": 0, "low": 1}

    def run(folder, callbacks=(), resume=False):
        torch.manual_seed(0)
        model = Wav2Vec2BertForSequenceClassification(Wav2Vec2BertConfig(**tiny_config_kwargs(num_labels=2)))
        config = TrainingConfig(output_dir=str(folder), task="classify", learning_rate=3e-3, warmup_steps=1,
                                max_steps=6, max_batch_seconds=1.5, eval_every=0, save_every=2, log_every=1,
                                progress=False, tensorboard=False)
        data = Augmented(SpeechDataset(examples, labels.__getitem__), Augmentation())
        trainer = Trainer(model, config, data, Collator(SeamlessM4TFeatureExtractor(), "classify"),
                          callbacks=callbacks)
        trainer.train(resume=resume)
        return trainer.model.state_dict()

    straight = run(tmp_path / "a")

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", [kill_at(3)])
    assert_same_weights(straight, run(tmp_path / "b", resume=True))


def test_finetune_augment_trains_from_the_command_line(tmp_path):
    torch.manual_seed(0)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**tiny_config_kwargs())).save_pretrained(tmp_path / "base")
    tone_manifest(tmp_path, "train", 4, 0)
    assert main(["finetune", "--task", "classify", "--model", str(tmp_path / "base"), "--train",
                 str(tmp_path / "train.csv"), "--output-dir", str(tmp_path / "run"), "--max-steps", "2",
                 "--warmup-steps", "1", "--max-batch-seconds", "2", "--augment", "--no-progress"]) == 0
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()
