"""`w2vbert units`: speech units from one layer of a model, in two steps.

    w2vbert units fit --manifest M -m MODEL --layer N -k K -o CODEBOOK     a sample of the layer's frames over
        the corpus (a resumable corpus run, torchrun-shared; or with --ray mapped by Ray Data actors), k-means on
        it, the codebook saved with its card
    w2vbert units extract --manifest M -m MODEL --codebook CODEBOOK -o DIR  unit ids per input in Parquet shards

The work is `w2vbert.inference.units` (fit) and a corpus run of the `speech-units` pipeline (extract); the
k-means and the codebook are `w2vbert.units`. In order: `configure`, `run_fit` (and `_fit_on_ray`), `run_extract`.
The runs import what loads torch, so that `--help` answers without it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from w2vbert.cli.arguments import UsageError, add_files_arguments, non_negative_float, positive_int
from w2vbert.units.names import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    DEFAULT_K,
    DEFAULT_MAX_FRAMES,
    DEFAULT_N_INIT,
    DEFAULT_SEED,
)
from w2vbert.utils.extras import optional_import

if TYPE_CHECKING:
    from w2vbert.inference.corpus import Input
    from w2vbert.inference.units import FitSettings, FitSummary


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Add `units fit` and `units extract` (cli.COMMANDS) to the parser of `units`."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit = actions.add_parser("fit", help="fit a codebook: k-means on a sample of one layer's frames over a corpus",
                             description="Fit a codebook: k-means on a sample of one layer's frames over a corpus.")
    add_files_arguments(fit, output_required=True)
    fit.add_argument("--layer", type=int, required=True, help="0 = projected input, k = block k, -1 = last")
    fit.add_argument("-k", "--units", type=positive_int, default=DEFAULT_K, dest="k",
                     help=f"clusters: the number of distinct units (default: {DEFAULT_K})")
    fit.add_argument("--max-frames", type=positive_int, default=DEFAULT_MAX_FRAMES,
                     help=f"frames sampled over the corpus at most, 20 ms each (default: {DEFAULT_MAX_FRAMES})")
    fit.add_argument("--seed", type=int, default=DEFAULT_SEED, help="of the sample and of k-means (default: 0)")
    fit.add_argument("--algorithm", choices=ALGORITHMS, default=DEFAULT_ALGORITHM,
                     help=f"full Lloyd passes, or mini-batch steps (default: {DEFAULT_ALGORITHM})")
    fit.add_argument("--n-init", type=positive_int, default=DEFAULT_N_INIT,
                     help="k-means restarts: Lloyd fits, the lowest inertia kept; mini-batch initialisations, the "
                          f"best one fitted (default: {DEFAULT_N_INIT})")
    fit.add_argument("--max-iter", type=positive_int, default=100,
                     help="Lloyd iterations, or mini-batch passes over the sample (default: 100)")
    fit.add_argument("--kmeans-batch", type=positive_int, default=10_000,
                     help="frames per mini-batch step (default: 10000)")
    norm = fit.add_mutually_exclusive_group()
    norm.add_argument("--stats", type=Path, default=None, metavar="FILE",
                      help="normalise frames with these per-dimension statistics (embed --stats's stats.safetensors)")
    norm.add_argument("--normalize", action="store_true",
                      help="normalise frames with the statistics of this corpus's frames, computed while sampling")
    ray = fit.add_argument_group("the sample drawn with Ray Data (the ray extra: pip install 'w2vbert[ray]'; "
                                 "RAY_ADDRESS names a cluster, else a local instance)")
    ray.add_argument("--ray", action="store_true",
                     help="map the corpus with Ray Data actors (each loads the model once); k-means runs here")
    ray.add_argument("--ray-actors", type=positive_int, default=1, help="model actors (default: 1)")
    ray.add_argument("--ray-gpus-per-actor", type=non_negative_float, default=0.0,
                     help="GPUs Ray reserves for each actor (default: 0)")
    fit.set_defaults(run=run_fit)

    extract = actions.add_parser("extract", help="unit ids of every input, in Parquet shards",
                                 description="Unit ids of every input (its frames' nearest centroids), in Parquet "
                                             "shards.")
    add_files_arguments(extract, output_required=True)
    extract.add_argument("--codebook", required=True, type=Path,
                         help="a folder of units fit, or a .npy of (k, dim) centroids (with --layer)")
    extract.add_argument("--layer", type=int, default=None, help="the layer (default: the codebook's)")
    extract.add_argument("--deduplicate", action="store_true",
                         help="merge runs of one unit, with their durations in frames (a durations column)")
    extract.set_defaults(run=run_extract)


def _inputs(args: argparse.Namespace) -> list:
    """The corpus: --manifest / --input-dir, or the files named."""
    from w2vbert.cli import jobs
    from w2vbert.inference import corpus

    inputs = jobs.corpus_inputs(args)
    return corpus.inputs_from_files(args.files) if inputs is None else inputs


def run_fit(args: argparse.Namespace) -> int:
    from w2vbert.cli import jobs
    from w2vbert.inference.units import FitSettings, fit_codebook, sampling_settings
    from w2vbert.units.kmeans import KMeansOptions

    inputs = _inputs(args)
    if args.stats is not None and not args.stats.is_file():
        raise UsageError(f"--stats {args.stats}: no such file (embed --stats writes stats.safetensors)")
    options = KMeansOptions(k=args.k, n_init=args.n_init, algorithm=args.algorithm, max_iter=args.max_iter,
                            batch_size=args.kmeans_batch, seed=args.seed)
    fit = FitSettings(options, args.max_frames, stats=None if args.stats is None else str(args.stats.resolve()),
                      normalize=args.normalize)
    log = (lambda line: print(f"w2vbert units fit: {line}", file=sys.stderr, flush=True)) if not args.no_progress \
        else None
    if args.ray:
        summary = _fit_on_ray(args, inputs, fit, log)
    else:
        pipe, settings = jobs.corpus_pipeline("feature-extraction", args, layer=args.layer)
        summary = fit_codebook(pipe, sampling_settings(settings, inputs, fit), inputs, args.output_dir, fit,
                               num_workers=args.num_workers, overwrite=args.overwrite,
                               progress=not args.no_progress, log=log)
    jobs.print_summary(summary.run, args.output_dir / "sample")
    if summary.codebook is not None:
        print(f"k = {args.k} on {summary.frames} frames of layer {summary.layer}: inertia {summary.inertia:.6g} "
              f"({summary.inertia / summary.frames:.6g} per frame; restarts "
              f"{', '.join(f'{v:.6g}' for v in summary.inertias)}) in {summary.seconds:.1f} s: {summary.codebook}",
              flush=True)
    return 1 if summary.run.failed else 0


def _fit_on_ray(args: argparse.Namespace, inputs: list[Input], fit: FitSettings, log: Callable[[str], None] | None
                ) -> FitSummary:
    """`units fit --ray`: the settings from the model's config alone (the model loads in Ray's actors only)."""
    from w2vbert.inference import corpus
    from w2vbert.inference.units import fit_codebook_on_ray, sampling_settings
    from w2vbert.model.config import Wav2Vec2BertConfig

    if args.quantize is not None:
        raise UsageError("--ray runs the model unquantised: drop --quantize")
    config = Wav2Vec2BertConfig.from_pretrained(args.model)
    model = str(Path(args.model).resolve()) if Path(args.model).is_dir() else str(args.model)
    settings = corpus.BulkSettings(task="feature-extraction", model=model, dtype=args.dtype,
                                   layer=config.layer_index(args.layer))
    # RAY_ADDRESS, if set, names the cluster; otherwise a running local instance, or a new one
    optional_import("ray", "units fit --ray").init(log_to_driver=False)
    return fit_codebook_on_ray(sampling_settings(settings, inputs, fit), inputs, args.output_dir, fit,
                               actors=args.ray_actors, gpus_per_actor=args.ray_gpus_per_actor,
                               batch_size=args.batch_size, device=args.device, log=log)


def run_extract(args: argparse.Namespace) -> int:
    from w2vbert.cli import jobs
    from w2vbert.inference import corpus
    from w2vbert.units.codebook import load_codebook

    inputs = _inputs(args)
    codebook = load_codebook(args.codebook)
    layer = codebook.layer if args.layer is None else args.layer
    if layer is None:
        raise UsageError(f"--codebook {args.codebook} does not say which layer it was fitted on: pass --layer")
    args.layer = layer
    fields = {"codebook": str(args.codebook.resolve()), "codebook_sha256": codebook.digest(), "units": codebook.k,
              "deduplicate": args.deduplicate}
    pipe, settings = jobs.corpus_pipeline("speech-units", args, settings_fields=fields, codebook=codebook,
                                          layer=layer, deduplicate=args.deduplicate)
    summary = corpus.run(pipe, settings, inputs, args.output_dir, num_workers=args.num_workers,
                         overwrite=args.overwrite, progress=not args.no_progress)
    jobs.print_summary(summary, args.output_dir / corpus.MANIFEST_NAME)
    return 1 if summary.failed else 0
