"""Fine-tuning and continued pre-training: examples, the task table, the training loop, task recipes, LoRA.

Modules, from the bottom up (each imports only those above it in this list, and lora.py):
- `examples`: `DataConfig`, the text normaliser, `Example`, bad-example reports and the length checks; nothing
  here depends on the task.
- `preparation`: a `Recipe` per kind of head: the model made from a checkpoint, its target encoding.
- `distributed`: torchrun's process group, collectives, the DDP / FSDP wrapper, whole state dicts under FSDP.
- `scorers`: what an evaluation measures (WER/CER, accuracy, frame F1, EER, pre-training's parts).
- `tasks`: one frozen `Task` per training task ("ctc", "classify", "frames", "xvector", "pretrain") in one
  table: its target column, recipe, batches and scorer. Every place that differs by task asks its `Task`.
- `datasets`: a task's examples from manifests or `datasets`, `SpeechDataset`, the `Collator`.
- `config`: `TrainingConfig`.
- `schedule`: AdamW and the learning-rate schedule.
- `checkpoints`: a run directory: `TrainerState`, RNG state, publishing a checkpoint whole, the run lock.
- `metrics`: `metrics.jsonl` (and TensorBoard) and the running sums behind each record.
- `trainer`: `Trainer`: the loop, evaluation, checkpoints and exact resume, torchrun. `Trainer` and
  `TrainingConfig` are imported from here.
- `recipes`: `finetune` / `pretrain`: a task's data, model and trainer put together into a run.
- `lora`: LoRA adapters through peft (the `lora` extra).
- `hf_trainer`: transformers' `Trainer`, whose checkpoints of a w2vbert model carry its config.json, for scripts
  written for transformers (the one module that imports transformers: nothing in w2vbert imports it).

Never imports inference, serving, export or cli.
"""
