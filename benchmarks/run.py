"""The benchmark suite in one run: w2vbert against transformers on the same weights and inputs, as ratios, plus
the fraction of this machine's matmul peak (fp32 and bf16, measured in the same run).

    PYTHONPATH=src .venv/bin/python benchmarks/run.py [--quick] [--cases "fp32 1x10s,bf16 1x10s"] \
        [--json out.json] [--threads N] [--long-layers 4] [--device cuda]

Cases (benchmarks/encoder.py): the full 600M config (random weights) on 1 x 10 s, 4 x 10 s and 1 x 120 s (the
long one with --long-layers layers, default 4, as transformers builds a frames x frames x 64 tensor per layer),
fp32 and bf16 on both sides, int8 (ours) against our fp32, and one AdamW fine-tuning step of a small CTC model.
Each side runs in its own subprocess; peak memory is the process's high-water mark during the timed calls, weights
included (resident memory on CPU, the CUDA allocator's on a GPU). Times are the best of the repeats. Feature
extraction rows come from benchmarks/features.py (CPU runs only). --device cuda runs fp32, bf16 and fp16 on the
three shapes (the 120 s clip with all 24 layers), bitsandbytes int8 against our fp16, and the training step.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import encoder  # noqa: E402  (benchmarks/encoder.py, next to this file)


def feature_rows(repeats: int) -> dict:
    """benchmarks/features.py's rows when that module is there (it is optional to this suite)."""
    path = Path(__file__).resolve().parent / "features.py"
    if not path.exists():
        return {}
    spec = importlib.util.spec_from_file_location("benchmark_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.run(repeats)


def gb(value: float) -> str:
    return f"{value / 1e9:.2f}"


def print_table(peaks: dict, results: list[dict], features: dict) -> None:
    print("matmul peak: " + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in peaks.items()))
    header = (f"{'case':30s} {'ours s':>8s} {'ref s':>8s} {'speedup':>8s} {'ours GB':>8s} {'ref GB':>7s} "
              f"{'mem x':>6s} {'GFLOP/s':>8s} {'% peak':>7s}  agreement (reference)")
    print(header)
    print("-" * len(header))
    for r in results:
        ours, ref = r["ours"], r["reference"]
        if "error" in ours or "error" in ref:
            print(f"{r['case']:30s} failed: {ours.get('error') or ref.get('error')}")
            continue
        rate = share = ""
        if "flops" in ours:
            achieved = ours["flops"] / ours["seconds"] / 1e9
            peak = peaks[r["dtype"]]
            rate, share = f"{achieved:.0f}", ("" if r["mode"] == "int8" else f"{achieved / peak:.0%}")
        if "cosine" in r:
            agreement = f"max|d| {r['max_abs_diff']:.1e}, cos {r['cosine']:.5f}"
        else:
            agreement = f"first-step loss diff {r['loss_diff']:.1e}"
        print(f"{r['case']:30s} {ours['seconds']:8.3f} {ref['seconds']:8.3f} {r['speedup']:7.2f}x "
              f"{gb(ours['peak_memory']):>8s} {gb(ref['peak_memory']):>7s} {r['memory_ratio']:5.1f}x {rate:>8s} "
              f"{share:>7s}  {agreement} ({r['reference_name']})")
    for name, row in features.items():
        blank = " " * 42
        print(f"{'features ' + name:30s} {row['w2vbert_best_s']:8.3f} {row['transformers_best_s']:8.3f} "
              f"{row['speedup_best']:7.2f}x {blank}  max|d| {row['max_abs_diff']:.1e}")


def batch_scaling(results: list[dict]) -> list[dict]:
    """Per dtype and engine: B x 10 s over B times 1 x 10 s (1.0: a batch costs what its clips cost alone; below:
    batching pays), for the forward cases of the same model size."""
    single = {(r["dtype"], r.get("layers")): r for r in results
              if r["mode"] == "forward" and r.get("batch") == 1 and r.get("seconds") == 10.0}
    rows = []
    for r in results:
        base = single.get((r["dtype"], r.get("layers")))
        if r["mode"] != "forward" or r.get("seconds") != 10.0 or base is None or "speedup" not in r:
            continue
        if "speedup" not in base:
            continue
        batch = r["batch"]
        rows.append({"dtype": r["dtype"], "batch": batch,
                     "w2vbert": r["ours"]["seconds"] / (batch * base["ours"]["seconds"]),
                     r["reference_name"]: r["reference"]["seconds"] / (batch * base["reference"]["seconds"])})
    return rows


def print_scaling(rows: list[dict]) -> None:
    print("batch scaling (B x 10 s) / (B * 1 x 10 s): w2vbert | transformers")
    for row in rows:
        reference = row.get("transformers", float("nan"))
        print(f"  {row['dtype']:9s} B={row['batch']}: {row['w2vbert']:.2f} | {reference:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-layer models, no 120 s clip, 2 repeats (< 2 min)")
    parser.add_argument("--cases", help="comma-separated case names (see --list)")
    parser.add_argument("--list", action="store_true", help="print the case names and exit")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--threads", type=int, help="torch threads in each worker (default: torch's)")
    parser.add_argument("--long-layers", type=int, default=4, help="layers of the 120 s case (default 4)")
    parser.add_argument("--no-features", action="store_true", help="skip benchmarks/features.py's rows")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: fp32/bf16/fp16 on the GPU, bitsandbytes int8, GPU memory peaks (no feature rows)")
    args = parser.parse_args(argv)
    cases = encoder.default_cases(args.quick, args.long_layers, args.device)
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    if args.cases:
        wanted = [name.strip() for name in args.cases.split(",")]
        unknown = [name for name in wanted if name not in {c.name for c in cases}]
        if unknown:
            raise SystemExit(f"unknown case(s) {unknown}; known: {[c.name for c in cases]}")
        cases = [c for c in cases if c.name in wanted]
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    dtypes = ("float32", "bfloat16", "float16") if args.device == "cuda" else ("float32", "bfloat16")
    peaks = {name: encoder.matmul_peak(getattr(torch, name), device=args.device) for name in dtypes}
    results = []
    for case in cases:
        results.append(encoder.run_case(case, args.threads))
        print(f"  done {case.name} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    features = {} if args.no_features or args.device == "cuda" else feature_rows(2 if args.quick else 3)
    machine = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {machine}")
    if args.json:
        report = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": machine,
                  "matmul_peak_gflops": peaks,
                  "encoder": results, "batch_scaling": batch_scaling(results), "features": features,
                  "seconds": time.perf_counter() - started}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_table(peaks, results, features)
    print_scaling(batch_scaling(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
