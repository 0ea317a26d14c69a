"""Fine-tuning and continued pre-training: datasets, the training loop, task recipes, LoRA.

- `datasets`: examples from manifests or `datasets`, bad-example checks, the collator.
- `trainer`: `Trainer` and `TrainingConfig`: the loop, checkpoints and exact resume, torchrun.
- `recipes`: `finetune` / `pretrain`: a task's data, head and metrics put together.
- `lora`: LoRA adapters through peft (the `lora` extra).

Never imports inference, serving, export or cli.
"""
