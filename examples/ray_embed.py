"""Embeddings (or transcripts, or labels) for a corpus with Ray Data: the same script on a laptop and a cluster.

    pip install 'w2vbert[ray]'
    python examples/ray_embed.py --manifest corpus.tsv --model facebook/w2v-bert-2.0 --layer 17 --output out/
    RAY_ADDRESS=ray://head:10001 python examples/ray_embed.py ...     # a running cluster (`ray start --head`)

Without RAY_ADDRESS, `ray.init()` starts a local instance on this machine. On a cluster the audio paths must be
readable by every worker (a shared file system), and `--output` a folder they all reach (or an s3:// / gs:// URI).
Each of `--actors` Ray actors loads the model once and maps batches of rows to the task's columns; the output is
Parquet with the manifest's columns plus `embedding` (or `text`, or `label` and `score`) and `error`.
"""

from __future__ import annotations

import argparse

import ray

from w2vbert.inference.corpus import inputs_from_manifest
from w2vbert.inference.ray_data import W2vBertPredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", required=True, help="CSV/TSV/JSONL with an audio column (and optionally id)")
    parser.add_argument("--model", required=True, help="model directory or hub repo id")
    parser.add_argument("--output", required=True, help="folder (or URI) for the Parquet files")
    parser.add_argument("--task", default="feature-extraction",
                        choices=["feature-extraction", "automatic-speech-recognition", "audio-classification"])
    parser.add_argument("--layer", type=int, default=-1, help="feature-extraction: the hidden state to keep")
    parser.add_argument("--actors", type=int, default=2, help="model replicas (each one process)")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per map_batches call")
    parser.add_argument("--gpus-per-actor", type=float, default=0.0)
    args = parser.parse_args()

    ray.init()  # RAY_ADDRESS, if set, names the cluster; otherwise a local instance
    rows = [{"id": entry.id, "audio": entry.audio} for entry in inputs_from_manifest(args.manifest)]
    options = {"layer": args.layer, "pool": "mean"} if args.task == "feature-extraction" else {}
    results = ray.data.from_items(rows).map_batches(
        W2vBertPredictor,
        fn_constructor_kwargs={"model": args.model, "task": args.task, **options},
        batch_size=args.batch_size,
        batch_format="numpy",
        concurrency=args.actors,
        num_gpus=args.gpus_per_actor,
    )
    results.write_parquet(args.output)
    print(f"{len(rows)} inputs: {args.output}")


if __name__ == "__main__":
    main()
