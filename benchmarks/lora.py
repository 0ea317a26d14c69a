"""LoRA (--lora) against full fine-tuning: what trains, what it costs, and what it reaches.

`memory`: trainable parameters and peak memory of training steps of the same random CTC model on the same batch,
full fine-tuning vs LoRA, each mode in its own process so that the peaks are its own (the peak RSS of the whole
process, `ru_maxrss`, and the rise during the steps above the RSS before the first one, as benchmarks/training.py
measures it). The default is the real model's width (hidden 1024) with 4 blocks.

`demo`: the demo model's encoder (examples/demo-model) with a fresh CTC head (adapter and lm_head re-initialised,
as the CTC recipe adds them to a pre-trained checkpoint), fine-tuned fully and with LoRA for the same steps on
the same batches and schedule; held-out CER and WER of each. The two runs go in parallel processes.

    OMP_NUM_THREADS=1 python benchmarks/lora.py memory
    OMP_NUM_THREADS=1 python benchmarks/lora.py demo --data build/demo-data-full --steps 600

Measured 2026-12-01 on the shared 2-core Intel Xeon (another training job running), torch 2.13, peft 0.21.2.
`memory` (rank 8; step times contended): without the adapter (`--no-adapter`, 96.9M parameters) trainable
96,919,136 -> 950,304, peak RSS 2188 -> 1269 MB (0.58x), rise in the steps 1494 -> 519 MB (0.35x), step 12.2 ->
7.0 s; with it (122.1M) trainable 122,104,416 -> 26,135,584, peak RSS 2616 -> 1794 MB (0.69x), rise 1825 -> 947
MB. The LoRA process also holds peft and transformers imported (about 50 MB of its RSS at hidden 128).
`demo` (600 steps, full lr 1e-3, LoRA lr 2e-3: twice, not the customary 10x, as the fresh adapter and lm_head train
at it too and 2e-3 is the rate the demo model was trained at from scratch): held-out CER 2.84% / WER 9.44% full
(2,470,093 trainable), 3.25% / 10.21% LoRA (633,629 trainable), 14.3 and 14.4 min side by side.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import training  # noqa: E402  (benchmarks/training.py, next to this file: the model, batch and peak counters)

MODES = ("full", "lora")


def lora_settings(args):
    from w2vbert.training.lora import LoraSettings

    return LoraSettings(rank=args.rank) if args.mode == "lora" else None


# ------------------------------------------------------------------------------------------------ memory
def memory_side(args) -> dict:
    from w2vbert import Trainer, TrainingConfig, Wav2Vec2BertConfig, Wav2Vec2BertForCTC

    torch.manual_seed(0)
    model = Wav2Vec2BertForCTC(Wav2Vec2BertConfig(**training.config_kwargs(args) | {"add_adapter": args.adapter}))
    config = TrainingConfig(output_dir=tempfile.mkdtemp(), learning_rate=1e-4, warmup_steps=0, max_steps=10**6,
                            device=args.device, progress=False, tensorboard=False, lora=lora_settings(args))
    trainer = Trainer(model, config, train_data=None, collate_fn=None)
    trainer.setup()
    batch = training.make_batch(args)
    micro = [batch | {"seconds": float(batch["attention_mask"].sum()) * 0.02}]
    baseline = training.reset_peak(args.device)
    times = []
    for _ in range(args.steps + 1):  # the first is the warm-up: allocator, kernels, optimizer state
        start = time.perf_counter()
        trainer.train_step(micro)
        times.append(time.perf_counter() - start)
    return {"mode": args.mode, "parameters": model.num_parameters(),
            "trainable": model.num_parameters(only_trainable=True), "step_s": sorted(times[1:])[len(times[1:]) // 2],
            "rise_mb": training.peak_memory_mb(args.device, baseline),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def memory_table(results: dict, args) -> None:
    full, lora = results["full"], results["lora"]
    adapter = " + adapter" if args.adapter else ""
    print(f"training steps, {args.batch} clips up to {args.seconds:g} s, random CTC model hidden {args.hidden} x "
          f"{args.layers} blocks{adapter}, {full['parameters'] / 1e6:.1f}M parameters, LoRA rank {args.rank} on "
          f"the default targets, fp32 on {args.device}")
    print(f"{'':6}{'trainable':>14}{'peak RSS (MB)':>15}{'rise in steps (MB)':>20}{'step (s)':>10}")
    for name, r in results.items():
        print(f"{name:6}{r['trainable']:14,}{r['peak_rss_mb']:15.0f}{r['rise_mb']:20.0f}{r['step_s']:10.2f}")
    print(f"lora/full: trainable {lora['trainable'] / full['trainable']:.3f}, peak RSS "
          f"{lora['peak_rss_mb'] / full['peak_rss_mb']:.2f}, rise {lora['rise_mb'] / full['rise_mb']:.2f}, step "
          f"{lora['step_s'] / full['step_s']:.2f}")


# -------------------------------------------------------------------------------------------------- demo
def demo_side(args) -> dict:
    from w2vbert import Wav2Vec2BertForCTC
    from w2vbert.audio.features import SeamlessM4TFeatureExtractor
    from w2vbert.text.tokenizer import Wav2Vec2CTCTokenizer
    from w2vbert.training.datasets import Collator, SpeechDataset, load_examples
    from w2vbert.training.examples import BadExamples, TextNormalizer, drop_too_short
    from w2vbert.training.trainer import Trainer, TrainingConfig

    demo = Wav2Vec2BertForCTC.from_pretrained(args.model)
    torch.manual_seed(0)  # the same fresh head in both modes
    model = Wav2Vec2BertForCTC(demo.config)
    encoder = {k: v for k, v in demo.state_dict().items() if not k.startswith(("lm_head.", "wav2vec2_bert.adapter."))}
    missing, unexpected = model.load_state_dict(encoder, strict=False)
    assert not unexpected and all(k.startswith(("lm_head.", "wav2vec2_bert.adapter.")) for k in missing)
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(args.model)
    bad, normalizer = BadExamples("skip"), TextNormalizer()
    lengths = model.get_feat_extract_output_lengths
    train = drop_too_short(load_examples(args.data / "train.tsv", "ctc", bad, normalizer), tokenizer.encode, lengths,
                           bad)
    heldout = drop_too_short(load_examples(args.data / "heldout.tsv", "ctc", bad, normalizer), tokenizer.encode,
                             lengths, bad)
    extractor = SeamlessM4TFeatureExtractor()
    config = TrainingConfig(
        output_dir=str(args.work / args.mode), learning_rate=args.lora_lr if args.mode == "lora" else args.full_lr,
        warmup_steps=args.steps // 10, max_steps=args.steps, lr_schedule="cosine", max_batch_seconds=40.0,
        weight_decay=0.01, eval_every=0, save_every=args.steps, log_every=25, progress=False, tensorboard=False,
        lora=lora_settings(args),
    )
    started = time.time()
    trainer = Trainer(model, config, SpeechDataset(train, tokenizer.encode, cache=True), Collator(extractor, "ctc"),
                      SpeechDataset(heldout, tokenizer.encode, cache=True), tokenizer=tokenizer,
                      feature_extractor=extractor)
    summary = trainer.train()
    return {"mode": args.mode, "trainable": model.num_parameters(only_trainable=True),
            "parameters": model.num_parameters(), "lr": config.learning_rate, "steps": args.steps,
            "minutes": (time.time() - started) / 60, "cer": summary["final_eval"]["cer"],
            "wer": summary["final_eval"]["wer"], "train_clips": len(train), "heldout_clips": len(heldout)}


def demo_table(results: dict, args) -> None:
    full, lora = results["full"], results["lora"]
    print(f"demo model's encoder + fresh CTC head (adapter, lm_head), {args.steps} steps of 40 s batches, cosine "
          f"schedule, {full['train_clips']} training clips, CER/WER on {full['heldout_clips']} held-out clips")
    print(f"{'':6}{'trainable':>12}{'lr':>10}{'minutes':>9}{'CER %':>8}{'WER %':>8}")
    for name, r in results.items():
        print(f"{name:6}{r['trainable']:12,}{r['lr']:10.0e}{r['minutes']:9.1f}{100 * r['cer']:8.2f}"
              f"{100 * r['wer']:8.2f}")
    print(f"LoRA CER - full CER: {100 * (lora['cer'] - full['cer']):+.2f} points (target: within 2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["memory", "demo"])
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=1024, help="memory: model width")
    parser.add_argument("--layers", type=int, default=4, help="memory: Conformer blocks")
    parser.add_argument("--no-adapter", dest="adapter", action="store_false",
                        help="memory: no CTC adapter (fresh, it trains whole beside the LoRA factors)")
    parser.add_argument("--batch", type=int, default=2, help="memory: clips per batch")
    parser.add_argument("--seconds", type=float, default=4.0, help="memory: longest clip of the batch")
    parser.add_argument("--steps", type=int, default=None, help="memory: 3 timed steps; demo: 600 training steps")
    parser.add_argument("--model", default="examples/demo-model", help="demo: the model whose encoder starts both")
    parser.add_argument("--data", type=Path, default=Path("build/demo-data-full"), help="demo: train/heldout.tsv")
    parser.add_argument("--work", type=Path, default=Path("build/lora-demo"), help="demo: the runs' directories")
    parser.add_argument("--full-lr", type=float, default=1e-3, help="demo: peak lr of full fine-tuning")
    parser.add_argument("--lora-lr", type=float, default=2e-3, help="demo: peak lr of LoRA")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 3 if args.part == "memory" else 600
    side = {"memory": memory_side, "demo": demo_side}[args.part]
    if args.mode:
        print(json.dumps(side(args)))
        return
    commands = {mode: [sys.executable, __file__, *sys.argv[1:], "--mode", mode] for mode in MODES}
    if args.part == "memory":  # one after the other: each peak alone on the machine
        outputs = {mode: subprocess.run(command, check=True, capture_output=True, text=True).stdout
                   for mode, command in commands.items()}
    else:  # each run is single-threaded: side by side
        running = {mode: subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                   for mode, command in commands.items()}
        outputs = {mode: process.communicate()[0] for mode, process in running.items()}
        if any(process.returncode for process in running.values()):
            raise SystemExit("a demo run failed")
    results = {mode: json.loads(output.strip().splitlines()[-1]) for mode, output in outputs.items()}
    (memory_table if args.part == "memory" else demo_table)(results, args)


if __name__ == "__main__":
    main()
