"""Continued pre-training, measured: does it help fine-tuning with little labelled data, and what does one
full-size step cost?

    PYTHONPATH=src python benchmarks/pretraining.py helps [--data build/demo-data] [--pretrain-steps 1000] \
        [--finetune-steps 800] [--labelled 100] [--work build/pretraining-bench]
    PYTHONPATH=src python benchmarks/pretraining.py full-size-step [--seconds 10 --batch 2]

`helps` (data: `python scripts/make_demo_data.py --out build/demo-data --train 1500 --heldout 150 --long 0`):
pre-trains a demo-sized model (hidden 144, 4 blocks, 2.4M parameters) from scratch on the training clips' audio
alone, then fine-tunes CTC on the first `--labelled` clips of train.tsv, and, beside it, fine-tunes the same
architecture from a random initialisation with the same steps, schedule and seed. It prints the held-out CER and
WER of both, from the last step's evaluation (not the best: nothing is chosen on the held-out set).

`full-size-step`: one AdamW step of `Wav2Vec2BertForPreTraining` with the full W2v-BERT 2.0 config (random
weights) on `--batch` clips of `--seconds` of espeak-ng speech features, in a fresh process: time and the peak
resident memory (weights, gradients and optimizer state included).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "quick.wav"


def demo_config(**overrides: object) -> dict:
    """The demo model's encoder (scripts/train_demo.py), with a codebook sized for it."""
    return dict(hidden_size=144, num_hidden_layers=4, num_attention_heads=4, intermediate_size=576,
                conv_depthwise_kernel_size=15, layerdrop=0.0, hidden_dropout=0.1, mask_time_prob=0.05,
                num_codevectors_per_group=64, codevector_dim=128, proj_codevector_dim=128) | overrides


def helps(args: argparse.Namespace) -> dict:
    from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertModel
    from w2vbert.training.recipes import DataConfig, finetune, pretrain
    from w2vbert.training.trainer import TrainingConfig

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    rows = (args.data / "train.tsv").read_text().splitlines()
    labelled = args.data / f"train-first-{args.labelled}.tsv"  # beside train.tsv: its audio paths are relative
    labelled.write_text("\n".join(rows[: args.labelled + 1]) + "\n")  # the header and the first N clips
    Wav2Vec2BertConfig(**demo_config()).save_pretrained(work / "architecture")
    started = time.time()
    pretraining = TrainingConfig(
        output_dir=str(work / "pretrained"), task="pretrain", learning_rate=2e-3, lr_schedule="cosine",
        warmup_steps=args.pretrain_steps // 10, max_steps=args.pretrain_steps, max_batch_seconds=40.0,
        weight_decay=0.01, eval_every=0, save_every=250, log_every=50, progress=False, seed=args.seed,
    )
    pretrained = pretrain(str(work / "architecture"), DataConfig(str(args.data / "train.tsv"),
                                                                 str(args.data / "heldout.tsv")),
                          pretraining, from_scratch=True)
    pretrain_minutes = (time.time() - started) / 60
    torch.manual_seed(args.seed)
    Wav2Vec2BertModel(Wav2Vec2BertConfig(**demo_config())).save_pretrained(work / "random")

    def tune(source: Path, name: str) -> dict:
        config = TrainingConfig(
            output_dir=str(work / name), task="ctc", learning_rate=2e-3, lr_schedule="cosine",
            warmup_steps=args.finetune_steps // 10, max_steps=args.finetune_steps, max_batch_seconds=40.0,
            weight_decay=0.01, eval_every=0, save_every=args.finetune_steps, log_every=50, progress=False,
            seed=args.seed,
        )
        data = DataConfig(str(labelled), str(args.data / "heldout.tsv"), cache_audio=True)
        return finetune(str(source), data, config, model_overrides={"layerdrop": 0.0})["final_eval"]

    from_pretrained = tune(work / "pretrained" / "last", "from-pretrained")
    from_random = tune(work / "random", "from-random")
    return {
        "labelled_clips": args.labelled, "unlabelled_clips": len(rows) - 1, "pretrain_steps": args.pretrain_steps,
        "finetune_steps": args.finetune_steps, "pretraining_final_eval": pretrained["final_eval"],
        "pretraining_minutes": pretrain_minutes, "from_pretrained": from_pretrained, "from_random": from_random,
    }


def full_size_step(args: argparse.Namespace) -> dict:
    """One step in a fresh process, so that its peak resident memory is the step's."""
    script = f"""
import json, resource, sys, time, torch
sys.path.insert(0, {str(ROOT / "src")!r})
from w2vbert import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertForPreTraining, load_audio
from w2vbert.model.pretraining import example_seeds
speech = load_audio({str(SPEECH)!r})
clip = torch.from_numpy(speech).repeat(int({args.seconds} * 16000 // len(speech)) + 1)[: int({args.seconds} * 16000)]
inputs = SeamlessM4TFeatureExtractor(padding_value=1.0)([clip.numpy()] * {args.batch}, sampling_rate=16000,
                                                          return_tensors="pt")
torch.manual_seed(0)
model = Wav2Vec2BertForPreTraining(Wav2Vec2BertConfig(layerdrop=0.0)).train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
seeds = example_seeds(0, 0, list(range({args.batch})))
mask, negatives = model.sample_masks(inputs["attention_mask"], seeds)
times = []
for _ in range(2):  # the first step also allocates the optimizer state
    start = time.perf_counter()
    out = model(inputs["input_features"], inputs["attention_mask"], mask_time_indices=mask,
                sampled_negative_indices=negatives, gumbel_seeds=seeds)
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - start)
print(json.dumps({{"parameters": model.num_parameters(), "first_step_s": times[0], "step_s": times[1],
                   "loss": float(out.loss), "masked_frames": int(out.masked_frames),
                   "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) | {"batch": args.batch, "seconds": args.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("helps")
    run.add_argument("--data", type=Path, default=ROOT / "build" / "demo-data")
    run.add_argument("--work", type=Path, default=ROOT / "build" / "pretraining-bench")
    run.add_argument("--pretrain-steps", type=int, default=1000)
    run.add_argument("--finetune-steps", type=int, default=800)
    run.add_argument("--labelled", type=int, default=100)
    run.add_argument("--seed", type=int, default=0)
    step = commands.add_parser("full-size-step")
    step.add_argument("--seconds", type=float, default=10.0)
    step.add_argument("--batch", type=int, default=2)
    for command in (run, step):
        command.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = helps(args) if args.command == "helps" else full_size_step(args)
    result |= {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")


if __name__ == "__main__":
    main()
