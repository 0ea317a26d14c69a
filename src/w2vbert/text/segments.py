"""Time segments with labels, and the model's frames: reading annotations, labelling frames, merging them back.

- `read_segments(path)`: a file of `start end label` lines (seconds; `#` comments and blank lines skipped), or an
  RTTM file (`SPEAKER file channel start duration <NA> <NA> speaker ...`, chosen by the `.rttm` suffix).
- `frame_labels(segments, frames, seconds_per_frame, background)`: one label id per frame, for training.
- `merge_frames(ids, scores, seconds_per_frame, labels)`: runs of one label -> segments with times, for output.

Frame i covers [i, i + 1) x `seconds_per_frame` (20 ms for the encoder's frames) and takes the label of the
segments covering its centre. Where segments of different labels overlap, the segment that starts later wins
(ties: the one listed later): a turn that starts inside another is the newer event, as when a second speaker
interrupts. Frames no segment covers take the background label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float  # seconds, > start
    label: str
    line: int  # where it was read, for messages


def read_segments(path: str | os.PathLike, recording: str | None = None) -> list[Segment]:
    """The segments of an annotation file, in file order. An RTTM file holding several recordings is filtered to
    `recording` (its file id, usually the audio file's stem). Malformed lines, negative starts and empty or reversed
    segments raise one ValueError naming the file and line."""
    path = Path(path)
    rttm = path.suffix.lower() == ".rttm"
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split("#", 1)[0].split() if not rttm else line.split()
            if not fields:
                continue
            where = f"{path}:{number}"
            try:
                if rttm:
                    if fields[0] != "SPEAKER":
                        continue  # other RTTM record types (SPKR-INFO, ...) carry no turn
                    file_id, start, end, label = fields[1], float(fields[3]), float(fields[3]) + float(fields[4]), \
                        fields[7]
                else:
                    if len(fields) != 3:
                        raise ValueError
                    file_id, start, end, label = None, float(fields[0]), float(fields[1]), fields[2]
            except (ValueError, IndexError):
                expected = "an RTTM SPEAKER line" if rttm else "'start end label' (seconds, seconds, a name)"
                raise ValueError(f"{where}: expected {expected}, got {line.strip()!r}") from None
            if not (0 <= start < end):
                raise ValueError(f"{where}: a segment must have 0 <= start < end, got start {start} end {end}")
            rows.append((file_id, Segment(start, end, label, number)))
    ids = {file_id for file_id, _ in rows}
    if len(ids) > 1:
        if recording not in ids:
            raise ValueError(f"{path} holds recordings {sorted(ids)[:6]}, not {recording!r}")
        return [segment for file_id, segment in rows if file_id == recording]
    return [segment for _, segment in rows]


def check_within(segments: list[Segment], seconds: float, seconds_per_frame: float, where: str) -> None:
    """A segment that starts at or after the clip's end, or ends more than one frame past it, is an error: the
    annotation is of another clip, or its times are in another unit."""
    for segment in segments:
        if segment.start >= seconds or segment.end > seconds + seconds_per_frame:
            raise ValueError(
                f"{where}:{segment.line}: segment {segment.start:g}-{segment.end:g} s ({segment.label}) lies outside "
                f"the clip, which is {seconds:.2f} s long"
            )


def frame_labels(
    segments: list[tuple[float, float, int]], frames: int, seconds_per_frame: float, background: int
) -> torch.Tensor:
    """(frames,) label ids from (start, end, id) segments in file order, by the rule in the module docstring."""
    centres = (torch.arange(frames, dtype=torch.float64) + 0.5) * seconds_per_frame
    ids = torch.full((frames,), background, dtype=torch.long)
    ordered = sorted(enumerate(segments), key=lambda item: (item[1][0], item[0]))  # later starts paint last
    for _, (start, end, label) in ordered:
        ids[(centres >= start) & (centres < end)] = label
    return ids


def merge_frames(
    ids: torch.Tensor, scores: torch.Tensor, seconds_per_frame: float, labels: dict[int, str]
) -> list[dict[str, float | str]]:
    """(frames,) label ids and each frame's probability of its label -> [{"label", "start", "end", "score"}],
    one per run of equal ids, in time order; score is the run's mean probability."""
    segments = []
    if ids.numel() == 0:
        return segments
    change = torch.nonzero(ids[1:] != ids[:-1]).flatten() + 1
    bounds = [0, *change.tolist(), ids.numel()]
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        segments.append({"label": labels[int(ids[start])], "start": round(start * seconds_per_frame, 3),
                         "end": round(end * seconds_per_frame, 3), "score": round(float(scores[start:end].mean()), 4)})
    return segments
