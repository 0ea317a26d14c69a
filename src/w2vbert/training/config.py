"""`TrainingConfig`: how a run trains (task, optimizer, schedule, precision, batching, cadence, devices, LoRA).

The accepted values of its choice fields (`SCHEDULES`, `PRECISIONS`, `SHARDINGS`) are training/names.py's; here the
frozen dataclass, one comment per field, which refuses a bad combination at construction with every reason at once.
Model-side options (SpecAugment, LayerDrop, dropouts) are the model config's; where the data comes from is
`DataConfig`'s (training/examples.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from w2vbert.training.lora import LoraSettings
from w2vbert.training.names import PRECISIONS, SCHEDULES, SHARDINGS
from w2vbert.training.tasks import TASKS, unknown_task

TRIAL_TASKS = tuple(name for name, task in TASKS.items() if task.scorer.reads_trials)  # xvector


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
    chunk_sizes: tuple[int, ...] = ()  # dynamic chunk training (WeNet's U2) of a chunked model: each batch draws
    # one of these chunk sizes (20 ms frames), so one model serves several latencies; empty: the config's chunk

    def __post_init__(self) -> None:
        checks = [
            (self.task in TASKS, unknown_task(self.task)),
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
            (all(size >= 1 for size in self.chunk_sizes), f"chunk_sizes must be >= 1 frame, got {self.chunk_sizes}"),
            (self.trials is None or self.task in TRIAL_TASKS,
             f"trials are for task {' or '.join(map(repr, TRIAL_TASKS))}, not {self.task!r}"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("invalid TrainingConfig: " + "; ".join(problems))
