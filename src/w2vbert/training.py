"""Fine-tuning: the `Trainer` (CTC speech recognition or one label per clip) and the `w2vbert finetune` command.

What a run guarantees:
- Resumable at any moment: `output_dir/last` holds weights, optimizer, scheduler, grad scaler, every RNG
  (python, numpy, torch, per rank) and the data position (epoch, global batches consumed). A run killed and
  resumed ends with the weights of an uninterrupted one.
- Checkpoints are written to a temporary folder and renamed into place; the previous one is kept until the new
  one is in place, so a kill mid-write leaves either the old or the new checkpoint, never a mix.
- `best` and `last` are in the Hugging Face layout with the processor files (preprocessor_config.json, vocab.json,
  tokenizer files): `from_pretrained` here and in transformers loads them.
- Launched by `torchrun`, ranks share each global batch (DDP, or FSDP) and the loss is normalised by the global
  example count, so N processes follow the loss curve of one process on the same global batches.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .data import (
    ON_BAD,
    TASKS,
    BadExamples,
    Collator,
    Example,
    LengthGroupedBatchSampler,
    SpeechDataset,
    TextNormalizer,
    describe,
    drop_too_short,
    load_examples,
)

logger = logging.getLogger("w2vbert")

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
TRAINER_STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class TrainingConfig:
    """How to train. Model-side options (SpecAugment, LayerDrop, dropouts) live in the model's config."""

    output_dir: str
    task: str = "ctc"  # "ctc" (speech recognition) or "classify" (one label per clip)
    learning_rate: float = 5e-5  # peak, reached at the end of warmup
    weight_decay: float = 0.0  # AdamW decay; never applied to biases and norms
    adam_betas: tuple[float, float] = (0.9, 0.98)
    adam_epsilon: float = 1e-8
    lr_schedule: str = "linear"  # after warmup: "linear" or "cosine" decay to 0 at max_steps, or "constant"
    warmup_steps: int = 500  # linear rise from 0, as transformers' schedules
    max_steps: int = 10_000  # optimizer steps
    gradient_accumulation_steps: int = 1  # global batches per optimizer step
    max_grad_norm: float | None = 1.0  # clip the global gradient norm; None disables
    precision: str = "fp32"  # autocast "bf16" / "fp16" (with loss scaling) on top of fp32 weights
    gradient_checkpointing: bool = False  # recompute blocks in backward: less memory, ~30% more time
    freeze_feature_projection: bool = False
    freeze_layers: int = 0  # freeze the lowest k Conformer blocks
    max_batch_seconds: float = 200.0  # padded audio per global batch (clips x longest clip)
    max_batch_size: int | None = None  # optional cap on clips per global batch
    eval_every: int = 500  # steps between evaluations (and `best` checkpoints); 0: only at the end
    save_every: int = 500  # steps between `last` checkpoints (also saved at the end)
    log_every: int = 10  # steps between metric records
    seed: int = 0
    num_workers: int = 0  # DataLoader processes decoding audio
    sharding: str = "ddp"  # with several processes: "ddp" (replicated) or "fsdp" (sharded parameters)
    progress: bool = True  # tqdm bar on rank 0
    tensorboard: bool = True  # also write output_dir/tensorboard (if tensorboard is installed)
    device: str | None = None  # default: cuda:LOCAL_RANK when CUDA is available, else cpu

    def __post_init__(self) -> None:
        checks = [
            (self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}"),
            (self.lr_schedule in SCHEDULES, f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (self.sharding in ("ddp", "fsdp"), f"sharding must be 'ddp' or 'fsdp', got {self.sharding!r}"),
            (self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (self.freeze_layers >= 0, f"freeze_layers must be >= 0, got {self.freeze_layers}"),
            (self.save_every >= 1 and self.log_every >= 1, "save_every and log_every must be >= 1"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("invalid TrainingConfig: " + "; ".join(problems))


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


# ------------------------------------------------------------------------------------------ distributed
@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None) -> tuple[Distributed, torch.device]:
    """Join the process group `torchrun` describes (WORLD_SIZE, RANK, LOCAL_RANK); nccl on CUDA, gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    if target.type == "cuda" and target.index is None:  # "cuda" (as --device cuda says): this rank's GPU
        target = torch.device("cuda", local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return Distributed(rank, world_size, local_rank), target


def _all_reduce(values: list[float], env: Distributed, device: torch.device) -> list[float]:
    if not env.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def _barrier(env: Distributed) -> None:
    if env.active:
        dist.barrier()


# ----------------------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_checkpoint(output_dir: str | os.PathLike, name: str = "last") -> Path | None:
    """The complete checkpoint `name`, or the one it replaces when a kill came between the two renames."""
    for candidate in (Path(output_dir) / name, Path(output_dir) / f"{name}.old"):
        if (candidate / TRAINER_STATE_NAME).is_file():
            return candidate
    return None


def publish_directory(temporary: Path, final: Path) -> None:
    """Move a fully written `temporary` folder to `final`, keeping the previous `final` until it is in place.

    Directory renames are atomic but cannot replace a non-empty folder, so: final -> final.old, temporary ->
    final, drop final.old. A kill at any point leaves `final` or `final.old` complete (`find_checkpoint`).
    """
    previous = final.with_name(final.name + ".old")
    if final.exists():
        if previous.exists():
            shutil.rmtree(previous)  # a leftover of an earlier kill; `final` is complete
        os.replace(final, previous)
    os.replace(temporary, final)
    shutil.rmtree(previous, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- metrics
class MetricsLog:
    """Metric records to `metrics.jsonl` and TensorBoard, from rank 0. Resuming drops records past the resume step."""

    def __init__(self, output_dir: Path, resume_step: int, tensorboard: bool) -> None:
        self.path = output_dir / METRICS_NAME
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is the `train` extra
                logger.warning("tensorboard is not installed: metrics go to %s only", self.path)
            else:
                self.writer = SummaryWriter(str(output_dir / "tensorboard"), purge_step=resume_step + 1)

    def write(self, step: int, split: str, values: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "split": split, **values}) + "\n")
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{split}/{name}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus WER and CER (jiwer): errors over all words / characters of the set, not averaged per clip."""
    import jiwer

    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    if not pairs:
        return {"wer": float("nan"), "cer": float("nan")}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}


# ---------------------------------------------------------------------------------------------- trainer
@dataclass
class TrainerState:
    """What, besides tensors, a resumed run needs to continue exactly where the last checkpoint was."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # global batches of `epoch` consumed
    best_metric: float | None = None  # WER (ctc) or -accuracy (classify): lower is better
    best_step: int | None = None
    audio_seconds: float = 0.0  # trained on, all ranks
    history: list[dict[str, Any]] = field(default_factory=list)  # evaluation results


class Trainer:
    """Trains a CTC or sequence-classification model on a dataset of clips (`SpeechDataset` or alike).

    `train_data` must have `__len__`, `__getitem__` and `seconds` (per-example lengths for batching);
    `collate_fn` turns a list of items into {"input_features", "attention_mask", "labels", "seconds"} (and
    "texts", the references, for CTC evaluation). `tokenizer` decodes CTC output for WER/CER; `tokenizer` and
    `feature_extractor` are saved with each checkpoint. `callbacks` run after every optimizer step (and its
    checkpoint) as `callback(trainer, step)`.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainingConfig,
        train_data: Any,
        collate_fn: Callable[[list[Any]], dict[str, Any]],
        eval_data: Any = None,
        tokenizer: Any = None,
        feature_extractor: Any = None,
        callbacks: Sequence[Callable[[Trainer, int], None]] = (),
    ) -> None:
        if config.task == "ctc" and eval_data is not None and tokenizer is None:
            raise ValueError("CTC evaluation decodes with the tokenizer: pass tokenizer=...")
        self.model = model
        self.config = config
        self.train_data = train_data
        self.eval_data = eval_data
        self.collate_fn = collate_fn
        self.tokenizer = tokenizer
        self.feature_extractor = feature_extractor
        self.callbacks = list(callbacks)
        self.output_dir = Path(config.output_dir)
        self.state = TrainerState()
        self.env, self.device = Distributed(), torch.device(config.device or "cpu")
        self.wrapped: nn.Module = model

    # ------------------------------------------------------------------------------------------ setup
    def _prepare_model(self) -> None:
        config, model = self.config, self.model
        if config.freeze_feature_projection:
            model.freeze_feature_encoder()
        if config.freeze_layers:
            layers = model.wav2vec2_bert.encoder.layers
            if config.freeze_layers > len(layers):
                raise ValueError(f"freeze_layers={config.freeze_layers} exceeds the model's {len(layers)} blocks")
            for layer in layers[: config.freeze_layers]:
                layer.requires_grad_(False)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model.to(self.device)
        model.train()

    def _wrap(self) -> nn.Module:
        if not self.env.active:
            return self.model
        if self.config.sharding == "fsdp":
            # FSDP2: each Conformer block is a unit (its parameters gathered just for its forward and backward),
            # the rest shards as the root unit. The module stays itself: no wrapper in the state-dict keys.
            from torch.distributed.fsdp import fully_shard

            for layer in self.model.wav2vec2_bert.encoder.layers:
                fully_shard(layer)
            fully_shard(self.model)
            return self.model
        # LayerDrop skips blocks, whose parameters then get no gradient: DDP must be told to look for them.
        unused = self.model.config.layerdrop > 0
        return nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
            find_unused_parameters=unused,
        )

    def _optimizer(self) -> torch.optim.Optimizer:
        decay, no_decay = [], []
        for name, parameter in self.wrapped.named_parameters():
            if parameter.requires_grad:
                (no_decay if parameter.ndim < 2 or "layer_norm" in name else decay).append(parameter)
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.config.learning_rate, betas=self.config.adam_betas,
                                 eps=self.config.adam_epsilon)

    def _loader(self, data: Any, sampler: LengthGroupedBatchSampler, seed: int) -> torch.utils.data.DataLoader:
        # Its own generator: a DataLoader draws a seed each time it is iterated, and taking it from the global
        # RNG would shift dropout after a resume.
        return torch.utils.data.DataLoader(
            data, batch_sampler=sampler, collate_fn=self.collate_fn, num_workers=self.config.num_workers,
            generator=torch.Generator().manual_seed(seed),
        )

    # ------------------------------------------------------------------------------------------- train
    def setup(self, resume: bool = False) -> None:
        """Join the process group, load the checkpoint to resume, build the wrapper, optimizer and schedule."""
        config = self.config
        self.env, self.device = init_distributed(config.device)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        _seed_everything(config.seed + self.env.rank)
        checkpoint = find_checkpoint(self.output_dir) if resume else None
        if resume and checkpoint is None:
            logger.warning("no checkpoint in %s to resume from: starting from step 0", self.output_dir)
        if checkpoint is not None:
            self._load_weights(checkpoint)
        self._prepare_model()
        self.wrapped = self._wrap()
        self.optimizer = self._optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, config.warmup_steps, config.max_steps, config.lr_schedule)
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        if checkpoint is not None:
            self._load_training_state(checkpoint)
            logger.info("resumed from %s at step %d", checkpoint, self.state.step)

    def train(self, resume: bool = False) -> dict[str, Any]:
        """Train to `max_steps`; with `resume`, continue from `output_dir/last`. Returns the run summary."""
        config = self.config
        self.setup(resume)
        sampler = LengthGroupedBatchSampler(
            self.train_data.seconds, config.max_batch_seconds, config.max_batch_size, shuffle=True,
            seed=config.seed, rank=self.env.rank, world_size=self.env.world_size,
        )
        loader = self._loader(self.train_data, sampler, config.seed)
        metrics = MetricsLog(self.output_dir, self.state.step, config.tensorboard) if self.env.main else None
        bar = self._progress_bar()
        started = time.time()
        window = _Window()
        try:
            while self.state.step < config.max_steps:
                sampler.set_epoch(self.state.epoch, self.state.batches_in_epoch)
                batches = iter(loader)
                while self.state.step < config.max_steps:
                    micro = []
                    for batch in batches:
                        micro.append(batch)
                        self.state.batches_in_epoch += 1
                        if len(micro) == config.gradient_accumulation_steps:
                            break
                    if not micro:  # the epoch is over
                        break
                    self._after_step(self.train_step(micro), window, metrics, bar)
                else:
                    break
                self.state.epoch += 1
                self.state.batches_in_epoch = 0
        finally:
            if bar is not None:
                bar.close()
            if metrics is not None:
                metrics.close()
        return {
            "steps": self.state.step, "epochs": self.state.epoch + self.state.batches_in_epoch / max(len(sampler), 1),
            "audio_hours": self.state.audio_seconds / 3600, "seconds": time.time() - started,
            "best_step": self.state.best_step, "best_metric": self.state.best_metric,
            "final_eval": self.state.history[-1] if self.state.history else None,
        }

    def _after_step(self, result: tuple[float, float, float], window: _Window, metrics: Any, bar: Any) -> None:
        """Count the step; log, evaluate, checkpoint and call back when due."""
        config = self.config
        window.add(*result)
        self.state.step += 1
        self.state.audio_seconds += result[2]
        step = self.state.step
        if step % config.log_every == 0 or step == config.max_steps:
            record = window.record(self.scheduler.get_last_lr()[0], self.state.epoch)
            if metrics is not None:
                metrics.write(step, "train", record)
            if bar is not None:
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}",
                                audio_s_per_s=f"{record['audio_seconds_per_second']:.1f}")
        if bar is not None:
            bar.update(1)
        due = (config.eval_every and step % config.eval_every == 0) or step == config.max_steps
        if self.eval_data is not None and due:
            self._evaluate_and_keep_best(metrics)
        if step % config.save_every == 0 or step == config.max_steps:
            self.save_checkpoint("last", training_state=True)
        for callback in self.callbacks:
            callback(self, step)

    def train_step(self, micro: list[dict[str, Any]]) -> tuple[float, float, float]:
        """One optimizer step over accumulated micro-batches (after `setup`); returns (summed loss, examples,
        audio seconds), summed over ranks."""
        total_loss, total_count, total_seconds = 0.0, 0.0, 0.0
        for index, batch in enumerate(micro):
            local_count = float(batch["labels"].shape[0])
            global_count, seconds = _all_reduce([local_count, batch["seconds"]], self.env, self.device)
            last = index == len(micro) - 1
            sync = contextlib.nullcontext()
            if self._fsdp():
                self.wrapped.set_requires_gradient_sync(last)  # reduce-scatter once, after the last micro-batch
            elif self.env.active and not last:
                sync = self.wrapped.no_sync()
            with sync:
                with self._autocast():
                    output = self.wrapped(
                        batch["input_features"].to(self.device), attention_mask=batch["attention_mask"].to(self.device),
                        labels=batch["labels"].to(self.device),
                    )
                local_sum = self._loss_sum(output.loss, local_count)
                # DDP averages gradients over ranks: scaling by world / global count makes the result the mean
                # over every example of the global batch, whatever each rank's share of it.
                loss = local_sum * self.env.world_size / (global_count * len(micro))
                self.scaler.scale(loss).backward()
            total_loss += float(local_sum.detach())
            total_count += global_count
            total_seconds += seconds
        self.scaler.unscale_(self.optimizer)
        if self.config.max_grad_norm is not None:
            # Under FSDP the gradients are DTensor shards, and the norm is taken over all of them.
            torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), self.config.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        (total_loss,) = _all_reduce([total_loss], self.env, self.device)
        return total_loss, total_count, total_seconds

    def _loss_sum(self, loss: torch.Tensor, count: float) -> torch.Tensor:
        """The model's loss as a sum over the batch's examples (the heads report a mean, unless CTC 'sum')."""
        if self.config.task == "ctc" and self.model.config.ctc_loss_reduction == "sum":
            return loss
        return loss * count

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _progress_bar(self) -> Any:
        if not (self.config.progress and self.env.main):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.config.max_steps, initial=self.state.step, desc="fine-tuning", unit="step")

    # -------------------------------------------------------------------------------------------- eval
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and WER/CER (ctc) or accuracy (classify) on `eval_data`, over all ranks."""
        sampler = LengthGroupedBatchSampler(
            self.eval_data.seconds, self.config.max_batch_seconds, self.config.max_batch_size, shuffle=False,
            rank=self.env.rank, world_size=self.env.world_size,
        )
        model = self.wrapped
        was_training = model.training
        model.eval()
        loss_sum, count, correct = 0.0, 0.0, 0.0
        references, hypotheses = [], []
        for batch in self._loader(self.eval_data, sampler, 0):
            mask = batch["attention_mask"].to(self.device)
            with self._autocast():
                output = model(batch["input_features"].to(self.device), attention_mask=mask,
                               labels=batch["labels"].to(self.device))
            n = batch["labels"].shape[0]
            loss_sum += float(self._loss_sum(output.loss.float(), n))
            count += n
            if self.config.task == "classify":
                correct += float((output.logits.argmax(-1).cpu() == batch["labels"]).sum())
            else:
                ids = output.logits.argmax(-1)
                lengths = self.model.get_feat_extract_output_lengths(mask.sum(-1).long())
                valid = torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None]
                ids = ids.masked_fill(~valid, self.tokenizer.pad_token_id).cpu()
                hypotheses += self.tokenizer.batch_decode(ids.tolist())
                references += list(batch["texts"])
        model.train(was_training)
        loss_sum, count, correct = _all_reduce([loss_sum, count, correct], self.env, self.device)
        result = {"loss": loss_sum / max(count, 1)}
        if self.config.task == "classify":
            result["accuracy"] = correct / max(count, 1)
            return result
        if self.env.active:
            gathered: list[Any] = [None] * self.env.world_size
            dist.all_gather_object(gathered, (references, hypotheses))
            references = [r for refs, _ in gathered for r in refs]
            hypotheses = [h for _, hyps in gathered for h in hyps]
        return result | error_rates(references, hypotheses)

    def _evaluate_and_keep_best(self, metrics: MetricsLog | None) -> None:
        result = self.evaluate()
        self.state.history.append({"step": self.state.step, **result})
        if metrics is not None:
            metrics.write(self.state.step, "eval", result)
        score = result["wer"] if self.config.task == "ctc" else -result["accuracy"]
        if not math.isnan(score) and (self.state.best_metric is None or score < self.state.best_metric):
            self.state.best_metric, self.state.best_step = score, self.state.step
            self.save_checkpoint("best", training_state=False)
        logger.info("step %d eval: %s", self.state.step, result)

    # ---------------------------------------------------------------------------------------- checkpoints
    def _fsdp(self) -> bool:
        return self.env.active and self.config.sharding == "fsdp"

    def _model_state(self) -> dict[str, torch.Tensor]:
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(self.wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    def _optimizer_state(self) -> dict[str, Any]:
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_optimizer_state_dict(self.wrapped, self.optimizer, options=options)
        return self.optimizer.state_dict()

    def save_checkpoint(self, name: str, training_state: bool = True) -> Path:
        """Write `output_dir/name` atomically: weights, config, processor files (+ optimizer, RNG, position)."""
        final = self.output_dir / name
        temporary = self.output_dir / f".tmp-{name}"
        model_state = self._model_state()  # collective under FSDP: every rank calls it
        optimizer_state = self._optimizer_state() if training_state else None
        if self.env.main:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
            self.model.save_pretrained(temporary, state_dict=model_state)
            if self.feature_extractor is not None:
                self.feature_extractor.save_pretrained(temporary)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(temporary)
            if training_state:
                torch.save(optimizer_state, temporary / OPTIMIZER_NAME)
                torch.save({"scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()},
                           temporary / SCHEDULER_NAME)
        _barrier(self.env)
        if training_state:
            torch.save(_rng_state(), temporary / f"rng_state_{self.env.rank}.pt")
        _barrier(self.env)
        if self.env.main:
            # The state file is written last: a folder without it is never taken for a checkpoint.
            state = asdict(self.state) | {"world_size": self.env.world_size, "config": asdict(self.config)}
            (temporary / TRAINER_STATE_NAME).write_text(json.dumps(state, indent=2) + "\n")
            publish_directory(temporary, final)
        _barrier(self.env)
        return final

    def _load_weights(self, checkpoint: Path) -> None:
        from .checkpoint import load_checkpoint

        self.model.load_state_dict(load_checkpoint(checkpoint))

    def _load_training_state(self, checkpoint: Path) -> None:
        saved = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
        if saved["world_size"] != self.env.world_size:
            raise ValueError(
                f"{checkpoint} was written by {saved['world_size']} process(es), this run has "
                f"{self.env.world_size}: resume with the same number (the data position and RNG are per rank)"
            )
        known = set(TrainerState.__dataclass_fields__)
        self.state = TrainerState(**{k: v for k, v in saved.items() if k in known})
        # Our own files, written by this trainer: optimizer state holds plain Python values besides tensors.
        optimizer_state = torch.load(checkpoint / OPTIMIZER_NAME, map_location="cpu", weights_only=False)
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.wrapped, self.optimizer, optimizer_state,
                                     options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(optimizer_state)
        schedule = torch.load(checkpoint / SCHEDULER_NAME, map_location="cpu", weights_only=False)
        self.scheduler.load_state_dict(schedule["scheduler"])
        self.scaler.load_state_dict(schedule["scaler"])
        rng = torch.load(checkpoint / f"rng_state_{self.env.rank}.pt", map_location="cpu", weights_only=False)
        _set_rng_state(rng)


class _Window:
    """Loss, examples and audio seconds since the last metric record, for means and throughput."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss, self.count, self.seconds, self.start = 0.0, 0.0, 0.0, time.time()

    def add(self, loss: float, count: float, seconds: float) -> None:
        self.loss, self.count, self.seconds = self.loss + loss, self.count + count, self.seconds + seconds

    def record(self, lr: float, epoch: int) -> dict[str, float]:
        elapsed = max(time.time() - self.start, 1e-9)
        record = {"loss": self.loss / max(self.count, 1), "lr": lr,
                  "audio_seconds_per_second": self.seconds / elapsed, "epoch": epoch}
        self.reset()
        return record


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------- data + model glue
@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how targets are cleaned."""

    train_manifest: str
    eval_manifest: str | None = None
    audio_column: str = "audio"
    target_column: str | None = None  # default "text" (ctc) or "label" (classify)
    normalizer: TextNormalizer = TextNormalizer()
    on_bad_example: str = "skip"  # "skip" (report and leave out) or "fail" (stop at the first)
    vocab: str | None = None  # an existing vocab.json; default: built from the training transcripts
    cache_audio: bool = False  # keep decoded clips in memory after their first read

    def __post_init__(self) -> None:
        if self.on_bad_example not in ON_BAD:
            raise ValueError(f"on_bad_example must be one of {ON_BAD}, got {self.on_bad_example!r}")


def load_feature_extractor(model: str | os.PathLike) -> Any:
    """The checkpoint's feature extractor, or W2v-BERT 2.0's default when it has no preprocessor_config.json."""
    from .features import SeamlessM4TFeatureExtractor

    try:
        return SeamlessM4TFeatureExtractor.from_pretrained(model)
    except (FileNotFoundError, OSError):
        logger.info("%s has no preprocessor_config.json: using the W2v-BERT 2.0 default feature extractor", model)
        return SeamlessM4TFeatureExtractor()


def ctc_tokenizer(examples: list[Example], vocab_file: str | None = None) -> Any:
    """The CTC tokenizer of a vocab.json, or of the vocabulary of the (normalised) training transcripts."""
    from .tokenizer import Wav2Vec2CTCTokenizer, build_vocab

    if vocab_file is not None:
        return Wav2Vec2CTCTokenizer(vocab_file=vocab_file, unk_token="[UNK]", pad_token="[PAD]")
    if not examples:
        raise ValueError("no usable training examples left to build a vocabulary from")
    vocab = build_vocab([e.target for e in examples], lowercase=False)
    # No <s> / </s>: CTC does not use them, and transformers would append them to the vocabulary on loading.
    return Wav2Vec2CTCTokenizer(vocab=vocab, unk_token="[UNK]", pad_token="[PAD]", word_delimiter_token="|",
                                bos_token=None, eos_token=None)


def finetune(
    model: str,
    data: DataConfig,
    config: TrainingConfig,
    resume: bool = False,
    model_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune the checkpoint `model` (hub id or directory) on manifests; returns the run summary.

    CTC: the vocabulary (built from the training transcripts unless `data.vocab`) sets `vocab_size` and the
    blank (`pad_token_id`); the adapter, `ctc_zero_infinity` and the per-target-length "mean" CTC loss are on
    unless `model_overrides` say otherwise. Classification: the training labels set `num_labels`/`id2label`.
    Resuming takes weights, vocabulary and labels from `output_dir/last`.
    """
    from .heads import Wav2Vec2BertForCTC, Wav2Vec2BertForSequenceClassification
    from .tokenizer import Wav2Vec2CTCTokenizer

    output_dir = Path(config.output_dir)
    resume_from = find_checkpoint(output_dir)
    if resume_from is not None and not resume:
        raise ValueError(f"{output_dir} already holds a checkpoint: pass --resume to continue it, or another folder")
    source = str(resume_from) if resume_from is not None else model
    bad = BadExamples(data.on_bad_example)
    train = load_examples(data.train_manifest, config.task, bad, data.normalizer, audio_column=data.audio_column,
                          target_column_name=data.target_column)
    feature_extractor = load_feature_extractor(source)
    overrides = dict(model_overrides or {})
    if config.task == "ctc":
        if resume_from is not None:
            tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(resume_from)
        else:
            tokenizer = ctc_tokenizer(train, data.vocab)
        overrides = {"add_adapter": True, "ctc_zero_infinity": True, "ctc_loss_reduction": "mean", **overrides,
                     "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
        net = Wav2Vec2BertForCTC.from_pretrained(source, ignore_mismatched_sizes=True, **overrides)
        train = drop_too_short(train, tokenizer.encode, net.get_feat_extract_output_lengths, bad)
        encode, labels = tokenizer.encode, None
    else:
        tokenizer = None
        if resume_from is not None:
            from .config import Wav2Vec2BertConfig

            labels = list(Wav2Vec2BertConfig.from_pretrained(resume_from).label2id)
        else:
            labels = sorted({e.target for e in train})
        label2id = {label: i for i, label in enumerate(labels)}
        overrides = {**overrides, "num_labels": len(labels), "id2label": dict(enumerate(labels)),
                     "label2id": label2id}
        net = Wav2Vec2BertForSequenceClassification.from_pretrained(source, ignore_mismatched_sizes=True, **overrides)
        encode = label2id.__getitem__
    evaluation = None
    if data.eval_manifest is not None:
        eval_examples = load_examples(data.eval_manifest, config.task, bad, data.normalizer, labels=labels,
                                      audio_column=data.audio_column, target_column_name=data.target_column)
        if config.task == "ctc":
            eval_examples = drop_too_short(eval_examples, tokenizer.encode, net.get_feat_extract_output_lengths, bad)
        evaluation = SpeechDataset(eval_examples, encode, cache=data.cache_audio)
        logger.info("evaluation data: %s", describe(eval_examples))
    if not train:
        raise ValueError(f"{data.train_manifest}: no usable training examples ({dict(bad.counts)} left out)")
    logger.info("training data: %s; left out: %s", describe(train), dict(bad.counts) or "none")
    trainer = Trainer(
        net, config, SpeechDataset(train, encode, cache=data.cache_audio), Collator(feature_extractor, config.task),
        evaluation, tokenizer=tokenizer, feature_extractor=feature_extractor,
    )
    summary = trainer.train(resume=resume)
    summary |= {"train_examples": len(train), "bad_examples": dict(bad.counts), "bad_examples_total": bad.total,
                "output_dir": str(output_dir)}
    if trainer.env.main:
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ------------------------------------------------------------------------------------------------- CLI
def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a checkpoint for speech recognition (CTC) or clip classification",
        description="Fine-tune on CSV/TSV/JSONL manifests (columns: audio + text, or audio + label; audio paths "
                    "relative to the manifest). Several processes or GPUs: launch with torchrun.",
    )
    parser.add_argument("--task", choices=TASKS, default="ctc")
    parser.add_argument("--model", required=True, help="hub id or directory of the starting checkpoint")
    parser.add_argument("--train", required=True, help="training manifest")
    parser.add_argument("--eval", help="evaluation manifest")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/last")
    parser.add_argument("--audio-column", default="audio")
    parser.add_argument("--text-column", help="transcript column (ctc; default 'text')")
    parser.add_argument("--label-column", help="label column (classify; default 'label')")
    parser.add_argument("--on-bad-example", choices=ON_BAD, default="skip")
    parser.add_argument("--vocab", help="use this vocab.json instead of building one from the transcripts")
    parser.add_argument("--keep-case", action="store_true", help="do not lowercase transcripts")
    parser.add_argument("--keep-punctuation", action="store_true")
    parser.add_argument("--allowed-characters", help="drop every other character from transcripts")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--lr-schedule", choices=SCHEDULES, default="linear")
    parser.add_argument("--warmup-steps", type=int, default=500)
    parser.add_argument("--max-steps", type=int, default=10_000)
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1)
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="0 disables clipping")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--freeze-feature-projection", action="store_true")
    parser.add_argument("--freeze-layers", type=int, default=0, help="freeze the lowest K Conformer blocks")
    parser.add_argument("--no-adapter", action="store_true", help="CTC without the adapter (on by default)")
    parser.add_argument("--layerdrop", type=float, help="override the model config's LayerDrop")
    parser.add_argument("--mask-time-prob", type=float, help="override the model config's SpecAugment time masking")
    parser.add_argument("--max-batch-seconds", type=float, default=200.0, help="padded audio per global batch")
    parser.add_argument("--max-batch-size", type=int)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--save-every", type=int, default=500)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--sharding", choices=("ddp", "fsdp"), default="ddp")
    parser.add_argument("--cache-audio", action="store_true", help="keep decoded clips in memory")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--device")
    parser.set_defaults(run=run_finetune)


