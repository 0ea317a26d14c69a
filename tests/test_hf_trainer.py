"""The "Fine-Tune W2V2-Bert for low-resource ASR" blog recipe under transformers' Trainer, with w2vbert's model and
processor: the blog's code (`recipe`), on a tiny random checkpoint and four of the test clips, for 4 steps.

The recipe is written once and run with either library's classes; transformers is the oracle. The one line that
differs from the blog besides the model's and processor's imports is the Trainer's (w2vbert.training.hf_trainer:
transformers' Trainer writes config.json only for its own PreTrainedModel).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from w2vbert import load_audio

transformers = pytest.importorskip("transformers")
jiwer = pytest.importorskip("jiwer")

CLIPS = {"hello": "hello world", "quick": "the quick brown fox", "numbers": "one two three four five", "short": "hi"}


def w2vbert_classes() -> SimpleNamespace:
    import w2vbert
    from w2vbert.training.hf_trainer import Trainer

    return SimpleNamespace(
        Wav2Vec2BertForCTC=w2vbert.Wav2Vec2BertForCTC, Wav2Vec2BertProcessor=w2vbert.Wav2Vec2BertProcessor,
        SeamlessM4TFeatureExtractor=w2vbert.SeamlessM4TFeatureExtractor,
        Wav2Vec2CTCTokenizer=w2vbert.Wav2Vec2CTCTokenizer, Trainer=Trainer,
    )


def transformers_classes() -> SimpleNamespace:
    return SimpleNamespace(**{name: getattr(transformers, name) for name in vars(w2vbert_classes())})


def tiny_base_checkpoint(folder) -> None:
    """What facebook/w2v-bert-2.0 is to the blog: a base encoder saved by transformers, with its preprocessor."""
    torch.manual_seed(0)
    config = transformers.Wav2Vec2BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
        conv_depthwise_kernel_size=5, left_max_position_embeddings=6, right_max_position_embeddings=3,
    )
    transformers.Wav2Vec2BertModel(config).save_pretrained(folder)
    transformers.SeamlessM4TFeatureExtractor().save_pretrained(folder)


def blog_processor(lib: SimpleNamespace, base, repo_name):
    """The blog's vocabulary, tokenizer, feature extractor and processor, saved to the run's folder."""
    vocab_list = sorted(set("".join(CLIPS.values())))
    vocab_dict = {v: k for k, v in enumerate(vocab_list)}
    vocab_dict["|"] = vocab_dict[" "]
    del vocab_dict[" "]
    vocab_dict["[UNK]"] = len(vocab_dict)
    vocab_dict["[PAD]"] = len(vocab_dict)
    repo_name.mkdir(exist_ok=True)
    (repo_name / "vocab.json").write_text(json.dumps(vocab_dict))
    tokenizer = lib.Wav2Vec2CTCTokenizer.from_pretrained(
        str(repo_name), unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|"
    )
    feature_extractor = lib.SeamlessM4TFeatureExtractor.from_pretrained(str(base))
    processor = lib.Wav2Vec2BertProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    processor.save_pretrained(str(repo_name))
    return processor


def blog_dataset(processor) -> list[dict]:
    def prepare_dataset(batch):
        audio = batch["audio"]
        batch["input_features"] = processor(audio["array"], sampling_rate=audio["sampling_rate"]).input_features[0]
        batch["input_length"] = len(batch["input_features"])
        batch["labels"] = processor(text=batch["sentence"]).input_ids
        return batch

    return [
        prepare_dataset({"audio": {"array": load_audio(f"tests/data/{name}.wav"), "sampling_rate": 16000},
                         "sentence": sentence})
        for name, sentence in CLIPS.items()
    ]


@dataclass
class DataCollatorCTCWithPadding:
    processor: object
    padding: bool | str = True

    def __call__(self, features):
        input_features = [{"input_features": feature["input_features"]} for feature in features]
        label_features = [{"input_ids": feature["labels"]} for feature in features]
        batch = self.processor.pad(input_features, padding=self.padding, return_tensors="pt")
        labels_batch = self.processor.pad(labels=label_features, padding=self.padding, return_tensors="pt")
        labels = labels_batch["input_ids"].masked_fill(labels_batch.attention_mask.ne(1), -100)
        batch["labels"] = labels
        return batch


def recipe(lib: SimpleNamespace, base, repo_name, dataset, processor, model_options: dict, **arguments):
    """The blog's model, training arguments, Trainer, training and saving (evaluate's "wer" is jiwer's)."""

    def compute_metrics(pred):
        pred_logits = pred.predictions
        pred_ids = np.argmax(pred_logits, axis=-1)
        pred.label_ids[pred.label_ids == -100] = processor.tokenizer.pad_token_id
        pred_str = processor.batch_decode(pred_ids)
        label_str = processor.batch_decode(pred.label_ids, group_tokens=False)
        return {"wer": jiwer.wer(label_str, [text or "-" for text in pred_str])}

    model = lib.Wav2Vec2BertForCTC.from_pretrained(
        str(base), ctc_loss_reduction="mean", pad_token_id=processor.tokenizer.pad_token_id,
        vocab_size=len(processor.tokenizer), **{"add_adapter": True, **model_options},
    )
    training_args = transformers.TrainingArguments(
        output_dir=str(repo_name), train_sampling_strategy="group_by_length",  # v5's group_by_length=True
        per_device_train_batch_size=2, eval_strategy="steps", max_steps=4, gradient_checkpointing=True,
        save_steps=4, eval_steps=2, logging_steps=1, warmup_steps=1, save_total_limit=2, report_to=[],
        use_cpu=True, **{"learning_rate": 5e-4, **arguments},
    )
    trainer = lib.Trainer(
        model=model, data_collator=DataCollatorCTCWithPadding(processor=processor, padding=True), args=training_args,
        compute_metrics=compute_metrics, train_dataset=dataset, eval_dataset=dataset[:2],
        processing_class=processor.feature_extractor,
    )
    trainer.train()
    trainer.save_model()
    return trainer


