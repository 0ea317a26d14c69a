"""What the inference commands share when they run: the checks made before any audio is read, the per-file progress
and outcome of transcribe, classify and embed (align's checks too), and corpus runs.

Before any audio is read, everything that can be checked is: the arguments (bad values exit 2), the output
directory (a file, or not writable), outputs that would overwrite each other (two inputs with one stem), the
model (a checkpoint whose weights were partly missing, so newly initialised, is refused: it would print random
text), and the language model. Then multi-file jobs go on past a file that fails: its error is one line on
stderr, naming it, and the exit code is 1 at the end. Results go to stdout (and to files with `--output-dir`);
a progress bar of audio seconds goes to stderr.

In order: the checks (`prepare_output_dir`, `check_distinct_outputs`), a job's files (`Outcome`, `progress_bar`,
`advance`), corpus runs (`corpus_inputs`, `run_corpus`, with its parts `corpus_pipeline` and `print_summary`). The
arguments are cli/arguments.py's (`add_files_arguments`); this module loads torch, so the commands import it only
when they run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from w2vbert.audio.decode import audio_seconds
from w2vbert.audio.features import feature_extractor_for
from w2vbert.cli.arguments import UsageError
from w2vbert.inference import corpus
from w2vbert.inference.pipelines import load_task_model, pipeline
from w2vbert.loading.devices import max_batch_seconds, rank_device
from w2vbert.text.writers import output_path


# ------------------------------------------------------------------------------------- checks first
def prepare_output_dir(path: Path | None) -> None:
    """Create the output directory and prove it writable now, before the first result is computed."""
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise UsageError(f"--output-dir {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise UsageError(f"--output-dir {path} is not writable: {error.strerror or error}") from None


def check_distinct_outputs(files: list[str], output_dir: Path | None, extensions: Iterable[str]) -> None:
    """Two inputs whose outputs share a name (a/clip.wav and b/clip.wav, s1.wav and s1.mp3) would overwrite each
    other: refused before anything runs."""
    if output_dir is None:
        return
    extension = next(iter(extensions))
    targets = Counter(output_path(f, output_dir, extension) for f in files)
    clashes = sorted(str(t) for t, n in targets.items() if n > 1)
    if clashes:
        owners = [f for f in files if str(output_path(f, output_dir, extension)) == clashes[0]]
        raise UsageError(
            f"{', '.join(owners)} would all be written to {clashes[0]} (one file name per stem): rename them, or run "
            "them into separate --output-dir folders"
        )


@dataclass
class Outcome:
    """Which files of a job worked: (file, result) pairs as they come, failures reported and counted."""

    failed: int = 0

    def results(self, files: list[str], results: Iterator[Any], bar: tqdm) -> Iterator[tuple[str, Any]]:
        for path, result in zip(files, results, strict=True):
            bar.set_postfix_str(Path(path).name, refresh=False)
            if isinstance(result, Exception):
                self.failed += 1
                tqdm.write(f"w2vbert: error: {result}", file=sys.stderr)
            else:
                yield path, result

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def progress_bar(files: list[str], args: argparse.Namespace) -> tqdm:
    """A bar of audio seconds done over the files' total (from their headers: nothing is decoded for it)."""
    total = 0.0
    for path in files:
        try:
            total += audio_seconds(path)
        except (OSError, ValueError):
            pass  # the file will fail in its turn, with its own error
    return tqdm(total=total, unit="s", disable=args.no_progress, file=sys.stderr,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}, {rate_fmt}]{postfix}")


def advance(bar: tqdm) -> Callable[[float], None]:
    """The pipelines' progress callback for `bar`: seconds of audio done (the header's total is not passed, as a
    decoder may give a few samples more than a header announces)."""
    return lambda seconds: bar.update(min(seconds, max(bar.total - bar.n, 0.0)))


