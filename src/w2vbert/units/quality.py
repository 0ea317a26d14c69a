"""How good units are, as the HuBERT paper (Hsu et al. 2021, section IV-B) measures them against frame labels
(phones, or the characters of a forced alignment), and how many bits a second of them takes.

With p(y, z) the joint distribution of label y and unit z over all labelled frames:

    label purity    sum_z max_y p(y, z)      E_z[max_y p(y | z)]: how well a unit predicts the label ("phone purity")
    cluster purity  sum_y max_z p(y, z)      E_y[max_z p(z | y)]: how well a label predicts the unit
    PNMI            I(y; z) / H(y)            the share of the label's uncertainty a unit removes, 0 to 1

The bit rate is that of the deduplicated sequence (runs of a unit merged): runs per second x the entropy of the
runs' units (bits), with log2 k the bound a fixed-length code would take.

In order: `unit_quality`, `bits_per_second`.
"""

from __future__ import annotations

import numpy as np

from w2vbert.units.codebook import run_lengths


def unit_quality(labels: np.ndarray, units: np.ndarray) -> dict[str, float]:
    """Label purity, cluster purity and PNMI of `units` against `labels`, both (frames,) integer arrays of the same
    frames (concatenated over files)."""
    labels, units = np.asarray(labels), np.asarray(units)
    if labels.shape != units.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"expected labels and units of one non-empty (frames,) shape, got {labels.shape} and "
                         f"{units.shape}")
    _, y = np.unique(labels, return_inverse=True)
    _, z = np.unique(units, return_inverse=True)
    joint = np.zeros((y.max() + 1, z.max() + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= joint.sum()  # p(y, z)
    py, pz = joint.sum(1), joint.sum(0)
    nonzero = joint > 0
    mutual = float((joint[nonzero] * np.log(joint[nonzero] / np.outer(py, pz)[nonzero])).sum())
    label_entropy = float(-(py * np.log(py)).sum())
    return {"label_purity": float(joint.max(0).sum()), "cluster_purity": float(joint.max(1).sum()),
            "pnmi": mutual / label_entropy if label_entropy > 0 else 1.0}


def bits_per_second(sequences: list[np.ndarray], seconds: float, k: int) -> dict[str, float]:
    """The deduplicated units' rate over recordings lasting `seconds` in all: runs per second, the entropy of
    their units (bits per run), bits per second at that entropy, and at log2 k bits per run."""
    runs = [run_lengths(units)[0] for units in sequences]
    count = sum(len(r) for r in runs)
    if count == 0 or seconds <= 0:
        raise ValueError(f"no units to measure: {count} runs over {seconds} s")
    frequencies = np.bincount(np.concatenate(runs).astype(np.int64), minlength=k) / count
    frequencies = frequencies[frequencies > 0]
    entropy = float(-(frequencies * np.log2(frequencies)).sum())
    rate = count / seconds
    return {"runs_per_second": rate, "bits_per_run": entropy, "bits_per_second": rate * entropy,
            "fixed_bits_per_second": rate * float(np.log2(k))}
