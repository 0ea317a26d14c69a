"""One training step: this project's Trainer vs the transformers model class in a plain PyTorch loop.

Same config, same initial weights (ours loads the transformers checkpoint), same batch, same AdamW settings.
Each side runs in its own process so that peak memory is its own: on CUDA `max_memory_allocated`, on CPU the
peak RSS during the steps above the RSS before the first one (gradients, optimizer state, activations).

    python benchmarks/training.py                      # medium config, CPU
    python benchmarks/training.py --device cuda --precision bf16 --layers 24 --hidden 1024
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import torch


def config_kwargs(args) -> dict:
    return dict(hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64,
                intermediate_size=4 * args.hidden, output_hidden_size=args.hidden, add_adapter=True, vocab_size=32,
                pad_token_id=0, ctc_loss_reduction="mean", ctc_zero_infinity=True, layerdrop=0.0,
                mask_time_prob=0.0, final_dropout=0.0, conformer_conv_dropout=0.0)


def make_batch(args) -> dict:
    generator = torch.Generator().manual_seed(0)
    frames = int(args.seconds * 50)  # 20 ms per feature step
    lengths = torch.linspace(frames // 2, frames, args.batch).long()
    features = torch.randn(args.batch, frames, 160, generator=generator)
    mask = (torch.arange(frames)[None] < lengths[:, None]).long()
    labels = torch.randint(1, 32, (args.batch, int(args.seconds * 8)), generator=generator)
    return {"input_features": features * mask[..., None], "attention_mask": mask, "labels": labels}


def status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak(device: str) -> int:
    """Start counting the peak from now; returns the resident memory (kB) it is measured above (CPU)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return 0
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM, the peak RSS (Linux >= 4.0)
        f.write("5")
    return status_kb("VmRSS")


def peak_memory_mb(device: str, baseline_kb: int) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return (status_kb("VmHWM") - baseline_kb) / 1024


def run_side(args) -> None:
    import transformers

    torch.manual_seed(0)
    reference = transformers.Wav2Vec2BertForCTC(transformers.Wav2Vec2BertConfig(**config_kwargs(args)))
    batch = make_batch(args)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    if args.side == "transformers":
        model = reference.to(args.device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-8)
        inputs = {k: v.to(args.device) for k, v in batch.items()}

        def step():
            with torch.autocast(args.device.split(":")[0], dtype=dtype, enabled=dtype is not None):
                loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        from w2vbert import Trainer, TrainingConfig, Wav2Vec2BertForCTC

        folder = tempfile.mkdtemp()
        reference.save_pretrained(folder)
        del reference
        model = Wav2Vec2BertForCTC.from_pretrained(folder)
        config = TrainingConfig(output_dir=folder, learning_rate=1e-4, warmup_steps=0, max_steps=10**6,
                                precision=args.precision, device=args.device, progress=False, tensorboard=False)
        trainer = Trainer(model, config, train_data=None, collate_fn=None)
        trainer.setup()
        micro = [batch | {"seconds": float(batch["attention_mask"].sum()) * 0.02}]

        def step():
            trainer.train_step(micro)

    # The peak counts from before the first step: gradients, optimizer state and activations, not the weights.
    baseline = reset_peak(args.device)
    step()  # warm-up: allocator, kernels, optimizer state
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    print(json.dumps({"side": args.side, "step_s": statistics.median(times),
                      "peak_mb": peak_memory_mb(args.device, baseline)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0, help="longest clip of the batch")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--side", choices=["ours", "transformers"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        run_side(args)
        return
    results = {}
    for side in ("transformers", "ours"):
        command = [sys.executable, __file__, "--side", side] + sys.argv[1:]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[side] = json.loads(output.strip().splitlines()[-1])
    theirs, ours = results["transformers"], results["ours"]
    print(f"one training step, {args.batch} clips up to {args.seconds:g} s, hidden {args.hidden} x {args.layers} "
          f"layers, {args.precision} on {args.device}")
    print(f"{'':14}{'step (s)':>10}{'peak (MB)':>12}")
    for name, r in (("transformers", theirs), ("w2vbert", ours)):
        print(f"{name:14}{r['step_s']:10.3f}{r['peak_mb']:12.0f}")
    print(f"speed-up {theirs['step_s'] / ours['step_s']:.2f}x, peak memory ratio (ours/theirs) "
          f"{ours['peak_mb'] / max(theirs['peak_mb'], 1e-9):.2f}")


if __name__ == "__main__":
    main()