# ------------------------------------------------------------------------------------------ corpus runs
def corpus_inputs(args: argparse.Namespace) -> list[corpus.Input] | None:
    """The inputs of a corpus run (--manifest / --input-dir), or None for a run over the files named."""
    if args.manifest is None and args.input_dir is None:
        if not args.files:
            raise UsageError("name audio files, or a --manifest or --input-dir")
        return None
    if args.output_dir is None:
        raise UsageError("a corpus run (--manifest / --input-dir) writes shards: pass --output-dir")
    inputs = []
    if args.manifest is not None:
        inputs += corpus.inputs_from_manifest(args.manifest)
    if args.input_dir is not None:
        inputs += corpus.inputs_from_directory(args.input_dir)
    if args.files:
        inputs += corpus.inputs_from_files(args.files)
    return corpus.check_unique(inputs)


def run_corpus(
    task: str,
    args: argparse.Namespace,
    inputs: list[corpus.Input],
    decoding: str | None = None,
    **pipeline_options: Any,
) -> int:
    """A corpus run of `task`: shards in --output-dir (corpus.py), one summary line; exit 1 when an input failed.
    `decoding` describes a speech recognition run's beam search (None: greedy)."""
    pipe, settings = corpus_pipeline(task, args, decoding, **pipeline_options)
    summary = corpus.run(pipe, settings, inputs, args.output_dir, num_workers=args.num_workers,
                       overwrite=args.overwrite, progress=not args.no_progress)
    print_summary(summary, args.output_dir / corpus.MANIFEST_NAME)
    return 1 if summary.failed else 0


def corpus_pipeline(
    task: str,
    args: argparse.Namespace,
    decoding: str | None = None,
    settings_fields: dict[str, Any] | None = None,
    **pipeline_options: Any,
) -> tuple[Any, corpus.BulkSettings]:
    """The pipeline and settings of a corpus run of `task` from the command line (the model on this rank's device);
    `settings_fields` adds the settings only the calling command knows."""
    layer, pool = getattr(args, "layer", None), getattr(args, "pool", None)
    pool = None if pool == "none" else pool
    timestamps = getattr(args, "timestamps", "none")
    device = args.device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # under torchrun each rank runs on its own GPU
        device = str(rank_device(device, int(os.environ.get("LOCAL_RANK", "0"))))
    model = load_task_model(task, args.model, device, args.dtype, args.quantize)
    if task in ("feature-extraction", "speech-units"):  # as the hidden states count: 0 the input, k block k (-1
        layer = model.base_model.layer_index(layer)                 # and 24 are one run)
    settings = corpus.BulkSettings(
        task=task, model=str(Path(args.model).resolve()) if Path(args.model).is_dir() else str(args.model),
        dtype=str(model.dtype).removeprefix("torch."), quantize=args.quantize,  # "auto" as resolved here
        layer=layer if task in ("feature-extraction", "speech-units") else None,
        pool=pool if task == "feature-extraction" else None,
        timestamps=None if timestamps == "none" else timestamps, decoding=decoding, top_k=getattr(args, "top_k", 1),
        chunk_length_s=args.chunk_length, stride_length_s=args.stride_length,
        shard_size=args.shard_size or (100 if task == "feature-extraction" and pool is None else 1000),
        max_batch_seconds=args.max_batch_seconds or max_batch_seconds(model.device),
        stats=getattr(args, "stats", False), vad=pipeline_options.get("vad"), **(settings_fields or {}),
    )
    pipe = pipeline(task, model, feature_extractor=feature_extractor_for(args.model),
                    tokenizer=args.model if task == "automatic-speech-recognition" else None,
                    chunk_length_s=args.chunk_length, stride_length_s=args.stride_length, **pipeline_options)
    return pipe, settings


def print_summary(summary: corpus.BulkSummary, written: Path) -> None:
    """A corpus run's one summary line (rank 0's, under torchrun)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{summary.inputs} inputs ({summary.hours:.2f} h of audio), {summary.failed} failed, "
              f"{summary.shards} shards ({summary.skipped_shards} done before) in {summary.seconds:.1f} s: "
              f"{written}", flush=True)

