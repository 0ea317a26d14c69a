"""k-means in torch, on CPU or GPU, with memory bounded by the data: no (points, k) matrix larger than a block.

    kmeans(x, options)   Lloyd: n_init restarts, each k-means++ (greedy, as scikit-learn's) -> iterations -> the
                         inertia over every point, the best kept. Mini-batch: n_init k-means++ draws scored on a
                         validation subset, the best iterated (scikit-learn's MiniBatchKMeans)

Distances are ||x||^2 - 2 x.c + ||c||^2 over blocks of `BLOCK_ELEMENTS` (block rows x k) in float32, the sums that
move centres in float64. Lloyd is scikit-learn's `KMeans(algorithm="lloyd")`: iterate until no label changes or
the centres move less than `tol` times the mean per-dimension variance; an empty cluster takes the point farthest
from its centre. Mini-batch is `MiniBatchKMeans` without reassignment (as fairseq's HuBERT units are fitted):
batches drawn with replacement, each centre the running mean of the points it was given, stopped after
`max_no_improvement` batches without a better smoothed inertia or `max_iter` passes over the data.

In order: `KMeansOptions`, `KMeansResult`, `kmeans` (and its mini-batch restarts), then its parts: `assign`,
`kmeans_plus_plus`, `lloyd`, `minibatch`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from w2vbert.units.names import ALGORITHMS, DEFAULT_N_INIT, DEFAULT_SEED

BLOCK_ELEMENTS = 1 << 22  # distances held at once (block rows x k, float32: 16 MiB)


@dataclass(frozen=True)
class KMeansOptions:
    """How `kmeans` fits."""

    k: int  # clusters
    n_init: int = DEFAULT_N_INIT  # restarts from a fresh k-means++ draw; the lowest inertia wins
    algorithm: str = "lloyd"  # "lloyd" (full passes) or "minibatch"
    max_iter: int = 100  # Lloyd: iterations; mini-batch: passes over the data
    tol: float = 1e-4  # Lloyd: stop when the centres move (squared, summed) less than tol x mean variance
    batch_size: int = 10_000  # mini-batch: points per step
    max_no_improvement: int = 10  # mini-batch: steps without a better smoothed inertia before it stops
    init_size: int | None = None  # points k-means++ draws from (a random subset); None: all of them for Lloyd,
    # max(3 x batch_size, 3 x k) for mini-batch (scikit-learn's MiniBatchKMeans default)
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        for name in ("k", "n_init", "max_iter", "batch_size", "max_no_improvement"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


    def initial_points(self) -> int | None:
        """How many points k-means++ draws its centres from (None: all)."""
        if self.init_size is not None or self.algorithm == "lloyd":
            return self.init_size
        return max(3 * self.batch_size, 3 * self.k)


@dataclass
class KMeansResult:
    centroids: torch.Tensor  # (k, dim) float32, on the data's device
    inertia: float  # sum over every point of its squared distance to its nearest centroid
    iterations: int  # of the best restart (Lloyd iterations or mini-batch steps)
    # of each restart, in order: Lloyd's over every point; mini-batch's initialisations' over the validation subset
    # (scikit-learn's choice of which to iterate)
    inertias: list[float] = field(default_factory=list)


def kmeans(
    x: torch.Tensor, options: KMeansOptions, progress: Callable[[str], None] | None = None
) -> KMeansResult:
    """Fit `options.k` centroids to the rows of `x` (points, dim) on `x`'s device. A ValueError when there are
    fewer points than clusters."""
    if x.ndim != 2:
        raise ValueError(f"expected points of shape (points, dim), got {tuple(x.shape)}")
    if len(x) < options.k:
        raise ValueError(f"k-means with k = {options.k} needs at least {options.k} frames, got {len(x)}: "
                         "lower -k or give more audio (or a larger --max-frames)")
    x = x.float()
    generator = torch.Generator().manual_seed(options.seed)  # on the CPU: the same draws on any device
    if options.algorithm == "minibatch":
        return _minibatch_restarts(x, options, generator, progress)
    best: KMeansResult | None = None
    inertias = []
    for restart in range(options.n_init):
        centroids, iterations = lloyd(x, kmeans_plus_plus(_subset(x, options.initial_points(), generator),
                                                          options.k, generator), options.max_iter, options.tol)
        inertia = float(assign(x, centroids)[1].sum(dtype=torch.float64))
        inertias.append(inertia)
        if progress is not None:
            progress(f"restart {restart + 1}/{options.n_init}: inertia {inertia:.6g} after {iterations} iterations")
        if best is None or inertia < best.inertia:
            best = KMeansResult(centroids, inertia, iterations)
    best.inertias = inertias
    return best


def _minibatch_restarts(
    x: torch.Tensor, options: KMeansOptions, generator: torch.Generator, progress: Callable[[str], None] | None
) -> KMeansResult:
    """Mini-batch restarts as scikit-learn's `MiniBatchKMeans` runs them: `n_init` k-means++ draws scored on one
    validation subset, and only the best one iterated (so restarts cost initialisations, not fits)."""
    size = options.initial_points()
    validation = _subset(x, size, generator)
    scores, best = [], None
    for restart in range(options.n_init):
        start = kmeans_plus_plus(_subset(x, size, generator), options.k, generator)
        scores.append(float(assign(validation, start)[1].sum(dtype=torch.float64)))
        if progress is not None:
            progress(f"initialisation {restart + 1}/{options.n_init}: inertia {scores[-1]:.6g} on "
                     f"{len(validation)} frames")
        if best is None or scores[-1] < min(scores[:-1]):
            best = start
    centroids, steps = minibatch(x, best, options, generator)
    inertia = float(assign(x, centroids)[1].sum(dtype=torch.float64))
    if progress is not None:
        progress(f"inertia {inertia:.6g} after {steps} mini-batch steps")
    return KMeansResult(centroids, inertia, steps, scores)


def _subset(x: torch.Tensor, size: int | None, generator: torch.Generator) -> torch.Tensor:
    if size is None or size >= len(x):
        return x
    return x[torch.randperm(len(x), generator=generator)[:size].to(x.device)]


# ---------------------------------------------------------------------------------------------------- parts
def assign(x: torch.Tensor, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's nearest centroid and squared distance to it: (points,) int64 and (points,) float32, computed
    `BLOCK_ELEMENTS` distances at a time."""
    labels = torch.empty(len(x), dtype=torch.int64, device=x.device)
    distances = torch.empty(len(x), dtype=torch.float32, device=x.device)
    for block, rows in _blocks(x, len(centroids)):
        d2 = _squared_distances(rows, centroids)  # (rows, k)
        distances[block], labels[block] = d2.min(1)
    return labels, distances


