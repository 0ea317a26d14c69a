"""`w2vbert convert`: Meta's fairseq2 checkpoint file -> a Hugging Face model directory, written whole or not at all.

The names come from the table in model/fairseq2.py; the model is built and checked as `from_pretrained` of a `.pt`
file does, then saved with the original front end's preprocessor config. `convert` imports the model (and torch) when
it runs, so that `--help` answers without it.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from w2vbert.loading.names import INFERENCE_DTYPES
from w2vbert.model.names import FAIRSEQ2_KINDS
from w2vbert.utils.files import new_directory_beside

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("w2vbert")


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    kind: str = "auto",
    dtype: torch.dtype | None = None,
    pretraining: bool = False,
) -> Path:
    """Convert a fairseq2 checkpoint file into a Hugging Face model directory (written whole, or not at all).

    `pretraining` keeps the release's quantizer and contrastive projections (a `Wav2Vec2BertForPreTraining`
    directory, which every other class loads as its encoder). The directory is assembled in a temporary sibling of
    `dst` and renamed into place, so a failure at any point leaves `dst` as it was.
    """
    from w2vbert.audio.features import default_feature_extractor
    from w2vbert.model.encoder import Wav2Vec2BertModel
    from w2vbert.model.pretraining import Wav2Vec2BertForPreTraining

    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise FileExistsError(f"{dst} exists and is not an empty directory; choose a new directory")
    model = (Wav2Vec2BertForPreTraining if pretraining else Wav2Vec2BertModel).from_fairseq2(src, kind)
    if dtype is not None:
        model.to(dtype)
    dst.parent.mkdir(parents=True, exist_ok=True)
    temporary = new_directory_beside(dst)
    try:
        model.save_pretrained(temporary)
        default_feature_extractor().save_pretrained(temporary)  # the original front end's, as published
        if dst.exists():
            dst.rmdir()
        os.replace(temporary, dst)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    logger.info("wrote %s: %d tensors, %d parameters", dst, len(model.state_dict()), model.num_parameters())
    return dst


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of `w2vbert convert`."""
    parser.add_argument("src", help="the fairseq2 checkpoint (.pt)")
    parser.add_argument("dst", help="the new model directory (config.json, model.safetensors, preprocessor)")
    parser.add_argument(
        "--kind",
        choices=("auto", *FAIRSEQ2_KINDS),
        default="auto",
        help="the release: w2v-bert (conformer_shaw.pt) or seamless-m4t-v2 (its speech encoder); "
        "default: told by the tensor names",
    )
    parser.add_argument(
        "--dtype",
        choices=INFERENCE_DTYPES,
        default=None,
        help="store the weights in this dtype (default: as in the checkpoint)",
    )
    parser.add_argument("--pretraining", action="store_true",
                        help="keep the quantizer and contrastive projections, for w2vbert pretrain")
    parser.set_defaults(run=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    from w2vbert.loading.devices import resolve_dtype

    dtype = resolve_dtype(args.dtype) if args.dtype else None
    path = convert(args.src, args.dst, kind=args.kind, dtype=dtype, pretraining=args.pretraining)
    print(path)
    return 0
