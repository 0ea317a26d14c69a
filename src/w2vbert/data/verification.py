"""Speaker verification: trial lists, cosine scores, equal error rate and minimum detection cost.

- `read_trials(path)`: `enroll test target` lines (two clips, then 1 for the same speaker or 0), clip paths
  relative to the trial file.
- `all_pairs(speakers)`: every pair of clips, target where the speakers agree (the trials when none are given).
- `cosine_scores(embeddings, trials)`, `equal_error_rate(scores, targets)`, `min_dcf(scores, targets)`.

The detection cost is NIST's, normalised, with the VoxSRC (2020 on) parameters: P(target) 0.05, both error
costs 1. The threshold kept with a model is the score at the equal-error point of its last evaluation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

P_TARGET, COST_MISS, COST_FALSE_ALARM = 0.05, 1.0, 1.0  # VoxSRC's detection cost parameters


def read_trials(path: str | os.PathLike) -> list[tuple[str, str, int]]:
    """(enroll, test, target) per line; clip paths resolved against the trial file's folder."""
    path = Path(path)
    trials = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 3 or fields[2] not in ("0", "1"):
                raise ValueError(f"{path}:{number}: expected 'enroll test target' with target 0 or 1, got "
                                 f"{line.strip()!r}")
            enroll, test = (str((path.parent / name).resolve()) for name in fields[:2])
            trials.append((enroll, test, int(fields[2])))
    if not trials:
        raise ValueError(f"{path}: no trials")
    return trials


def all_pairs(speakers: dict[str, str]) -> list[tuple[str, str, int]]:
    """Every unordered pair of clips {clip: speaker}; target 1 where both are the same speaker."""
    clips = sorted(speakers)
    return [(a, b, int(speakers[a] == speakers[b])) for i, a in enumerate(clips) for b in clips[i + 1:]]


def cosine_scores(embeddings: dict[str, torch.Tensor], trials: Sequence[tuple[str, str, int]]) -> torch.Tensor:
    """(trials,) cosine similarity of each trial's two embeddings. A clip without an embedding is named."""
    unknown = sorted({clip for enroll, test, _ in trials for clip in (enroll, test)} - set(embeddings))
    if unknown:
        raise ValueError(f"{len(unknown)} trial clip(s) are not in the evaluation data: {unknown[:4]}")
    enroll = torch.stack([embeddings[e] for e, _, _ in trials]).double()
    test = torch.stack([embeddings[t] for _, t, _ in trials]).double()
    return torch.nn.functional.cosine_similarity(enroll, test, dim=-1)


def _error_curves(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Miss and false-alarm rates at each threshold (accept score >= threshold): every distinct score, ascending,
    and one above them all (everything rejected)."""
    if not (targets.any() and (~targets).any()):
        raise ValueError("the trials need both target and non-target pairs to measure errors")
    order = torch.argsort(scores)
    sorted_scores, sorted_targets = scores[order], targets[order].double()
    # Threshold at the k-th lowest score: the k scores below it are rejected.
    misses = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(sorted_targets, 0)])
    rejected_nontargets = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(1 - sorted_targets, 0)])
    p_miss = misses / sorted_targets.sum()
    p_false_alarm = 1 - rejected_nontargets / (1 - sorted_targets).sum()
    thresholds = torch.cat([sorted_scores, sorted_scores[-1:] + 1e-6])
    # Between tied scores no threshold separates them: keep the points where the score changes.
    distinct = torch.cat([torch.ones(1, dtype=torch.bool), sorted_scores[1:] > sorted_scores[:-1],
                          torch.ones(1, dtype=torch.bool)])
    return p_miss[distinct], p_false_alarm[distinct], thresholds[distinct]


def equal_error_rate(scores: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
    """(EER, the threshold there): where the miss rate meets the false-alarm rate (the mean of the two at the
    threshold where they are closest)."""
    p_miss, p_false_alarm, thresholds = _error_curves(scores, targets.bool())
    best = int(torch.argmin((p_miss - p_false_alarm).abs()))
    return float((p_miss[best] + p_false_alarm[best]) / 2), float(thresholds[best])


def min_dcf(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """The normalised minimum detection cost over all thresholds (parameters above)."""
    p_miss, p_false_alarm, _ = _error_curves(scores, targets.bool())
    cost = COST_MISS * P_TARGET * p_miss + COST_FALSE_ALARM * (1 - P_TARGET) * p_false_alarm
    return float(cost.min() / min(COST_MISS * P_TARGET, COST_FALSE_ALARM * (1 - P_TARGET)))
