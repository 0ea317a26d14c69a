"""The metrics of a run: `output_dir/metrics.jsonl` (and TensorBoard), and the running sums behind each record.

In order: `read_records` (a metrics file back, a torn last line dropped), `MetricsLog` (rank 0 appends one JSON
record per line; resuming drops the records past the resume step, so a resumed run's file reads as an
uninterrupted one's) and `RunningMetrics` (loss, examples and audio seconds since the last record).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from w2vbert.utils.extras import MissingExtra, optional_import

logger = logging.getLogger("w2vbert")

METRICS_NAME = "metrics.jsonl"


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
                optional_import("tensorboard", "TensorBoard logs")
            except MissingExtra as missing:
                logger.warning("%s; metrics go to %s only", missing, self.path)
            else:
                from torch.utils.tensorboard import SummaryWriter

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


class RunningMetrics:
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

