"""`w2vbert embed` (the hidden states of one layer, per frame or mean-pooled, one file each; or a corpus as
cli/jobs.py describes) and `w2vbert verify` (speaker verification: the cosine score of two files' x-vectors).

In order: `configure`, `run_embed`, `configure_verify`, `run_verify`. The runs import what loads torch, so that
`--help` answers without it.
"""

from __future__ import annotations

import argparse
import sys

from w2vbert.cli.arguments import UsageError, add_files_arguments, add_run_options
from w2vbert.text.writers import EMBEDDING_FORMATS


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `embed` or `verify` (cli.COMMANDS) to its parser."""
    if name == "verify":
        configure_verify(parser)
        return
    add_files_arguments(parser, output_required=True)
    parser.add_argument("--layer", type=int, default=-1, help="0 = projected input, k = block k, -1 = last")
    parser.add_argument("--pool", choices=["none", "mean"], default="mean", help="per frame, or the mean")
    parser.add_argument("--format", choices=EMBEDDING_FORMATS, default="npy", dest="file_format")
    parser.add_argument("--stats", action="store_true",
                        help="corpus runs: per-dimension mean and std over all valid frames (stats.safetensors)")
    parser.set_defaults(run=run_embed)


def run_embed(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from w2vbert.audio.features import feature_extractor_for
    from w2vbert.cli import jobs
    from w2vbert.inference.pipelines import load_task_model, pipeline
    from w2vbert.text.writers import write_embedding

    inputs = jobs.corpus_inputs(args)
    if inputs is not None:
        return jobs.run_corpus("feature-extraction", args, inputs, layer=args.layer,
                          pool=None if args.pool == "none" else args.pool)
    if args.stats:
        raise UsageError("--stats goes with a corpus run (--manifest or --input-dir)")
    jobs.prepare_output_dir(args.output_dir)
    jobs.check_distinct_outputs(args.files, args.output_dir, [args.file_format])
    model = load_task_model("feature-extraction", args.model, args.device, args.dtype, args.quantize)
    pipe = pipeline("feature-extraction", model, feature_extractor=feature_extractor_for(args.model), layer=args.layer,
                    pool=args.pool, batch_size=args.batch_size, chunk_length_s=args.chunk_length,
                    stride_length_s=args.stride_length)
    metadata = {"layer": str(args.layer), "pool": args.pool, "model": str(args.model)}
    outcome, bar = jobs.Outcome(), jobs.progress_bar(args.files, args)
    for path, embedding in outcome.results(args.files, pipe.iterate(args.files, progress=jobs.advance(bar)), bar):
        target = write_embedding(embedding, path, args.output_dir, args.file_format, metadata)
        tqdm.write(f"{path}\t{target}\t{tuple(embedding.shape)}", file=sys.stdout)
    bar.close()
    return outcome.exit_code


# --------------------------------------------------------------------------------------------- verify
def configure_verify(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("enroll", help="audio of the known speaker")
    parser.add_argument("test", help="audio to check")
    parser.add_argument("-m", "--model", required=True, help="an x-vector model (finetune --task xvector)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="cosine score from which the two are one speaker (default: the one stored with the "
                             "model, the equal-error point of its last evaluation)")
    add_run_options(parser, progress=False)  # two files: no progress to show
    parser.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Print `enroll test score decision`: the cosine score of the two x-vectors and, at the threshold, "same" or
    "different" speaker."""
    import torch

    from w2vbert.audio.features import feature_extractor_for
    from w2vbert.inference.pipelines import load_task_model, pipeline

    model = load_task_model("speaker-embedding", args.model, args.device, args.dtype)
    threshold = model.config.verification_threshold if args.threshold is None else args.threshold
    pipe = pipeline("speaker-embedding", model, feature_extractor=feature_extractor_for(args.model))
    enroll, test = (torch.from_numpy(embedding) for embedding in pipe([args.enroll, args.test]))
    score = float(torch.nn.functional.cosine_similarity(enroll, test, dim=0))
    if threshold is None:
        print(f"{args.enroll}\t{args.test}\t{score:.4f}")
        print(f"w2vbert verify: {args.model} stores no threshold: pass --threshold for a decision", file=sys.stderr)
        return 0
    decision = "same" if score >= threshold else "different"
    print(f"{args.enroll}\t{args.test}\t{score:.4f}\t{decision} speaker (threshold {threshold:.4f})")
    return 0