def test_the_blog_recipe_trains_evaluates_saves_and_decodes_with_w2vbert_classes(tmp_path):
    lib = w2vbert_classes()
    tiny_base_checkpoint(tmp_path / "base")
    repo_name = tmp_path / "w2v-bert-2.0-tiny"
    processor = blog_processor(lib, tmp_path / "base", repo_name)
    dataset = blog_dataset(processor)
    blog_options = dict(attention_dropout=0.0, hidden_dropout=0.0, feat_proj_dropout=0.0, mask_time_prob=0.0,
                        layerdrop=0.0)
    trainer = recipe(lib, tmp_path / "base", repo_name, dataset, processor, blog_options,
                     gradient_accumulation_steps=2)
    history = trainer.state.log_history
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
    evaluations = [entry for entry in history if "eval_loss" in entry]
    assert len(evaluations) == 2 and all(math.isfinite(entry["eval_wer"]) for entry in evaluations)
    assert trainer.model.is_activation_checkpointing

    # The blog's inference: the saved folder, here and in transformers.
    model = lib.Wav2Vec2BertForCTC.from_pretrained(str(repo_name))
    processor = lib.Wav2Vec2BertProcessor.from_pretrained(str(repo_name))
    input_dict = processor(dataset[0]["audio"]["array"], sampling_rate=16000, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(input_dict.input_features).logits
        theirs = transformers.Wav2Vec2BertForCTC.from_pretrained(str(repo_name))(input_dict.input_features).logits
    torch.testing.assert_close(logits, theirs, atol=1e-5, rtol=0)
    pred_ids = torch.argmax(logits, dim=-1)[0]
    assert isinstance(processor.decode(pred_ids), str)
    assert (repo_name / "checkpoint-4" / "config.json").is_file()  # every checkpoint of the run loads too


def test_transformers_trainer_alone_saves_no_config_for_a_model_not_its_own(tmp_path):
    """Why the Trainer's import changes: transformers' Trainer saves only the state dict of a model that is not its
    PreTrainedModel; w2vbert.training.hf_trainer's adds the config.json."""
    import w2vbert

    config = w2vbert.Wav2Vec2BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                        intermediate_size=48, vocab_size=11)
    model = w2vbert.Wav2Vec2BertForCTC(config)
    arguments = transformers.TrainingArguments(output_dir=str(tmp_path / "plain"), report_to=[], use_cpu=True)
    transformers.Trainer(model=model, args=arguments).save_model()
    assert not (tmp_path / "plain" / "config.json").exists()
    assert (tmp_path / "plain" / "model.safetensors").exists()
    arguments = transformers.TrainingArguments(output_dir=str(tmp_path / "ours"), report_to=[], use_cpu=True)
    w2vbert_classes().Trainer(model=model, args=arguments).save_model()
    loaded = w2vbert.Wav2Vec2BertForCTC.from_pretrained(tmp_path / "ours")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                 strict=True))


