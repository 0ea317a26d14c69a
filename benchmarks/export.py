"""ONNX Runtime on the exported graph against w2vbert's own PyTorch forward, same weights, input and dtype (fp32).

    python benchmarks/export.py [--layers 4] [--seconds 10 120] [--repeats 3]

The model is the full-width W2v-BERT 2.0 config (1024 wide, 16 heads) cut to `--layers` blocks, random weights
(seed 0), exported once by `w2vbert.export.export_onnx`. Each (side, clip length) runs in a fresh subprocess, so
its peak memory is that side's alone: the resident high-water mark above the loaded weights (VmHWM reset after
loading, encoder.py's `peak_rss_reset`). Time is the best of `--repeats` calls after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder import FRAMES_PER_SECOND, peak_rss_reset, rss_bytes, speech_features  # noqa: E402


def build(layers: int):
    import torch

    import w2vbert

    torch.manual_seed(0)
    return w2vbert.Wav2Vec2BertModel(w2vbert.Wav2Vec2BertConfig(num_hidden_layers=layers)).eval()


def worker(side: str, path: str, layers: int, seconds: float, repeats: int) -> dict:
    import torch

    threads = torch.get_num_threads()
    features = speech_features(1, seconds)
    mask = torch.ones(features.shape[:2], dtype=torch.int32)  # the ONNX graph takes the extractor's int32 mask
    if side == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        inputs = {"input_features": features.numpy(), "attention_mask": mask.numpy()}
        call = lambda: session.run(None, inputs)
    else:
        model = build(layers)
        call = lambda: model(features, mask)
    baseline = rss_bytes("VmRSS")
    peak_rss_reset()
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return {"side": side, "seconds": seconds, "best_s": min(times[1:] or times),
            "peak_above_weights_mb": (rss_bytes("VmHWM") - baseline) / 2**20, "threads": threads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 120.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(**json.loads(args.worker))))
        return
    from w2vbert.export.onnx import export_onnx

    with tempfile.TemporaryDirectory() as scratch:
        path = str(export_onnx(build(args.layers), Path(scratch) / "model.onnx"))
        print(f"W2v-BERT 2.0 width, {args.layers} layers, fp32, batch 1, {os.environ.get('OMP_NUM_THREADS', 'all')}"
              " threads")
        print(f"{'clip':>6} {'frames':>7} {'torch s':>8} {'ORT s':>8} {'ORT/torch':>9} {'torch MB':>9} {'ORT MB':>8}")
        for seconds in args.seconds:
            repeats = args.repeats if seconds <= 30 else 1
            results = {}
            for side in ("torch", "onnxruntime"):
                spec = dict(side=side, path=path, layers=args.layers, seconds=seconds, repeats=repeats)
                done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], check=True,
                                      capture_output=True, text=True)
                results[side] = json.loads(done.stdout.strip().splitlines()[-1])
            ours, theirs = results["torch"], results["onnxruntime"]
            print(f"{seconds:>5.0f}s {int(seconds * FRAMES_PER_SECOND):>7} {ours['best_s']:>8.2f} "
                  f"{theirs['best_s']:>8.2f} {theirs['best_s'] / ours['best_s']:>9.2f} "
                  f"{ours['peak_above_weights_mb']:>9.0f} {theirs['peak_above_weights_mb']:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
