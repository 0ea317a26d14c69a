"""Peer engines side by side with w2vbert and transformers, on the same weights and inputs (issue 19).

    PYTHONPATH=src .venv/bin/python benchmarks/peers.py [--quick] [--shapes 1x10 4x10] [--json out.json] \
        [--threads N] [--model DIR] [--rows "w2vbert fp32,onnxruntime int8"]

The model: a Wav2Vec2BertForCTC of the W2v-BERT 2.0 config (`Wav2Vec2BertConfig()` defaults: 24 layers, 1024
wide, ~600M) with the usual CTC fine-tuning head (one adapter layer, a 32-token vocabulary), random weights
(w2vbert's init, seed 0), saved once to a temporary directory (or `--model DIR`, a Wav2Vec2BertForCTC directory).
The CTC head is there because CTranslate2's converter takes only `Wav2Vec2BertForCTC` (with its adapter); so the
output every row is compared on is the CTC logits (batch, frames / 2, 32), against transformers fp32.
The input: fbank features of the espeak-ng test clip tiled to length (encoder.py's `speech_features`), the same
array for every engine.

Rows (each in its own subprocess; peak GB is that process's VmHWM, its resident high-water mark since exec, so
weights and load-time conversion included; ru_maxrss would carry the parent's peak across fork + exec; time
is the best of `--repeats` calls after one warm-up): w2vbert fp32 / bf16 (AMX or AVX512-BF16 only) / int8 (float32
activations) / int8bf16 (oneDNN int8 matmuls, the rest bf16; AMX or AVX512-BF16 only);
transformers fp32 / bf16; ONNX Runtime on our export (fp32, and int8 = `export_onnx(quantize="int8")`); OpenVINO
fp32 and bf16 (its inference precision, where the CPU has it) on transformers' model traced by
`openvino.convert_model` (our ONNX file fails there: OpenVINO 2026.4 does not convert its Scan), int8 with nncf's
weight compression if nncf is installed;
CTranslate2 (fp32 and int8 compute types on one converted model). An engine that is not installed or fails gives
one line with its error; the others go on. The peer packages are the benchmark extra `bench-peers`.
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
from encoder import rss_bytes, speech_features, worker_env  # noqa: E402

ISA = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
VOCAB = 32


def has_bf16() -> bool:
    from w2vbert.loading.devices import cpu_features

    features = cpu_features()
    return features["amx_bf16"] or features["avx512_bf16"]


def all_rows() -> list[tuple[str, str]]:
    """(engine, variant) in table order; bf16 rows only where the CPU does bf16 in hardware."""
    bf16 = has_bf16()
    rows = [("transformers", "fp32"), ("w2vbert", "fp32")]
    rows += [("w2vbert", "bf16")] if bf16 else []
    rows += [("w2vbert", "int8")] + ([("w2vbert", "int8bf16")] if bf16 else [])
    rows += [("transformers", "bf16")] if bf16 else []
    rows += [("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32")]
    rows += [("openvino", "bf16")] if bf16 else []
    rows += [("openvino", "int8"), ("ctranslate2", "fp32"), ("ctranslate2", "int8")]
    return rows


# ------------------------------------------------------------------------------------------------ preparation
def make_model(directory: Path, layers: int | None) -> None:
    """A random-weight (seed 0) Wav2Vec2BertForCTC with one adapter layer, saved with a CTC tokenizer."""
    import torch

    import w2vbert

    overrides = {"num_hidden_layers": layers} if layers else {}
    config = w2vbert.Wav2Vec2BertConfig(add_adapter=True, num_adapter_layers=1, vocab_size=VOCAB, pad_token_id=0,
                                        layerdrop=0.0, **overrides)
    torch.manual_seed(0)
    model = w2vbert.Wav2Vec2BertForCTC(config).eval()
    model.save_pretrained(directory)
    write_tokenizer(directory)


def write_tokenizer(directory: Path) -> None:
    """vocab.json + tokenizer_config.json of a 32-token character CTC vocabulary (CTranslate2's converter reads a
    tokenizer); kept if the directory has one already."""
    if (directory / "vocab.json").exists():
        return
    tokens = ["<pad>", "<s>", "</s>", "<unk>", "|"] + [chr(ord("a") + i) for i in range(VOCAB - 5)]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Wav2Vec2CTCTokenizer", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "word_delimiter_token": "|"}))


def prepare(model_dir: Path, work: Path, rows: list[tuple[str, str]]) -> dict[str, str]:
    """The converted files the chosen rows read (made once; a conversion that fails is recorded, not raised)."""
    from w2vbert import Wav2Vec2BertForCTC
    from w2vbert.export.onnx import export_onnx

    files, errors = {}, {}
    model = Wav2Vec2BertForCTC.from_pretrained(model_dir).eval()
    for variant, quantize in (("fp32", None), ("int8", "int8")):
        if ("onnxruntime", variant) not in rows:
            continue
        try:
            started = time.perf_counter()
            path = export_onnx(model, work / f"onnx-{variant}" / "model.onnx", quantize=quantize)
            files[f"onnx-{variant}"] = str(path)
            print(f"  exported ONNX {variant} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        except Exception as error:  # noqa: BLE001  (the row reports it)
            errors[f"onnx-{variant}"] = one_line(error)
    del model
    if not any(engine == "ctranslate2" for engine, _ in rows):
        return {"files": files, "errors": errors}
    try:
        import ctranslate2.converters

        started = time.perf_counter()
        out = work / "ct2"
        ctranslate2.converters.TransformersConverter(str(model_dir)).convert(str(out), force=True)
        files["ct2"] = str(out)
        print(f"  converted CTranslate2 ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    except Exception as error:  # noqa: BLE001
        errors["ct2"] = one_line(error)
    return {"files": files, "errors": errors}


def one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


# ------------------------------------------------------------------------------------------------ the worker
def worker(spec: dict) -> dict:
    import numpy as np
    import torch

    threads = spec["threads"] or torch.get_num_threads()
    torch.set_num_threads(threads)
    features = np.load(spec["features"])
    engine, variant, files = spec["engine"], spec["variant"], spec["files"]
    call = make_call(engine, variant, files, spec["model"], features, threads)
    logits = np.asarray(call(), dtype=np.float32)  # warm-up, and the output compared
    times = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    np.save(spec["output"], logits)
    peak = rss_bytes("VmHWM")  # not ru_maxrss: Linux carries the parent's peak into it across fork + exec
    return {"seconds": min(times), "times": times, "peak_memory": peak, "output_shape": list(logits.shape)}


def make_call(engine: str, variant: str, files: dict, model_dir: str, features, threads: int):
    """A no-argument function running one forward of `engine` `variant` on `features`, returning fp32 logits."""
    import numpy as np
    import torch

    mask = np.ones(features.shape[:2], dtype=np.int32)  # the ONNX graph takes the extractor's int32 mask
    if engine in ("w2vbert", "transformers"):
        if engine == "w2vbert":
            from w2vbert import Wav2Vec2BertForCTC
        else:
            from transformers import Wav2Vec2BertForCTC
        dtype = torch.bfloat16 if variant in ("bf16", "int8bf16") else torch.float32
        # Loaded in `dtype`, as users load it (a float32 load then .to(dtype) peaks with both copies); int8: its
        # matmuls int8, the rest in `dtype`, quantized as the file is read (w2vbert rows only).
        int8 = {"quantize": "int8"} if variant.startswith("int8") else {}
        model = Wav2Vec2BertForCTC.from_pretrained(model_dir, dtype=dtype, **int8).eval()
        inputs = torch.from_numpy(features).to(dtype)

        def call():
            with torch.inference_mode():
                return model(inputs).logits.float().numpy()

        return call
    if engine == "onnxruntime":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(need(files, f"onnx-{variant}"), options, providers=["CPUExecutionProvider"])
        inputs = {"input_features": features, "attention_mask": mask}
        return lambda: session.run(None, inputs)[0]
    if engine == "openvino":
        import openvino as ov

        if variant == "int8":
            try:
                import nncf
            except ImportError as error:
                raise RuntimeError("OpenVINO int8 needs nncf (not installed; our int8 ONNX's Scan does not convert)") \
                    from error
        # our ONNX file does not convert (OpenVINO 2026.4: "Conversion is failed for: Scan-18", the chunked
        # attention of the export); so OpenVINO traces transformers' model of the same weights
        from transformers import Wav2Vec2BertForCTC

        reference = Wav2Vec2BertForCTC.from_pretrained(model_dir).eval()
        with torch.no_grad():
            source = ov.convert_model(reference, example_input=torch.from_numpy(features))
        del reference
        if variant == "int8":
            source = nncf.compress_weights(source, mode=nncf.CompressWeightsMode.INT8_ASYM)
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "bf16" if variant == "bf16" else "f32"}
        compiled = ov.Core().compile_model(source, "CPU", config)
        request = compiled.create_infer_request()
        return lambda: request.infer([features])[compiled.output(0)].copy()
    if engine == "ctranslate2":
        import ctranslate2

        compute = {"fp32": "float32", "int8": "int8_float32"}[variant]
        model = ctranslate2.models.Wav2Vec2Bert(need(files, "ct2"), device="cpu", compute_type=compute,
                                                intra_threads=threads)
        storage = ctranslate2.StorageView.from_array(np.ascontiguousarray(features))
        return lambda: np.array(model.encode(storage, to_cpu=True))
    raise ValueError(f"unknown engine {engine!r}")


def need(files: dict, key: str) -> str:
    if key not in files["files"]:
        raise RuntimeError(f"no {key} file: {files['errors'].get(key, 'not made')}")
    return files["files"][key]


# ------------------------------------------------------------------------------------------------ the parent
def run_row(spec: dict) -> dict:
    command = [sys.executable, __file__, "--worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, env=worker_env())
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "error" in line]
        return {"error": f"exit {done.returncode}: " + (errors or lines or ["no output"])[-1].strip()[:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def versions() -> dict[str, str]:
    import importlib.metadata

    found = {}
    for name in ("torch", "transformers", "onnxruntime", "openvino", "ctranslate2"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def compare(a, b) -> tuple[float, float]:
    import numpy as np

    if a.shape != b.shape:
        raise ValueError(f"shape {list(a.shape)} vs {list(b.shape)}")
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.abs(a - b).max()), cosine


def run_shape(batch: int, seconds: float, rows, model_dir: Path, files: dict, work: Path, args) -> list[dict]:
    import numpy as np

    features_path = work / f"features-{batch}x{seconds:g}.npy"
    np.save(features_path, speech_features(batch, seconds).numpy().astype(np.float32))
    results = []
    for engine, variant in rows:
        output = work / f"out-{engine}-{variant}-{batch}x{seconds:g}.npy"
        spec = dict(engine=engine, variant=variant, files=files, model=str(model_dir), features=str(features_path),
                    output=str(output), repeats=args.repeats, threads=args.threads)
        started = time.perf_counter()
        result = {"shape": f"{batch}x{seconds:g}s", "engine": engine, "variant": variant, **run_row(spec)}
        print(f"  {result['shape']} {engine} {variant} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        result["output_file"] = str(output)
        results.append(result)
    by_name = {(r["engine"], r["variant"]): r for r in results}
    reference, ours = by_name.get(("transformers", "fp32"), {}), by_name.get(("w2vbert", "fp32"), {})
    ref_out = np.load(reference["output_file"]) if "seconds" in reference else None
    for r in results:
        if "seconds" not in r:
            continue
        if "seconds" in ours:
            r["vs_w2vbert_fp32"] = ours["seconds"] / r["seconds"]
        if "seconds" in reference:
            r["vs_transformers_fp32"] = reference["seconds"] / r["seconds"]
        if ref_out is not None:
            try:
                r["max_abs_diff"], r["cosine"] = compare(np.load(r["output_file"]), ref_out)
            except ValueError as error:
                r["agreement_error"] = str(error)
    for r in results:
        r.pop("output_file")
    return results


def header(threads: int) -> list[str]:
    from w2vbert.loading.devices import cpu_features, cpu_name

    flags = cpu_features()
    isa = " ".join(f"{name}{'+' if flags.get(name) else '-'}" for name in ISA)
    return [f"CPU: {cpu_name()}; ISA: {isa}",
            ", ".join(f"{k} {v}" for k, v in versions().items()) + f"; {threads} threads"]


def print_table(lines: list[str], results: list[dict], what: str) -> None:
    print("\n".join(lines))
    print(f"output compared: {what}; speed x = that row's speed over w2vbert fp32's (over transformers fp32's)")
    head = (f"{'shape':7s} {'engine':13s} {'var':5s} {'best s':>8s} {'peak GB':>8s} {'vs ours':>8s} {'vs HF':>7s} "
            f"{'max|diff|':>10s} {'cosine':>9s}")
    print(head)
    print("-" * len(head))
    for r in results:
        start = f"{r['shape']:7s} {r['engine']:13s} {r['variant']:5s}"
        if "error" in r:
            print(f"{start} failed: {r['error']}")
            continue
        agreement = (f"{r['max_abs_diff']:10.2e} {r['cosine']:9.6f}" if "cosine" in r
                     else f"  {r.get('agreement_error', 'no reference')}")
        ours, hf = (f"{r[k]:.2f}x" if k in r else "-" for k in ("vs_w2vbert_fp32", "vs_transformers_fp32"))
        print(f"{start} {r['seconds']:8.3f} {r['peak_memory'] / 1e9:8.2f} {ours:>8s} {hf:>7s} {agreement}")


def mode_of(variant: str) -> str:
    """fp32, bf16 or int8 (our int8bf16 is an int8 mode: int8 matmuls, the rest bf16)."""
    return "int8" if variant.startswith("int8") else variant


def mode_summary(results: list[dict]) -> list[dict]:
    """Per shape and mode: w2vbert's fastest row of that mode against the fastest peer row of the same mode
    (ratio = peer seconds / ours: above 1, w2vbert leads), and the fastest of any mode against each engine's
    fastest; cosines beside, so that a fast engine that disagrees stays visible."""
    summary = []
    for shape in dict.fromkeys(r["shape"] for r in results):
        done = [r for r in results if r["shape"] == shape and "seconds" in r]
        for mode in ("fp32", "bf16", "int8", "fastest"):
            rows = [r for r in done if mode == "fastest" or mode_of(r["variant"]) == mode]
            ours = min((r for r in rows if r["engine"] == "w2vbert"), key=lambda r: r["seconds"], default=None)
            peers = [r for r in rows if r["engine"] != "w2vbert"]
            if ours is None or not peers:
                continue
            for engine in dict.fromkeys(r["engine"] for r in peers):
                peer = min((r for r in peers if r["engine"] == engine), key=lambda r: r["seconds"])
                summary.append({"shape": shape, "mode": mode, "ours": ours["variant"], "ours_s": ours["seconds"],
                                "peer": f"{engine} {peer['variant']}", "peer_s": peer["seconds"],
                                "ratio": peer["seconds"] / ours["seconds"], "ours_cosine": ours.get("cosine"),
                                "peer_cosine": peer.get("cosine")})
    return summary


def batch_scaling(results: list[dict]) -> list[dict]:
    """Per engine and variant: B x 10 s over B times 1 x 10 s (below 1: batching pays)."""
    single = {(r["engine"], r["variant"]): r["seconds"] for r in results if r["shape"] == "1x10s" and "seconds" in r}
    rows = []
    for r in results:
        batch, seconds = r["shape"].rstrip("s").split("x")
        base = single.get((r["engine"], r["variant"]))
        if seconds == "10" and batch != "1" and base and "seconds" in r:
            rows.append({"engine": r["engine"], "variant": r["variant"], "batch": int(batch),
                         "ratio": r["seconds"] / (int(batch) * base)})
    return rows


def print_summaries(summary: list[dict], scaling: list[dict]) -> None:
    print("\nmode for mode: the fastest peer row of each mode over w2vbert's (above 1.00x: w2vbert leads)")
    for s in summary:
        cosines = "/".join("-" if c is None else f"{c:.5f}" for c in (s["ours_cosine"], s["peer_cosine"]))
        print(f"  {s['shape']:7s} {s['mode']:7s} w2vbert {s['ours']:8s} {s['ours_s']:7.3f} s vs {s['peer']:22s} "
              f"{s['peer_s']:7.3f} s: {s['ratio']:.2f}x  (cosine ours/peer {cosines})")
    if scaling:
        print("batch scaling, B x 10 s over B times 1 x 10 s (below 1.00: batching pays)")
        for s in scaling:
            print(f"  {s['engine']:13s} {s['variant']:9s} B={s['batch']}: {s['ratio']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers, 1 x 10 s, 2 repeats")
    parser.add_argument("--shapes", nargs="+", default=None, help="BATCHxSECONDS, default 1x10 4x10 8x10")
    parser.add_argument("--rows", help="comma-separated 'engine variant' rows (default: all this CPU has)")
    parser.add_argument("--model", type=Path, help="a Wav2Vec2BertForCTC directory (default: random, seed 0)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0")) or None)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls after the warm-up (default 3)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    args.repeats = args.repeats or (2 if args.quick else 3)
    shapes = args.shapes or (["1x10"] if args.quick else ["1x10", "4x10", "8x10"])
    rows = all_rows()
    if args.rows:
        wanted = [tuple(name.split()) for name in args.rows.split(",")]
        rows = [row for row in rows if row in wanted]
    import torch

    threads = args.threads or torch.get_num_threads()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        model_dir = args.model
        if model_dir is None:
            model_dir = work / "model"
            make_model(model_dir, 2 if args.quick else None)
            print(f"  saved the model ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        else:
            write_tokenizer(model_dir)
        files = prepare(model_dir, work, rows)
        for shape in shapes:
            batch, seconds = shape.lower().rstrip("s").split("x")
            results += run_shape(int(batch), float(seconds), rows, model_dir, files, work, args)
    what = "CTC logits (batch, frames/2, 32) of Wav2Vec2BertForCTC (1 adapter layer) vs transformers fp32"
    lines = header(threads)
    if args.json:
        report = {"header": lines, "output_compared": what, "threads": threads, "versions": versions(),
                  "conversion_errors": files["errors"], "rows": results, "mode_for_mode": mode_summary(results),
                  "batch_scaling": batch_scaling(results), "seconds": time.perf_counter() - started}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_table(lines, results, what)
    print_summaries(mode_summary(results), batch_scaling(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
