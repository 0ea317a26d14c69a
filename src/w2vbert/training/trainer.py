"""The training loop: `Trainer`, for any model of the family whose forward returns a loss.

What a run guarantees:
- Resumable at any moment: `output_dir/last` holds weights, optimizer, scheduler, grad scaler, every RNG
  (python, numpy, torch, per rank) and the data position (epoch, global batches consumed). A run killed and
  resumed ends with the weights of an uninterrupted one; a finished run resumed says so and trains nothing. A
  damaged `trainer_state.json` is refused, naming the field (training/checkpoints.py).
- `last` and `best` are always loadable: each checkpoint is written whole into its own folder, and the name is a
  symbolic link swapped onto it in one atomic rename, so a kill at any point leaves the old checkpoint or the new
  one under the name, never a gap or a mix (training/checkpoints.py). They are in the Hugging Face layout with the
  processor files: `from_pretrained` here and in transformers loads them. A LoRA run (`TrainingConfig.lora`) saves
  them merged (training/lora.py), and `last` also holds the adapted layers' unmerged tensors, which resume it
  exactly.
- One run per output directory: a second run on it is refused while the first holds its lock.
- Training state is read with `torch.load(weights_only=True)`: a crafted file in a run directory cannot run code.
- Launched by `torchrun`, ranks share each global batch (DDP, or FSDP) and the loss is normalised by the global
  example count, so N processes follow the loss curve of one process on the same global batches.

`Trainer`'s methods, in order: setup (the model prepared, wrapped, its optimizer and schedule), the loop (epochs,
accumulated micro-batches, `train_step`, what is due after a step), evaluation, and checkpoints (save, then load).
What the task changes (inputs, counts, scorer) is its `Task`'s (training/tasks.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from w2vbert.audio.features import SeamlessM4TFeatureExtractor
from w2vbert.data.sampler import LengthGroupedBatchSampler
from w2vbert.loading.weights import load_weights, load_weights_file, torch_load_weights_only
from w2vbert.model.chunking import Chunking, chunking_of
from w2vbert.model.config_rules import adapter_chunk_sizes
from w2vbert.model.heads import Wav2Vec2BertForCTC
from w2vbert.model.pretraining import Wav2Vec2BertForPreTrainingOutput
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
from w2vbert.training.checkpoints import (
    LORA_STATE_NAME,
    OPTIMIZER_NAME,
    SCHEDULER_NAME,
    TrainerState,
    find_checkpoint,
    publish_directory,
    read_trainer_state,
    rng_file,
    rng_state,
    run_lock,
    seed_everything,
    set_rng_state,
    write_trainer_state,
)
from w2vbert.training.config import TrainingConfig
from w2vbert.training.distributed import (
    Distributed,
    all_gather,
    all_reduce,
    barrier,
    full_model_state,
    full_optimizer_state,
    init_distributed,
    load_full_optimizer_state,
    wrap,
)
from w2vbert.training.lora import (
    apply_lora,
    lora_training_state,
    merged_state_dict,
    save_adapter,
    unmerged_state_dict,
)
from w2vbert.training.metrics import MetricsLog, RunningMetrics
from w2vbert.training.schedule import adamw, lr_scheduler
from w2vbert.training.tasks import task_named

logger = logging.getLogger("w2vbert")

EVAL_EPOCH = -1  # the draws of evaluation are the same at every evaluation


class Trainer:
    """Trains a model of the family for the task `config.task` names (its `Task`) on a dataset of clips
    (`SpeechDataset` or alike).

    `train_data` must have `__len__`, `__getitem__` and `seconds` (per-example lengths for batching);
    `collate_fn` turns a list of items into {"input_features", "attention_mask", "labels", "seconds"} (and
    "texts", the references, for CTC evaluation; optionally "bad", the kinds of examples it left out). `tokenizer`
    decodes CTC output for WER/CER; `tokenizer` and `feature_extractor` are saved with each checkpoint.
    `callbacks` run after every optimizer step (and its checkpoint) as `callback(trainer, step)`.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainingConfig,
        train_data: Any,
        collate_fn: Callable[[list[Any]], dict[str, Any]],
        eval_data: Any = None,
        tokenizer: Wav2Vec2CTCTokenizer | None = None,
        feature_extractor: SeamlessM4TFeatureExtractor | None = None,
        callbacks: Sequence[Callable[[Trainer, int], None]] = (),
    ) -> None:
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
        self.bad_examples: Counter = Counter()  # this rank's, since the last step's all-reduce
        self.task = task_named(config.task)
        if eval_data is not None:
            self.task.scorer.check(tokenizer)

    # ------------------------------------------------------------------------------------------ setup
    def _prepare_model(self) -> None:
        config, model = self.config, self.model
        if config.chunk_sizes:
            check_chunk_sizes(model.base_model.config, config.chunk_sizes)
        if config.lora is not None:  # first: the freezing below then also freezes the adapters of frozen blocks
            apply_lora(model, config.lora)
        if config.freeze_feature_projection:
            model.freeze_feature_encoder()
        if config.freeze_layers:
            layers = model.base_model.encoder.layers
            if config.freeze_layers > len(layers):
                raise ValueError(f"freeze_layers={config.freeze_layers} exceeds the model's {len(layers)} blocks")
            for layer in layers[: config.freeze_layers]:
                layer.requires_grad_(False)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        model.to(self.device)
        model.train()

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
        seed_everything(config.seed + self.env.rank)
        checkpoint = find_checkpoint(self.output_dir) if resume else None
        if resume and checkpoint is None:
            logger.warning("no checkpoint in %s to resume from: starting from step 0", self.output_dir)
        self._prepare_model()
        if checkpoint is not None:  # after: a LoRA run's checkpoint fills the adapters _prepare_model adds
            self._load_weights(checkpoint)
        self.wrapped = wrap(self.model, self.env, self.device, config.sharding)
        self.optimizer = adamw(self.wrapped, config)
        self.scheduler = lr_scheduler(self.optimizer, config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        if checkpoint is not None:
            self._load_training_state(checkpoint)
            logger.info("resumed from %s at step %d", checkpoint, self.state.step)

    def train(self, resume: bool = False) -> dict[str, Any]:
        """Train to `max_steps`; with `resume`, continue from `output_dir/last`. Returns the run summary."""
        with run_lock(self.output_dir, Distributed(int(os.environ.get("RANK", "0")))):
            return self._train(resume)

    def _train(self, resume: bool) -> dict[str, Any]:
        config = self.config
        self.setup(resume)
        sampler = LengthGroupedBatchSampler(
            self.train_data.seconds, config.max_batch_seconds, config.max_batch_size, shuffle=True,
            seed=config.seed, rank=self.env.rank, world_size=self.env.world_size,
        )
        started = time.time()
        if self.state.step >= config.max_steps:  # a finished run resumed: its checkpoint is its result
            if self.env.main:
                logger.warning("%s is finished: step %d of max_steps=%d, nothing to train (raise max_steps to "
                               "continue it)", self.output_dir, self.state.step, config.max_steps)
            return self._summary(sampler, started)
        loader = self._loader(self.train_data, sampler, config.seed)
        metrics = MetricsLog(self.output_dir, self.state.step, config.tensorboard) if self.env.main else None
        bar = self._progress_bar()
        running = RunningMetrics()
        try:
            self._run_epochs(loader, sampler, running, metrics, bar)
        finally:
            if bar is not None:
                bar.close()
            if metrics is not None:
                metrics.close()
        return self._summary(sampler, started)

    def _summary(self, sampler: LengthGroupedBatchSampler, started: float) -> dict[str, Any]:
        """What the run did, from its state: steps, epochs, audio, time, the best and last evaluations."""
        return {
            "steps": self.state.step, "epochs": self.state.epoch + self.state.batches_in_epoch / max(len(sampler), 1),
            "audio_hours": self.state.audio_seconds / 3600, "seconds": time.time() - started,
            "best_step": self.state.best_step, "best_metric": self.state.best_metric,
            "final_eval": self.state.history[-1] if self.state.history else None,
            "bad_examples_in_training": dict(self.state.bad_examples),
        }

    def _run_epochs(
        self, loader: Any, sampler: LengthGroupedBatchSampler, running: RunningMetrics, metrics: Any, bar: Any
    ) -> None:
        """Epoch after epoch, one optimizer step per group of accumulated batches, until max_steps."""
        while True:
            sampler.set_epoch(self.state.epoch, self.state.batches_in_epoch)
            for micro in self._accumulated(loader):
                self._after_step(self.train_step(micro), running, metrics, bar)
                if self.state.step >= self.config.max_steps:
                    return
            self.state.epoch += 1
            self.state.batches_in_epoch = 0

    def _accumulated(self, loader: Any) -> Iterator[list[dict[str, Any]]]:
        """The rest of the epoch's batches in groups of gradient_accumulation_steps (the last may be shorter),
        each counted as consumed when it is taken, so a checkpoint records the data position exactly."""
        micro: list[dict[str, Any]] = []
        for batch in loader:
            micro.append(batch)
            self.state.batches_in_epoch += 1
            if len(micro) == self.config.gradient_accumulation_steps:
                yield micro
                micro = []
        if micro:
            yield micro

    def _after_step(
        self, result: tuple[float, float, float, dict[str, float]], running: RunningMetrics, metrics: Any, bar: Any
    ) -> None:
        """Count the step; log, evaluate, checkpoint and call back when due."""
        config = self.config
        running.add(*result)
        self.state.step += 1
        self.state.audio_seconds += result[2]
        step = self.state.step
        if (step % config.log_every == 0 or step == config.max_steps) and running.count:  # a record has examples
            record = running.record(self.scheduler.get_last_lr()[0], self.state.epoch)
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

    def train_step(self, micro: list[dict[str, Any]]) -> tuple[float, float, float, dict[str, float]]:
        """One optimizer step over accumulated micro-batches (after `setup`); returns (summed loss, what it sums
        over, audio seconds, the model's own figures summed likewise), all summed over ranks. Clips the collator
        left out (bad examples) are counted; a global batch left with none is skipped, and a step left with none
        leaves the weights as they are."""
        total_loss, total_count, total_seconds, values = 0.0, 0.0, 0.0, Counter()
        for index, batch in enumerate(micro):
            self.bad_examples.update(batch.get("bad", ()))
            inputs = self._inputs(batch, self.state.epoch)
            local_count = self.task.batches.count(inputs) if batch["input_features"].shape[0] else 0.0
            global_count, seconds = all_reduce([local_count, batch["seconds"]], self.env, self.device)
            if global_count == 0:
                continue  # every clip of this global batch was bad: no rank runs it
            last = index == len(micro) - 1
            sync = contextlib.nullcontext()
            if self._fsdp():
                self.wrapped.set_requires_gradient_sync(last)  # reduce-scatter once, after the last micro-batch
            elif self.env.active and not last:
                sync = self.wrapped.no_sync()
            with sync:
                output = self._forward(batch, inputs, self.state.epoch)
                local_sum = self._loss_sum(output.loss, local_count) if local_count else output.loss * 0.0
                # DDP averages gradients over ranks: scaling by world / global count makes the result the mean
                # over every example of the global batch, whatever each rank's share of it.
                loss = local_sum * self.env.world_size / (global_count * len(micro))
                self.scaler.scale(loss).backward()
            total_loss += float(local_sum.detach())
            total_count += global_count
            total_seconds += seconds
            if local_count and isinstance(output, Wav2Vec2BertForPreTrainingOutput):
                values.update({k: v * local_count for k, v in output.log_values().items()})
        if total_count:
            self.scaler.unscale_(self.optimizer)
            if self.config.max_grad_norm is not None:
                # Under FSDP the gradients are DTensor shards, and the norm is taken over all of them.
                torch.nn.utils.clip_grad_norm_(self.wrapped.parameters(), self.config.max_grad_norm)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        names = sorted(values)
        total_loss, *summed = all_reduce([total_loss, *(values[name] for name in names)], self.env, self.device)
        return total_loss, total_count, total_seconds, dict(zip(names, summed, strict=True))

    def _inputs(self, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        """What the model is called with on `batch` in `epoch` (the task's `Batches.inputs`)."""
        return self.task.batches.inputs(batch, self.model, self.config.seed, epoch)

    def _forward(self, batch: dict[str, Any], inputs: dict[str, torch.Tensor], epoch: int) -> Any:
        """The model on this rank's share of a batch (`inputs`, the task's from it). A share left empty by bad
        examples runs on a stand-in clip of zeros (its loss is then not counted), so that the ranks' collectives
        stay in step."""
        if batch["input_features"].shape[0] == 0:
            inputs = self._inputs(self.task.batches.stand_in(batch, self.model), epoch)
        with self._autocast(), self._drawn_chunks():
            return self.wrapped(**{name: value.to(self.device) for name, value in inputs.items()})

    @contextlib.contextmanager
    def _drawn_chunks(self) -> Iterator[None]:
        """Dynamic chunk training: this step's chunk size, one of `chunk_sizes`, drawn from the seed and the step
        (so every rank draws the same one, and a resumed run the same as before), for the forward only."""
        if not self.config.chunk_sizes:
            yield
            return
        encoder = self.model.base_model
        chunks = chunking_of(encoder.config)
        draw = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.state.step)
        size = self.config.chunk_sizes[int(torch.randint(len(self.config.chunk_sizes), (1,), generator=draw))]
        encoder.training_chunks = Chunking(size, chunks.left)
        try:
            yield
        finally:
            encoder.training_chunks = None

    def _fold_bad_examples(self) -> None:
        """Add the examples the collators of every rank left out since the last fold to the run's counts."""
        # A collective: every rank calls it, at the same points (each checkpoint).
        for rank_counts in all_gather(dict(self.bad_examples), self.env):
            for kind, number in rank_counts.items():
                self.state.bad_examples[kind] = self.state.bad_examples.get(kind, 0) + number
        self.bad_examples = Counter()

    def _loss_sum(self, loss: torch.Tensor, count: float) -> torch.Tensor:
        """The model's loss as a sum over the batch's examples (the heads report a mean, unless CTC 'sum')."""
        if isinstance(self.model, Wav2Vec2BertForCTC) and self.model.config.ctc_loss_reduction == "sum":
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
        from tqdm.auto import tqdm  # the notebook-aware bar; only rank 0 with progress on draws one

        return tqdm(total=self.config.max_steps, initial=self.state.step, desc="training", unit="step")

    # -------------------------------------------------------------------------------------------- eval
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and the task's metrics (its scorer's: WER/CER for ctc, accuracy for classify, frame F1 for frames,
        EER for xvector, the objective's parts for pretrain) on `eval_data`, over all ranks."""
        sampler = LengthGroupedBatchSampler(
            self.eval_data.seconds, self.config.max_batch_seconds, self.config.max_batch_size, shuffle=False,
            rank=self.env.rank, world_size=self.env.world_size,
        )
        scorer = self.task.scorer(self.model, self.tokenizer, self.config.trials)
        model = self.wrapped
        was_training = model.training
        model.eval()
        loss_sum, loss_count, count = 0.0, 0.0, 0.0
        for batch in self._loader(self.eval_data, sampler, 0):
            inputs = self._inputs(batch, EVAL_EPOCH)
            output = self._forward(batch, inputs, EVAL_EPOCH)
            if batch["input_features"].shape[0]:
                n = self.task.batches.count(inputs)
                if output.loss is not None:  # None: held-out speakers, which the training classes lack
                    loss_sum += float(self._loss_sum(output.loss.float(), n))
                    loss_count += n
                count += n
                scorer.add(batch, output, {name: value.to(self.device) for name, value in inputs.items()})
        model.train(was_training)
        loss_sum, loss_count, count = all_reduce([loss_sum, loss_count, count], self.env, self.device)
        loss = {"loss": loss_sum / loss_count} if loss_count else {}
        return loss | scorer.result(self.env, self.device, count)

    def _evaluate_and_keep_best(self, metrics: MetricsLog | None) -> None:
        result = self.evaluate()
        self.state.history.append({"step": self.state.step, **result})
        if metrics is not None:
            metrics.write(self.state.step, "eval", result)
        self.task.scorer.keep(self.model, result)  # the weights just evaluated carry it into `best` and `last`
        score = self.task.scorer.score(result)
        if not math.isnan(score) and (self.state.best_metric is None or score < self.state.best_metric):
            self.state.best_metric, self.state.best_step = score, self.state.step
            self.save_checkpoint("best", training_state=False)
        logger.info("step %d eval: %s", self.state.step, result)

    # ---------------------------------------------------------------------------------------- checkpoints
    def _fsdp(self) -> bool:
        return self.env.active and self.config.sharding == "fsdp"

    def save_checkpoint(self, name: str, training_state: bool = True) -> Path:
        """Write the run checkpoint `output_dir/name`: weights, config, processor files (+ optimizer, RNG, data
        position), published whole (`publish_directory`)."""
        final = self.output_dir / name
        temporary = self.output_dir / f".tmp-{name}"
        training = model_state = full_model_state(self.model, self.wrapped, self._fsdp())  # a collective under FSDP
        if self.config.lora is not None:
            model_state = merged_state_dict(self.model, training)
        if training_state:
            self._fold_bad_examples()
        optimizer_state = full_optimizer_state(self.wrapped, self.optimizer, self._fsdp()) if training_state else None
        if self.env.main:
            shutil.rmtree(temporary, ignore_errors=True)
            temporary.mkdir(parents=True)
            self.model.save_pretrained(temporary, state_dict=model_state)
            if self.config.lora is not None and self.config.lora.save_adapter:
                save_adapter(self.model, temporary, training)
            if self.feature_extractor is not None:
                self.feature_extractor.save_pretrained(temporary)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(temporary)
            if training_state:
                if self.config.lora is not None:
                    tensors = lora_training_state(self.model, training)
                    save_file({k: v.contiguous() for k, v in tensors.items()}, temporary / LORA_STATE_NAME)
                torch.save(optimizer_state, temporary / OPTIMIZER_NAME)
                torch.save({"scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()},
                           temporary / SCHEDULER_NAME)
        barrier(self.env)
        if training_state:
            torch.save(rng_state(), rng_file(temporary, self.env.rank))
        barrier(self.env)
        if self.env.main:
            # The state file is written last: a folder without it is never taken for a checkpoint.
            write_trainer_state(temporary, self.state, self.env.world_size, self.config)
            publish_directory(temporary, final)
        barrier(self.env)
        return final

    def _load_weights(self, checkpoint: Path) -> None:
        state = load_weights(checkpoint)
        lora_state = checkpoint / LORA_STATE_NAME
        if lora_state.is_file() != (self.config.lora is not None):
            kind = "a LoRA" if lora_state.is_file() else "a full fine-tuning"
            raise ValueError(f"{checkpoint} was written by {kind} run, this one has lora={self.config.lora}: "
                             "resume with the settings it was started with")
        if self.config.lora is not None:
            state = unmerged_state_dict(self.model, state, load_weights_file(lora_state))
        self.model.load_state_dict(state)

    def _load_training_state(self, checkpoint: Path) -> None:
        self.state = read_trainer_state(checkpoint, self.env.world_size)
        # Tensors and plain values only (weights_only): a planted pickle is refused, never run.
        optimizer_state = torch_load_weights_only(checkpoint / OPTIMIZER_NAME)
        load_full_optimizer_state(self.wrapped, self.optimizer, optimizer_state, self._fsdp())
        schedule = torch_load_weights_only(checkpoint / SCHEDULER_NAME)
        self.scheduler.load_state_dict(schedule["scheduler"])
        self.scaler.load_state_dict(schedule["scaler"])
        set_rng_state(torch_load_weights_only(rng_file(checkpoint, self.env.rank)))


def check_chunk_sizes(model_config: Any, sizes: Sequence[int]) -> None:
    """Dynamic chunk sizes need a chunked model, and sizes its adapter's strides divide (as its own chunk)."""
    if chunking_of(model_config) is None:
        raise ValueError("chunk_sizes (dynamic chunk training) need a chunked model: set streaming_chunk_size in its "
                         "config (w2vbert finetune --streaming MS)")
    step = adapter_chunk_sizes(model_config, 1)[0]
    bad = [size for size in sizes if size % step]
    if bad:
        raise ValueError(f"chunk sizes {bad} (frames) are not divisible by the adapter's strides ({step}); sizes "
                         f"that work: {', '.join(map(str, adapter_chunk_sizes(model_config)))}, ...")
