"""Encoder benchmark cases: w2vbert against transformers (or against its own fp32) on the same weights and input.

Each side of each case runs in a fresh subprocess (`python benchmarks/encoder.py --worker JSON`), so its peak
memory belongs to that library alone: on CPU the resident high-water mark (VmHWM, reset after the weights are
built, so weights included), on CUDA the allocator's peak above the weights (`torch.cuda.max_memory_allocated`).
Both sides build the same random weights (w2vbert's init, seed 0; transformers loads that state dict) and read
the same speech-like input: fbank features of the espeak-ng test clip tiled to length. `benchmarks/run.py` is the
entry point.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SPEECH = ROOT / "tests" / "data" / "quick.wav"
FRAMES_PER_SECOND = 50  # 100 fbank frames/s, stacked in pairs by the feature extractor


@dataclass(frozen=True)
class Case:
    name: str
    batch: int = 1
    seconds: float = 10.0
    dtype: str = "float32"  # both sides run in this dtype
    layers: int | None = None  # None: the full 24-layer W2v-BERT 2.0 config
    mode: str = "forward"  # "forward", "int8" (ours int8 vs ours fp32), "train" (one AdamW step, small config)
    repeats: int = 3
    config: dict = field(default_factory=dict)  # overrides of the default (600M) config
    device: str = "cpu"


def default_cases(quick: bool = False, long_layers: int = 4, device: str = "cpu") -> list[Case]:
    """The cases of issue 6 and the batch-scaling ones of issue 30 (8 x 10 s); --quick keeps 2 layers and skips the
    120 s clip, for a < 2 minute smoke run. bf16 cases only where the CPU has bf16 instructions (AMX, AVX512-BF16)."""
    if device == "cuda":
        return cuda_cases(quick)
    layers = 2 if quick else None
    repeats = 2 if quick else 3
    cases = [
        Case("fp32 1x10s", layers=layers, repeats=repeats),
        Case("fp32 4x10s", batch=4, layers=layers, repeats=repeats),
        Case("fp32 8x10s", batch=8, layers=layers, repeats=repeats),
        Case(f"fp32 1x120s ({long_layers} layers)", seconds=120, layers=long_layers, repeats=1),
        Case("bf16 1x10s", dtype="bfloat16", layers=layers, repeats=repeats),
        Case("bf16 4x10s", batch=4, dtype="bfloat16", layers=layers, repeats=repeats),
        Case("bf16 8x10s", batch=8, dtype="bfloat16", layers=layers, repeats=repeats),
        Case("int8 1x10s vs our fp32", mode="int8", layers=layers, repeats=repeats),
        # int8 matmuls with bf16 activations and everything else bf16 (oneDNN), against plain bf16
        Case("int8 (bf16) 1x10s vs our bf16", dtype="bfloat16", mode="int8", layers=layers, repeats=repeats),
        Case("int8 (bf16) 4x10s vs our bf16", batch=4, dtype="bfloat16", mode="int8", layers=layers, repeats=repeats),
        Case("train step (small) 4x5s", batch=4, seconds=5, mode="train", repeats=repeats, config=SMALL),
    ]
    from w2vbert.loading.devices import cpu_features

    features = cpu_features()
    bf16 = features["amx_bf16"] or features["avx512_bf16"]  # elsewhere bf16 is emulated: no one would run it
    return [c for c in cases if not (quick and c.seconds > 60) and (bf16 or c.dtype != "bfloat16")]


def cuda_cases(quick: bool = False) -> list[Case]:
    """On a GPU: fp32 / bf16 / fp16 on the three shapes (the 120 s clip with all 24 layers: it fits), bitsandbytes
    int8 against our fp16, and the training step. The int8 case reuses mode "int8" (ours quantized vs ours)."""
    layers = 2 if quick else None
    cases = [
        Case(f"cuda {short} {shape}", batch=batch, seconds=seconds, dtype=dtype, layers=layers, device="cuda",
             repeats=5 if seconds < 60 else 3)
        for short, dtype in (("fp32", "float32"), ("bf16", "bfloat16"), ("fp16", "float16"))
        for shape, batch, seconds in (("1x10s", 1, 10.0), ("4x10s", 4, 10.0), ("1x120s", 1, 120.0))
        if not (quick and seconds > 60)
    ]
    cases.append(Case("cuda int8 (bitsandbytes) 1x10s vs our fp16", dtype="float16", mode="int8", layers=layers,
                      device="cuda", repeats=5))
    cases.append(Case("cuda train step (small) 4x5s", batch=4, seconds=5, mode="train", config=SMALL, device="cuda",
                      repeats=5))
    return cases


SMALL = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024, vocab_size=32,
             layerdrop=0.0, mask_time_prob=0.0, hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0,
             feat_proj_dropout=0.0, final_dropout=0.0, conformer_conv_dropout=0.0)  # no dropout: losses compare


def forward_flops(config, batch: int, frames: int) -> float:
    """Multiply-adds x 2 of one encoder forward (matmuls, attention, depthwise conv; norms/activations left out)."""
    c, i, k = config.hidden_size, config.intermediate_size, config.conv_depthwise_kernel_size
    tokens = batch * frames
    distances = config.left_max_position_embeddings + config.right_max_position_embeddings + 1
    per_layer = tokens * (2 * c * i * 2 + 4 * c * c + 3 * c * c + c * k + distances * c)  # ffn1+2, attn, conv
    per_layer += 2 * batch * frames * frames * c  # q.k and p.v
    return 2.0 * (tokens * config.feature_projection_input_dim * c + config.num_hidden_layers * per_layer)


def matmul_peak(dtype: torch.dtype, size: int = 3072, repeats: int = 3, device: str = "cpu") -> float:
    """GFLOP/s of one large square torch.matmul in `dtype`, best of `repeats`: the machine's practical peak."""
    size = 8192 if device == "cuda" else size
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)
    best = min(timed(lambda: torch.matmul(a, b), device) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def timed(fn, device: str = "cpu") -> float:
    """Seconds of one call of `fn`; on CUDA, from an idle GPU to the end of the work it queued."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ the worker
def speech_features(batch: int, seconds: float) -> torch.Tensor:
    """(batch, seconds * 50, 160) fbank features of test speech tiled to length, each row at another offset."""
    import wave

    import numpy as np

    from w2vbert import SeamlessM4TFeatureExtractor

    with wave.open(str(SPEECH)) as file:  # 16 kHz mono PCM16; read without PyAV, which the GPU machine may lack
        speech = np.frombuffer(file.readframes(file.getnframes()), np.int16).astype(np.float32) / 32768
    samples = int(seconds * 16000)
    tiled = np.tile(speech, samples // len(speech) + 2)
    clips = [tiled[4000 * row : 4000 * row + samples] for row in range(batch)]
    features = SeamlessM4TFeatureExtractor()(clips, sampling_rate=16000, return_tensors="pt")["input_features"]
    return features[:, : int(seconds * FRAMES_PER_SECOND)]


def peak_rss_reset() -> None:
    """Make VmHWM restart from the current RSS (Linux `clear_refs` 5), so a peak excludes model building."""
    Path("/proc/self/clear_refs").write_text("5")


def rss_bytes(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def build(case: Case, library: str):
    """(model, config) on `library` ('w2vbert' or 'transformers') with w2vbert's seed-0 random weights."""
    import w2vbert

    overrides = dict(case.config)
    if case.layers is not None:
        overrides["num_hidden_layers"] = case.layers
    config = w2vbert.Wav2Vec2BertConfig(**overrides)
    head = "Wav2Vec2BertForCTC" if case.mode == "train" else "Wav2Vec2BertModel"
    torch.manual_seed(0)
    model = getattr(w2vbert, head)(config)
    if library == "transformers":
        import transformers

        reference = getattr(transformers, head)(transformers.Wav2Vec2BertConfig(**config.to_dict()))
        reference.load_state_dict(model.state_dict())
        del model
        gc.collect()
        model = reference
    return model, config


def worker(case: Case, library: str, output: str, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    dtype = getattr(torch, case.dtype)
    model, config = build(case, library)
    features = speech_features(case.batch, case.seconds).to(case.device)
    model = model.to(case.device)
    if case.mode == "train":
        return train_step(model, features, case)
    if case.mode == "int8" and library == "int8":
        from w2vbert.model.quantization import optimize_for_inference

        # CPU: int8 matmuls, the rest in the case's dtype (float32: PyTorch's dynamic int8; bfloat16: oneDNN's);
        # CUDA: bitsandbytes LLM.int8 (its fp16 activations) on the float32 model
        model = optimize_for_inference(model.float(), dtype if case.device == "cpu" else None, quantize="int8")
    else:
        model = model.eval().to(dtype)
    features = features.to(next(model.parameters()).dtype)  # the model's compute dtype (bitsandbytes: fp16)
    gc.collect()
    loaded = memory_now(case.device)
    memory_peak_reset(case.device)
    with torch.inference_mode():
        last = model(features).last_hidden_state  # warm-up, and the output the sides compare
        times = [timed(lambda: model(features), case.device) for _ in range(case.repeats)]
    if not torch.isfinite(last).all():
        raise SystemExit(f"{library}: the output has non-finite values")
    torch.save(last.float().cpu(), output)
    return {"seconds": min(times), "times": times, "peak_memory": memory_peak(case.device), "model_memory": loaded,
            "flops": forward_flops(config, *features.shape[:2]), "output_std": float(last.float().std())}


def memory_now(device: str) -> int:
    return torch.cuda.memory_allocated() if device == "cuda" else rss_bytes("VmRSS")


def memory_peak_reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        peak_rss_reset()


def memory_peak(device: str) -> int:
    """The high-water mark since the reset, weights included: resident memory on CPU, the allocator's on CUDA."""
    return torch.cuda.max_memory_allocated() if device == "cuda" else rss_bytes("VmHWM")


def train_step(model, features: torch.Tensor, case: Case) -> dict:
    """One forward + backward + AdamW step on CTC labels; same labels, weights and input on both sides."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(1, model.config.vocab_size, (features.shape[0], 20), generator=generator)
    labels = labels.to(features.device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(features, labels=labels).loss
        loss.backward()
        optimizer.step()
        return float(loss)

    torch.manual_seed(0)
    first_loss = step()
    memory_peak_reset(case.device)
    times = [timed(step, case.device) for _ in range(case.repeats)]
    return {"seconds": min(times), "times": times, "peak_memory": memory_peak(case.device), "first_loss": first_loss}


# ------------------------------------------------------------------------------------------------ the parent
def run_side(case: Case, library: str, output: Path, threads: int | None) -> dict:
    command = [sys.executable, __file__, "--worker", json.dumps(asdict(case)), library, str(output), str(threads or 0)]
    done = subprocess.run(command, capture_output=True, text=True, env=worker_env())
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def worker_env() -> dict:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_case(case: Case, threads: int | None = None) -> dict:
    """Both sides of a case; speed ratio, memory ratio and how close the outputs are."""
    ours_name, other_name = ("int8", "w2vbert") if case.mode == "int8" else ("w2vbert", "transformers")
    with tempfile.TemporaryDirectory() as tmp:
        ours = run_side(case, ours_name, Path(tmp) / "ours.pt", threads)
        other = run_side(case, other_name, Path(tmp) / "other.pt", threads)
        result = {"case": case.name, "dtype": case.dtype, "mode": case.mode, "device": case.device, "ours": ours,
                  "reference": other, "reference_name": other_name, "batch": case.batch, "seconds": case.seconds,
                  "layers": case.layers}
        if "error" in ours or "error" in other:
            return result
        result["speedup"] = other["seconds"] / ours["seconds"]
        result["memory_ratio"] = other["peak_memory"] / ours["peak_memory"]
        if case.mode != "train":
            a, b = torch.load(Path(tmp) / "ours.pt"), torch.load(Path(tmp) / "other.pt")
            result["max_abs_diff"] = float((a - b).abs().max())
            a, b = a.double().flatten(), b.double().flatten()
            result["cosine"] = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        else:
            result["loss_diff"] = abs(ours["first_loss"] - other["first_loss"])
    return result


def main_worker(argv: list[str]) -> None:
    case = Case(**json.loads(argv[0]))
    result = worker(case, argv[1], argv[2], int(argv[3]) or None)
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        main_worker(sys.argv[2:])
    else:
        sys.exit("run benchmarks/run.py (this module holds its encoder cases)")

