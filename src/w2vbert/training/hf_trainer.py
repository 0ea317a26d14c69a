"""transformers' `Trainer` for w2vbert's models: the one import a transformers fine-tuning script changes besides
the model's and the processor's.

    from w2vbert import Wav2Vec2BertForCTC, Wav2Vec2BertProcessor
    from w2vbert.training.hf_trainer import Trainer  # was: from transformers import Trainer

Everything else of a script written for transformers' Trainer runs unchanged with w2vbert's models: the
training arguments (gradient checkpointing, accumulation, evaluation, checkpoints), the collator, the metrics.
Only saving needs this class. `transformers.Trainer._save` writes a model through its `save_pretrained` only when
the model is an instance of transformers' own `PreTrainedModel` (or peft's `PeftModel`); any other module gets its
bare state dict (`model.safetensors`, no `config.json`), which no `from_pretrained` can load. That is a type check
on transformers' classes, which a model that does not inherit from transformers cannot pass, and the Trainer
consults nothing of the model's at save time. This `Trainer` is transformers' with one change: after
transformers' save, a w2vbert model's checkpoint gets its `config.json`, so `trainer.save_model()` (and every
checkpoint-N of a run) leaves a folder that `from_pretrained` loads here and in transformers.

This module imports transformers (w2vbert itself never does): import it only where transformers is installed.
"""

from __future__ import annotations

import os

import transformers

from w2vbert.model.base import Wav2Vec2BertPreTrainedModel


class Trainer(transformers.Trainer):
    """`transformers.Trainer`, whose saved checkpoints of a w2vbert model carry its `config.json`."""

    def _save(self, output_dir: str | os.PathLike | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict=state_dict)
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if self.args.should_save and isinstance(model, Wav2Vec2BertPreTrainedModel):
            # transformers wrote the weights (model.safetensors, the HF names); the config is the model's to write
            model.checkpoint_config().save_pretrained(self.args.output_dir if output_dir is None else output_dir)
