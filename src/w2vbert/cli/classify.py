"""`w2vbert classify`: one label per file (the top-k with scores), or with `--frames` a frame classifier's labelled
segments; over files or a corpus as cli/jobs.py describes. In order: `configure`, `run_classify` (which imports what
loads torch, so that `--help` answers without it).
"""

from __future__ import annotations

import argparse
import sys

from w2vbert.cli.arguments import UsageError, add_files_arguments, positive_int


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `classify` (cli.COMMANDS) to its parser."""
    add_files_arguments(parser, output_required=False)
    parser.add_argument("--top-k", type=positive_int, default=1, help="labels printed per file (default: 1)")
    parser.add_argument("--frames", action="store_true",
                        help="a frame classifier (finetune --task frames): labelled segments with times, one "
                             "'file start end label score' line each")
    parser.set_defaults(run=run_classify)


def run_classify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from w2vbert.audio.features import feature_extractor_for
    from w2vbert.cli import jobs
    from w2vbert.inference.pipelines import load_task_model, pipeline
    from w2vbert.text.writers import write_labels

    task = "audio-frame-classification" if args.frames else "audio-classification"
    inputs = jobs.corpus_inputs(args)
    if inputs is not None:
        if args.frames:
            raise UsageError("--frames runs over the files named; corpus runs (--manifest, --input-dir) give one "
                             "label per file")
        return jobs.run_corpus(task, args, inputs, top_k=args.top_k)
    jobs.prepare_output_dir(args.output_dir)
    jobs.check_distinct_outputs(args.files, args.output_dir, ["json"])
    model = load_task_model(task, args.model, args.device, args.dtype, args.quantize)
    options = {} if args.frames else {"top_k": args.top_k}
    pipe = pipeline(task, model, feature_extractor=feature_extractor_for(args.model), batch_size=args.batch_size,
                    chunk_length_s=args.chunk_length, stride_length_s=args.stride_length, **options)
    outcome, bar = jobs.Outcome(), jobs.progress_bar(args.files, args)
    for path, labels in outcome.results(args.files, pipe.iterate(args.files, progress=jobs.advance(bar)), bar):
        if args.frames:
            lines = [f"{path}\t{s['start']:.2f}\t{s['end']:.2f}\t{s['label']}\t{s['score']:.4f}" for s in labels]
        else:
            lines = [path + "\t" + "\t".join(f"{item['label']}\t{item['score']:.4f}" for item in labels)]
        tqdm.write("\n".join(lines), file=sys.stdout)
        if args.output_dir is not None:
            write_labels(labels, path, args.output_dir)
    bar.close()
    return outcome.exit_code