def test_training_under_the_trainer_gives_the_numbers_transformers_model_gives(tmp_path):
    """The same checkpoint (the head included), data and arguments, nothing random (no dropout, no SpecAugment),
    one batch per step: transformers' model and w2vbert's train to the same losses and weights. Without the
    adapter: in a padded batch transformers' adapter reads the padding and w2vbert's each clip's own frames (a
    deliberate difference, tests/test_parity.py), which moves the loss of a padded batch by ~1e-3."""
    tiny_base_checkpoint(tmp_path / "base")
    processor = blog_processor(transformers_classes(), tmp_path / "base", tmp_path / "vocab")
    dataset = blog_dataset(processor)
    start = tmp_path / "start"  # the CTC model with its new adapter and head, saved once for both runs
    transformers.Wav2Vec2BertForCTC.from_pretrained(
        str(tmp_path / "base"), vocab_size=len(processor.tokenizer),
        pad_token_id=processor.tokenizer.pad_token_id,
    ).save_pretrained(start)
    quiet = dict(attention_dropout=0.0, hidden_dropout=0.0, feat_proj_dropout=0.0, mask_time_prob=0.0,
                 layerdrop=0.0, final_dropout=0.0, conformer_conv_dropout=0.0, add_adapter=False)
    runs = [recipe(lib, start, tmp_path / name, dataset, processor, quiet)
            for lib, name in ((transformers_classes(), "theirs"), (w2vbert_classes(), "ours"))]
    (theirs, ours) = ([entry.get("loss", entry.get("eval_loss")) for entry in run.state.log_history[:-1]]
                      for run in runs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    weights = runs[0].model.state_dict()
    for name, tensor in runs[1].model.state_dict().items():
        torch.testing.assert_close(tensor, weights[name], atol=1e-5, rtol=1e-4, msg=name)


def test_peft_lora_trains_under_the_trainer_and_its_adapter_loads_onto_transformers_model(tmp_path):
    """peft wraps a w2vbert model as it wraps transformers' (PeftModel), the Trainer trains the adapters with
    checkpointing, and the saved adapter, in peft's names, loads onto transformers' model with the same numbers."""
    peft = pytest.importorskip("peft")
    import w2vbert
    from conftest import model_pair, random_batch

    reference, ours = model_pair("Wav2Vec2BertForCTC", tmp_path / "base", mask_time_prob=0.0, final_dropout=0.0)
    lora = peft.LoraConfig(r=4, target_modules=["linear_q", "linear_v"], init_lora_weights=True)
    model = peft.get_peft_model(ours, lora)
    features, mask = random_batch([30, 22])
    labels = torch.tensor([[1, 2, 3], [4, 5, -100]])
    dataset = [{"input_features": features[i], "attention_mask": mask[i], "labels": labels[i]} for i in range(2)]
    arguments = transformers.TrainingArguments(
        output_dir=str(tmp_path / "run"), max_steps=3, per_device_train_batch_size=2, gradient_checkpointing=True,
        learning_rate=1e-2, report_to=[], use_cpu=True,
    )
    w2vbert_classes().Trainer(model=model, args=arguments, train_dataset=dataset).train()
    model.save_pretrained(tmp_path / "adapter")
    trained = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert trained and all(p.abs().sum() > 0 for p in trained)  # lora_B starts at zero: the adapters learned
    theirs = peft.PeftModel.from_pretrained(reference, tmp_path / "adapter")
    model.eval()
    with torch.no_grad():
        expected = theirs(input_features=features, attention_mask=mask).logits
        torch.testing.assert_close(model(input_features=features, attention_mask=mask).logits, expected,
                                   atol=1e-5, rtol=0)
        merged = model.merge_and_unload()
        assert type(merged) is w2vbert.Wav2Vec2BertForCTC
        torch.testing.assert_close(merged(features, attention_mask=mask).logits, expected, atol=1e-5, rtol=0)
