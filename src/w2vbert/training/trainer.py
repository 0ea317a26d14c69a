"""The trainer: `TrainingConfig`, the schedule, distributed helpers, run-directory checkpoints, the metrics log and
`Trainer` itself, for any model of the family whose forward returns a loss.

What a run guarantees:
- Resumable at any moment: `output_dir/last` holds weights, optimizer, scheduler, grad scaler, every RNG
  (python, numpy, torch, per rank) and the data position (epoch, global batches consumed). A run killed and
  resumed ends with the weights of an uninterrupted one.
- `last` and `best` are always loadable: each checkpoint is written whole into its own folder, and the name is a
  symbolic link swapped onto it in one atomic rename, so a kill at any point leaves the old checkpoint or the new
  one under the name, never a gap or a mix. They are in the Hugging Face layout with the processor files:
  `from_pretrained` here and in transformers loads them. A LoRA run (`TrainingConfig.lora`) saves them merged
  (training/lora.py), and `last` also holds the adapted layers' unmerged tensors, which resume it exactly.
- One run per output directory: a second run on it is refused while the first holds its lock.
- Training state is read with `torch.load(weights_only=True)`: a crafted file in a run directory cannot run code.
- Launched by `torchrun`, ranks share each global batch (DDP, or FSDP) and the loss is normalised by the global
  example count, so N processes follow the loss curve of one process on the same global batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import filelock
import jiwer
import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import nn

from w2vbert.audio.features import SeamlessM4TFeatureExtractor
from w2vbert.data.sampler import LengthGroupedBatchSampler
from w2vbert.data.verification import all_pairs, cosine_scores, equal_error_rate, min_dcf, read_trials
from w2vbert.loading.devices import rank_device
from w2vbert.loading.weights import load_weights, load_weights_file, torch_load_weights_only
from w2vbert.model.base import Wav2Vec2BertPreTrainedModel
from w2vbert.model.heads import Wav2Vec2BertForCTC
from w2vbert.model.pretraining import Wav2Vec2BertForPreTrainingOutput, example_seeds
from w2vbert.text.encoding import LABEL_PAD
from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
from w2vbert.training.datasets import TASKS
from w2vbert.training.lora import (
    LoraSettings,
    apply_lora,
    lora_training_state,
    merged_state_dict,
    save_adapter,
    unmerged_state_dict,
)
from w2vbert.utils.padding import lengths_to_mask

logger = logging.getLogger("w2vbert")

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
SHARDINGS = ("ddp", "fsdp")
TRAINER_STATE_NAME = "trainer_state.json"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.pt"
METRICS_NAME = "metrics.jsonl"
LOCK_NAME = ".lock"
LORA_STATE_NAME = "lora_state.safetensors"  # a LoRA run's adapted layers as they train (lora_training_state)


@dataclass(frozen=True)
class TrainingConfig:
    """How to train. Model-side options (SpecAugment, LayerDrop, dropouts) live in the model's config."""

    output_dir: str
    task: str = "ctc"  # "ctc" (speech recognition), "classify" (one label per clip), "frames" (one per 20 ms frame),
    # "xvector" (speaker embeddings) or "pretrain" (w2v-BERT)
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
    trials: str | None = None  # xvector: the evaluation's 'enroll test target' trial file; default every pair
    lora: LoraSettings | None = None  # LoRA adapters on the frozen encoder, the head trained whole; None: all

    def __post_init__(self) -> None:
        checks = [
            (self.task in TASKS, f"task must be one of {TASKS}, got {self.task!r}"),
            (self.lr_schedule in SCHEDULES, f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (self.sharding in SHARDINGS, f"sharding must be one of {SHARDINGS}, got {self.sharding!r}"),
            (self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (self.gradient_accumulation_steps >= 1, "gradient_accumulation_steps must be >= 1"),
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (self.freeze_layers >= 0, f"freeze_layers must be >= 0, got {self.freeze_layers}"),
            (self.save_every >= 1 and self.log_every >= 1, "save_every and log_every must be >= 1"),
            (self.max_batch_seconds > 0, f"max_batch_seconds must be > 0, got {self.max_batch_seconds}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (self.trials is None or self.task == "xvector", f"trials are for task 'xvector', not {self.task!r}"),
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
    target = rank_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return Distributed(rank, world_size, local_rank), target


def all_reduce(values: list[float], env: Distributed, device: torch.device) -> list[float]:
    """The sums of `values` over all ranks (the values themselves with one process)."""
    if not env.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(env: Distributed) -> None:
    if env.active:
        dist.barrier()


# ------------------------------------------------------------------------------------- run directories
def rng_state() -> dict[str, Any]:
    """Every random generator's state, as tensors and plain values (what `torch.load(weights_only=True)` reads)."""
    name, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def find_checkpoint(output_dir: str | os.PathLike, name: str = "last") -> Path | None:
    """The complete checkpoint `name` of a run directory (a folder holding trainer_state.json), or None.

    A run written before checkpoints were published by link may have left `name.old` after a kill between its
    two renames; it is taken when `name` itself is absent.
    """
    for candidate in (Path(output_dir) / name, Path(output_dir) / f"{name}.old"):
        if (candidate / TRAINER_STATE_NAME).is_file():
            return candidate
    return None


def publish_directory(temporary: Path, final: Path) -> None:
    """Make the fully written folder `temporary` the checkpoint `final`, with `final` loadable at every moment.

    The folder is renamed to a name of its own (`final.<n>`), then a symbolic link `final` -> that name replaces
    the previous link in one atomic rename; only then do the earlier folders go. A kill at any point leaves
    `final` naming a complete checkpoint (the old or the new one); leftovers are removed by the next save.
    """
    parent = final.parent

    def versions() -> list[Path]:  # final.<n> folders, and final.old (a real `final` folder moved aside)
        return [p for p in parent.glob(f"{final.name}.*") if p.suffix[1:].isdigit() or p.suffix == ".old"]

    number = 1 + max((int(p.suffix[1:]) for p in versions() if p.suffix[1:].isdigit()), default=0)
    versioned = parent / f"{final.name}.{number}"
    os.replace(temporary, versioned)
    if final.exists() and not final.is_symlink():  # a real folder: a run from before links, or a hand copy
        os.replace(final, parent / f"{final.name}.old")
    link = parent / f".{final.name}.link"
    link.unlink(missing_ok=True)
    link.symlink_to(versioned.name)  # relative: the run directory can be moved or copied whole
    os.replace(link, final)
    for stale in versions():
        if stale != versioned:
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def run_lock(output_dir: Path, env: Distributed) -> Iterator[None]:
    """Hold `output_dir/.lock` for the run (rank 0): a second run on the same directory is refused, not mixed in."""
    if not env.main:
        yield
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(output_dir / LOCK_NAME)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise RuntimeError(
            f"{output_dir} is in use by another training run (it holds {output_dir / LOCK_NAME}): wait for it to "
            "finish, or choose another --output-dir"
        ) from None
    try:
        yield
    finally:
        lock.release()


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; a torn last line (what a kill leaves) is dropped, any other bad line named."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "step" not in record:
                raise ValueError("not a metrics record")
        except ValueError as error:
            if number == len(lines):
                logger.warning("%s:%d: dropped a torn last record (a kill mid-write): %r", path, number, line[:80])
                break
            raise ValueError(f"{path}:{number}: not a metrics record ({error}): {line[:80]!r}") from None
        records.append(record)
    return records


# ---------------------------------------------------------------------------------------------- metrics
class MetricsLog:
    """Metric records to `metrics.jsonl` and TensorBoard, from rank 0. Resuming drops records past the resume step."""

    def __init__(self, output_dir: Path, resume_step: int, tensorboard: bool) -> None:
        self.path = output_dir / METRICS_NAME
        if self.path.exists():
            kept = [record for record in read_records(self.path) if record["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(record) + "\n" for record in kept))
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # the optional `train` extra
            except ImportError:
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


class _RunningMetrics:
    """Loss, examples and audio seconds since the last metric record, for means and throughput."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss, self.count, self.seconds, self.start = 0.0, 0.0, 0.0, time.time()
        self.values: Counter = Counter()  # the model's own figures (pre-training's parts), weighted by count

    def add(self, loss: float, count: float, seconds: float, values: dict[str, float]) -> None:
        self.loss, self.count, self.seconds = self.loss + loss, self.count + count, self.seconds + seconds
        self.values.update(values)

    def record(self, lr: float, epoch: int) -> dict[str, float]:
        elapsed = max(time.time() - self.start, 1e-9)
        record = {"loss": self.loss / max(self.count, 1), "lr": lr,
                  "audio_seconds_per_second": self.seconds / elapsed, "epoch": epoch}
        record |= {name: total / max(self.count, 1) for name, total in sorted(self.values.items())}
        self.reset()
        return record


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """Corpus WER and CER (jiwer): errors over all words / characters of the set, not averaged per clip."""
    pairs = [(r, h) for r, h in zip(references, hypotheses, strict=True) if r.strip()]
    if not pairs:
        return {"wer": float("nan"), "cer": float("nan")}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    return {"wer": float(jiwer.wer(refs, hyps)), "cer": float(jiwer.cer(refs, hyps))}


# ----------------------------------------------------------------------------------------- evaluation
class Scorer:
    """What a task's evaluation measures: `add` each batch's output, `result` over all ranks, `score` it (lower is
    better; the best checkpoint has the lowest), and `keep` what a checkpoint should carry of it."""

    def __init__(self, trainer: Trainer) -> None:
        pass

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        raise NotImplementedError

    @staticmethod
    def score(result: dict[str, float]) -> float:
        raise NotImplementedError

    @staticmethod
    def keep(model: Wav2Vec2BertPreTrainedModel, result: dict[str, float]) -> None:
        """Record in the model's config what its checkpoint should carry of this evaluation (nothing, mostly)."""


class CTCScorer(Scorer):
    """Evaluation of a CTC model: corpus WER and CER of greedy decodes; the best checkpoint has the lowest WER."""

    def __init__(self, trainer: Trainer) -> None:
        if trainer.tokenizer is None:
            raise ValueError("CTC evaluation decodes with the tokenizer: pass tokenizer=...")
        self.model, self.tokenizer = trainer.model, trainer.tokenizer
        self.references: list[str] = []
        self.hypotheses: list[str] = []

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        ids = output.logits.argmax(-1)
        mask = inputs["attention_mask"]
        lengths = self.model.get_feat_extract_output_lengths(mask.sum(-1).long()).to(ids.device)
        ids = ids.masked_fill(~lengths_to_mask(lengths, ids.shape[1]), self.tokenizer.pad_token_id).cpu()
        self.hypotheses += self.tokenizer.batch_decode(ids.tolist())
        self.references += list(batch["texts"])

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        references, hypotheses = self.references, self.hypotheses
        if env.active:
            gathered: list[Any] = [None] * env.world_size
            dist.all_gather_object(gathered, (references, hypotheses))
            references = [r for refs, _ in gathered for r in refs]
            hypotheses = [h for _, hyps in gathered for h in hyps]
        return error_rates(references, hypotheses)

    @staticmethod
    def score(result: dict[str, float]) -> float:
        """Lower is better."""
        return result["wer"]


class AccuracyScorer(Scorer):
    """Evaluation of a classifier: accuracy; the best checkpoint has the highest."""

    def __init__(self, trainer: Trainer) -> None:
        self.correct = 0.0

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        self.correct += float((output.logits.argmax(-1).cpu() == batch["labels"]).sum())

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        (correct,) = all_reduce([self.correct], env, device)
        return {"accuracy": correct / max(count, 1)}

    @staticmethod
    def score(result: dict[str, float]) -> float:
        return -result["accuracy"]


class FrameScorer(Scorer):
    """Evaluation of a frame classifier: frame accuracy and each label's F1 over the valid frames (padding left
    out); the best checkpoint has the highest macro F1 (the mean over labels, so a rare label counts as much as
    the background)."""

    def __init__(self, trainer: Trainer) -> None:
        config = trainer.model.config
        self.labels = [config.id2label[i] for i in range(config.num_labels)]
        self.confusion = torch.zeros(len(self.labels), len(self.labels), dtype=torch.float64)  # (true, predicted)

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        truth = batch["labels"].flatten()
        predicted = output.logits.argmax(-1).cpu().flatten()
        valid = truth != LABEL_PAD
        n = len(self.labels)
        self.confusion += torch.bincount(truth[valid] * n + predicted[valid], minlength=n * n).view(n, n)

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        n = len(self.labels)
        confusion = torch.tensor(all_reduce(self.confusion.flatten().tolist(), env, device)).view(n, n)
        hits = confusion.diagonal()
        f1 = 2 * hits / (confusion.sum(0) + confusion.sum(1)).clamp(min=1)
        return {"frame_accuracy": float(hits.sum() / confusion.sum().clamp(min=1)), "macro_f1": float(f1.mean()),
                **{f"f1_{label}": float(value) for label, value in zip(self.labels, f1, strict=True)}}

    @staticmethod
    def score(result: dict[str, float]) -> float:
        return -result["macro_f1"]


class VerificationScorer(Scorer):
    """Evaluation of a speaker-embedding model: cosine scores of trial pairs of held-out clips (the trial file of
    `TrainingConfig.trials`, or every pair), equal error rate, minimum detection cost, and the threshold at the
    equal-error point, which the checkpoint keeps (`verification_threshold` in its config); the best checkpoint has
    the lowest EER."""

    def __init__(self, trainer: Trainer) -> None:
        self.trials = trainer.config.trials
        self.embeddings: dict[str, torch.Tensor] = {}
        self.speakers: dict[str, str] = {}

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        for clip, speaker, embedding in zip(batch["clips"], batch["texts"], output.embeddings.float().cpu(),
                                            strict=True):
            self.embeddings[clip], self.speakers[clip] = embedding, speaker

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        embeddings, speakers = self.embeddings, self.speakers
        if env.active:
            gathered: list[Any] = [None] * env.world_size
            dist.all_gather_object(gathered, (embeddings, speakers))
            embeddings = {k: v for rank_embeddings, _ in gathered for k, v in rank_embeddings.items()}
            speakers = {k: v for _, rank_speakers in gathered for k, v in rank_speakers.items()}
        trials = read_trials(self.trials) if self.trials else all_pairs(speakers)
        scores = cosine_scores(embeddings, trials)
        if not bool(torch.isfinite(scores).all()):  # a diverged model: no best checkpoint, no threshold from it
            return {"eer": math.nan, "min_dcf": math.nan, "threshold": math.nan, "trials": len(trials)}
        targets = torch.tensor([target for _, _, target in trials], dtype=torch.bool)
        eer, threshold = equal_error_rate(scores, targets)
        return {"eer": eer, "min_dcf": min_dcf(scores, targets), "threshold": threshold, "trials": len(trials)}

    @staticmethod
    def score(result: dict[str, float]) -> float:
        return result["eer"]

    @staticmethod
    def keep(model: Wav2Vec2BertPreTrainedModel, result: dict[str, float]) -> None:
        if math.isfinite(result["threshold"]):
            model.config.verification_threshold = result["threshold"]


class PretrainingScorer(Scorer):
    """Evaluation of pre-training: the objective's parts per masked frame; the best checkpoint has the lowest loss."""

    def __init__(self, trainer: Trainer) -> None:
        self.sums: Counter = Counter()

    def add(self, batch: dict[str, Any], output: Any, inputs: dict[str, torch.Tensor]) -> None:
        frames = float(output.masked_frames)
        for name, value in output.log_values().items():
            self.sums[name] += value * frames

    def result(self, env: Distributed, device: torch.device, count: float) -> dict[str, float]:
        names = sorted(PRETRAINING_LOG_VALUES)
        sums = all_reduce([self.sums[name] for name in names], env, device)
        return {name: total / max(count, 1) for name, total in zip(names, sums, strict=True)}

    @staticmethod
    def score(result: dict[str, float]) -> float:
        return result["loss"]


PRETRAINING_LOG_VALUES = ("contrastive_loss", "diversity_loss", "masked_prediction_loss", "contrastive_accuracy",
                          "codevector_perplexity", "gumbel_temperature")


class SupervisedTask:
    """ctc, classify and xvector: the collated labels are the model's targets, and a loss averages over the clips.
    Held-out speakers of an x-vector evaluation have no class of the training set (label -100): such a batch runs
    without labels, for its embeddings."""

    def __init__(self, scorer: type[Scorer]) -> None:
        self.scorer = scorer

    def inputs(self, trainer: Trainer, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        if batch["labels"].ndim == 1 and bool((batch["labels"] == LABEL_PAD).any()):
            return {name: batch[name] for name in ("input_features", "attention_mask")}
        return {name: batch[name] for name in ("input_features", "attention_mask", "labels")}

    def count(self, inputs: dict[str, torch.Tensor]) -> float:
        return float(inputs["input_features"].shape[0])

    def stand_in(self, trainer: Trainer, batch: dict[str, Any]) -> dict[str, Any]:
        """One clip of zeros for a rank whose share of a batch is empty (its clips were bad)."""
        labels = batch["labels"]
        return {"input_features": torch.zeros(1, 64, trainer.model.config.feature_projection_input_dim),
                "attention_mask": torch.ones(1, 64, dtype=torch.long),
                "labels": torch.zeros((1, 1) if labels.ndim == 2 else (1,), dtype=torch.long), "indices": [0]}


class FramesTask(SupervisedTask):
    """frames: a label per 20 ms frame; the loss averages over the valid frames of the global batch."""

    def __init__(self) -> None:
        super().__init__(FrameScorer)

    def count(self, inputs: dict[str, torch.Tensor]) -> float:
        return float((inputs["labels"] != LABEL_PAD).sum())

    def stand_in(self, trainer: Trainer, batch: dict[str, Any]) -> dict[str, Any]:
        stand_in = super().stand_in(trainer, batch)
        return stand_in | {"labels": torch.zeros(1, 64, dtype=torch.long)}


class PretrainingTask:
    """pretrain: masked spans, distractors and Gumbel noise drawn per clip from (run seed, epoch, clip index), so
    that a resumed run and several processes draw what one uninterrupted process does; a loss averages over the
    masked frames."""

    scorer = PretrainingScorer

    def inputs(self, trainer: Trainer, batch: dict[str, Any], epoch: int) -> dict[str, torch.Tensor]:
        seeds = example_seeds(trainer.config.seed, epoch, list(batch["indices"]))
        mask, negatives = trainer.model.sample_masks(batch["attention_mask"], seeds)
        return {"input_features": batch["input_features"], "attention_mask": batch["attention_mask"],
                "mask_time_indices": mask, "sampled_negative_indices": negatives, "gumbel_seeds": seeds}

    def count(self, inputs: dict[str, torch.Tensor]) -> float:
        return float(inputs["mask_time_indices"].sum())

    def stand_in(self, trainer: Trainer, batch: dict[str, Any]) -> dict[str, Any]:
        return {"input_features": torch.zeros(1, 64, trainer.model.config.feature_projection_input_dim),
                "attention_mask": torch.ones(1, 64, dtype=torch.long), "indices": [0]}


TRAINING_TASKS: dict[str, SupervisedTask | PretrainingTask] = {
    "ctc": SupervisedTask(CTCScorer), "classify": SupervisedTask(AccuracyScorer), "frames": FramesTask(),
    "xvector": SupervisedTask(VerificationScorer), "pretrain": PretrainingTask(),
}
EVAL_EPOCH = -1  # the draws of evaluation are the same at every evaluation


# ---------------------------------------------------------------------------------------------- trainer
@dataclass
class TrainerState:
    """What, besides tensors, a resumed run needs to continue exactly where the last checkpoint was."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batches_in_epoch: int = 0  # global batches of `epoch` consumed
    best_metric: float | None = None  # WER (ctc), -accuracy (classify) or the loss (pretrain): lower is better
    best_step: int | None = None
    audio_seconds: float = 0.0  # trained on, all ranks
    history: list[dict[str, Any]] = field(default_factory=list)  # evaluation results
    bad_examples: dict[str, int] = field(default_factory=dict)  # left out while training, by kind (all ranks)


class Trainer:
    """Trains a CTC or sequence-classification model on a dataset of clips (`SpeechDataset` or alike).

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
        self.bad_examples: Counter = Counter()  # this rank's, since the last step's all-reduce
        self.task = TRAINING_TASKS[config.task]

    # ------------------------------------------------------------------------------------------ setup
    def _prepare_model(self) -> None:
        config, model = self.config, self.model
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

    def _wrap(self) -> nn.Module:
        if not self.env.active:
            return self.model
        if self.config.sharding == "fsdp":
            # FSDP2: each Conformer block is a unit (its parameters gathered just for its forward and backward),
            # the rest shards as the root unit. The module stays itself: no wrapper in the state-dict keys.
            from torch.distributed.fsdp import fully_shard  # only multi-process FSDP runs need it

            for layer in self.model.base_model.encoder.layers:
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
        seed_everything(config.seed + self.env.rank)
        checkpoint = find_checkpoint(self.output_dir) if resume else None
        if resume and checkpoint is None:
            logger.warning("no checkpoint in %s to resume from: starting from step 0", self.output_dir)
        self._prepare_model()
        if checkpoint is not None:  # after: a LoRA run's checkpoint fills the adapters _prepare_model adds
            self._load_weights(checkpoint)
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
        with run_lock(self.output_dir, Distributed(int(os.environ.get("RANK", "0")))):
            return self._train(resume)

    def _train(self, resume: bool) -> dict[str, Any]:
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
        running = _RunningMetrics()
        try:
            self._run_epochs(loader, sampler, running, metrics, bar)
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
            "bad_examples_in_training": dict(self.state.bad_examples),
        }

    def _run_epochs(
        self, loader: Any, sampler: LengthGroupedBatchSampler, running: _RunningMetrics, metrics: Any, bar: Any
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
        self, result: tuple[float, float, float, dict[str, float]], running: _RunningMetrics, metrics: Any, bar: Any
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
            inputs = self.task.inputs(self, batch, self.state.epoch)
            local_count = self.task.count(inputs) if batch["input_features"].shape[0] else 0.0
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

    def _forward(self, batch: dict[str, Any], inputs: dict[str, torch.Tensor], epoch: int) -> Any:
        """The model on this rank's share of a batch (`inputs`, the task's from it). A share left empty by bad
        examples runs on a stand-in clip of zeros (its loss is then not counted), so that the ranks' collectives
        stay in step."""
        if batch["input_features"].shape[0] == 0:
            inputs = self.task.inputs(self, self.task.stand_in(self, batch), epoch)
        with self._autocast():
            return self.wrapped(**{name: value.to(self.device) for name, value in inputs.items()})

    def _fold_bad_examples(self) -> None:
        """Add the examples the collators of every rank left out since the last fold to the run's counts."""
        counts = [dict(self.bad_examples)]
        if self.env.active:  # a collective: every rank calls it, at the same points (each checkpoint)
            counts = [None] * self.env.world_size
            dist.all_gather_object(counts, dict(self.bad_examples))
        for rank_counts in counts:
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
        """Loss and the task's metrics (WER/CER for ctc, accuracy for classify, the objective's parts for
        pretrain) on `eval_data`, over all ranks."""
        sampler = LengthGroupedBatchSampler(
            self.eval_data.seconds, self.config.max_batch_seconds, self.config.max_batch_size, shuffle=False,
            rank=self.env.rank, world_size=self.env.world_size,
        )
        scorer = self.task.scorer(self)
        model = self.wrapped
        was_training = model.training
        model.eval()
        loss_sum, loss_count, count = 0.0, 0.0, 0.0
        for batch in self._loader(self.eval_data, sampler, 0):
            inputs = self.task.inputs(self, batch, EVAL_EPOCH)
            output = self._forward(batch, inputs, EVAL_EPOCH)
            if batch["input_features"].shape[0]:
                n = self.task.count(inputs)
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

    def _model_state(self) -> dict[str, torch.Tensor]:
        """The model's state dict, whole and on CPU (with a LoRA run's adapters unmerged, under peft's names)."""
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
        """Write the run checkpoint `output_dir/name`: weights, config, processor files (+ optimizer, RNG, data
        position), published whole (`publish_directory`)."""
        final = self.output_dir / name
        temporary = self.output_dir / f".tmp-{name}"
        training = model_state = self._model_state()  # collective under FSDP: every rank calls it
        if self.config.lora is not None:
            model_state = merged_state_dict(self.model, training)
        if training_state:
            self._fold_bad_examples()
        optimizer_state = self._optimizer_state() if training_state else None
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
            torch.save(rng_state(), temporary / f"rng_state_{self.env.rank}.pt")
        barrier(self.env)
        if self.env.main:
            # The state file is written last: a folder without it is never taken for a checkpoint.
            state = asdict(self.state) | {"world_size": self.env.world_size, "config": asdict(self.config)}
            (temporary / TRAINER_STATE_NAME).write_text(json.dumps(state, indent=2) + "\n")
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
        saved = json.loads((checkpoint / TRAINER_STATE_NAME).read_text())
        if saved["world_size"] != self.env.world_size:
            raise ValueError(
                f"{checkpoint} was written by {saved['world_size']} process(es), this run has "
                f"{self.env.world_size}: resume with the same number (the data position and RNG are per rank)"
            )
        known = set(TrainerState.__dataclass_fields__)
        self.state = TrainerState(**{k: v for k, v in saved.items() if k in known})
        # Tensors and plain values only (weights_only): a planted pickle is refused, never run.
        optimizer_state = torch_load_weights_only(checkpoint / OPTIMIZER_NAME)
        if self._fsdp():
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.wrapped, self.optimizer, optimizer_state,
                                     options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(optimizer_state)
        schedule = torch_load_weights_only(checkpoint / SCHEDULER_NAME)
        self.scheduler.load_state_dict(schedule["scheduler"])
        self.scaler.load_state_dict(schedule["scaler"])
        set_rng_state(torch_load_weights_only(checkpoint / f"rng_state_{self.env.rank}.pt"))


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
