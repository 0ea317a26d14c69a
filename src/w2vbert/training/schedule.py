"""The optimizer and its learning-rate schedule: AdamW over two parameter groups, warmup then decay.

In order: `lr_factor` (the multiplier of the peak rate at each step, as transformers' schedules), `adamw`
(decay on weights, none on biases and norms) and `lr_scheduler` (`lr_factor` as a torch scheduler).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from w2vbert.training.config import TrainingConfig


def lr_factor(step: int, warmup_steps: int, max_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate for optimizer step `step` (0-based), as transformers' schedules."""
    if step < warmup_steps:
        return step / max(1, warmup_steps)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def adamw(model: nn.Module, config: TrainingConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters of `model`, with weight decay on weights but not on biases and norms."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "layer_norm" in name else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.adam_betas, eps=config.adam_epsilon)


def lr_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The peak rate of `optimizer` scaled by `lr_factor` at each optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config.warmup_steps, config.max_steps, config.lr_schedule)
    )