def _blocks(x: torch.Tensor, k: int):  # -> Iterator[tuple[slice, Tensor]]
    step = max(1, BLOCK_ELEMENTS // max(k, 1))
    for start in range(0, len(x), step):
        yield slice(start, start + step), x[start : start + step]


def _squared_distances(rows: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(rows, k) squared distances, clamped at 0 (the expanded form can round below it)."""
    d2 = rows.pow(2).sum(1, keepdim=True) - 2 * rows @ centroids.T + centroids.pow(2).sum(1)  # (rows, k)
    return d2.clamp_min_(0)


def kmeans_plus_plus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k initial centres drawn from the rows of `x` by greedy k-means++ (Arthur and Vassilvitskii 2007, with
    scikit-learn's 2 + log k candidates per centre, the one lowering the potential most kept): (k, dim)."""
    n = len(x)
    trials = 2 + int(math.log(k))
    norms = x.pow(2).sum(1)  # (n,) once: each step needs only the products with its candidates

    def to(points: torch.Tensor) -> torch.Tensor:  # (c, n) squared distances of the n rows to c of them, float64
        return (norms[None] - 2 * (x @ points.T).T + points.pow(2).sum(1, keepdim=True)).clamp_min_(0).double()

    centres = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    first = int(torch.randint(n, (1,), generator=generator))
    centres[0] = x[first]
    closest = to(x[first : first + 1])[0]  # (n,) to the nearest centre so far
    potential = closest.sum()
    for c in range(1, k):
        if float(potential) == 0.0:  # every point sits on a centre: there are only c distinct points
            raise ValueError(f"the {n} frames hold only {c} distinct values, fewer than k = {k} (silent or repeated "
                             "audio?): lower -k or give more varied audio")
        draws = torch.rand(trials, generator=generator, dtype=torch.float64).to(x.device) * potential
        candidates = torch.searchsorted(closest.cumsum(0), draws).clamp_(max=n - 1)  # (trials,)
        to_candidates = torch.minimum(closest[None], to(x[candidates]))  # (trials, n)
        potentials = to_candidates.sum(1)
        best = int(potentials.argmin())
        closest, potential = to_candidates[best], potentials[best]
        centres[c] = x[candidates[best]]
    return centres


def lloyd(x: torch.Tensor, centroids: torch.Tensor, max_iter: int, tol: float) -> tuple[torch.Tensor, int]:
    """Lloyd iterations from `centroids`: the centroids and the iterations run."""
    tolerance = tol * float(x.var(0).mean()) if len(x) > 1 else 0.0
    labels, iteration = None, 0
    while iteration < max_iter:
        iteration += 1
        new_labels, distances = assign(x, centroids)
        sums = torch.zeros(centroids.shape, dtype=torch.float64, device=x.device)
        for block, rows in _blocks(x, len(centroids)):
            sums.index_add_(0, new_labels[block], rows.double())
        counts = torch.bincount(new_labels, minlength=len(centroids))
        moved = (sums / counts.clamp_min(1)[:, None]).float()
        empty = torch.nonzero(counts == 0)[:, 0]
        if len(empty):  # each takes one of the points farthest from their centres (scikit-learn's rule)
            moved[empty] = x[distances.topk(len(empty)).indices]
        shift = float((moved - centroids).pow(2).sum())
        centroids = moved
        if labels is not None and torch.equal(labels, new_labels):
            break
        labels = new_labels
        if shift <= tolerance:
            break
    return centroids, iteration


def minibatch(
    x: torch.Tensor, centroids: torch.Tensor, options: KMeansOptions, generator: torch.Generator
) -> tuple[torch.Tensor, int]:
    """Mini-batch steps from `centroids`: the centroids and the steps run."""
    centroids = centroids.clone()
    n, batch = len(x), min(options.batch_size, len(x))
    counts = torch.zeros(len(centroids), dtype=torch.float64, device=x.device)  # points each centre has taken
    steps = options.max_iter * math.ceil(n / batch)
    alpha = min(1.0, 2.0 * batch / (n + 1))  # scikit-learn's smoothing of the batch inertia
    smoothed, best, stale, step = None, math.inf, 0, 0
    while step < steps:
        step += 1
        rows = x[torch.randint(n, (batch,), generator=generator).to(x.device)]
        labels, distances = assign(rows, centroids)
        batch_counts = torch.bincount(labels, minlength=len(centroids)).double()
        sums = torch.zeros(centroids.shape, dtype=torch.float64, device=x.device).index_add_(0, labels, rows.double())
        counts += batch_counts
        hit = batch_counts > 0
        # the running mean: c += (sum of the batch's points - their count x c) / all points c has taken
        update = (sums[hit] - batch_counts[hit, None] * centroids[hit].double()) / counts[hit, None]
        centroids[hit] += update.float()
        inertia = float(distances.sum(dtype=torch.float64)) / batch
        smoothed = inertia if smoothed is None else smoothed * (1 - alpha) + inertia * alpha
        if smoothed < best:
            best, stale = smoothed, 0
        else:
            stale += 1
            if stale >= options.max_no_improvement:
                break
    return centroids, step