def run_finetune(args: argparse.Namespace) -> int:
    column = args.text_column if args.task == "ctc" else args.label_column
    normalizer = TextNormalizer(lowercase=not args.keep_case, remove_punctuation=not args.keep_punctuation,
                                allowed_characters=args.allowed_characters)
    data = DataConfig(args.train, args.eval, args.audio_column, column, normalizer, args.on_bad_example, args.vocab,
                      args.cache_audio)
    config = TrainingConfig(
        output_dir=args.output_dir, task=args.task, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        lr_schedule=args.lr_schedule, warmup_steps=args.warmup_steps, max_steps=args.max_steps,
        gradient_accumulation_steps=args.gradient_accumulation_steps, max_grad_norm=args.max_grad_norm or None,
        precision=args.precision, gradient_checkpointing=args.gradient_checkpointing,
        freeze_feature_projection=args.freeze_feature_projection, freeze_layers=args.freeze_layers,
        max_batch_seconds=args.max_batch_seconds, max_batch_size=args.max_batch_size, eval_every=args.eval_every,
        save_every=args.save_every, log_every=args.log_every, seed=args.seed, num_workers=args.num_workers,
        sharding=args.sharding, device=args.device, progress=not args.no_progress,
    )
    overrides: dict[str, Any] = {}
    if args.no_adapter:
        overrides["add_adapter"] = False
    if args.layerdrop is not None:
        overrides["layerdrop"] = args.layerdrop
    if args.mask_time_prob is not None:
        overrides["mask_time_prob"] = args.mask_time_prob
    summary = finetune(args.model, data, config, resume=args.resume, model_overrides=overrides)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return 0
