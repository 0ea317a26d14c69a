"""Streaming with a chunked model: live latency, accuracy per chunk size, cost against stream length, real-time factor.

    PYTHONPATH=src python benchmarks/streaming.py [--model examples/streaming-demo-model] [--data build/demo-data]
        [--recordings 10] [--long-minutes 10] [--json out.json] [--quick] [--skip latency,accuracy,cost,rtf]

1. Latency: the held-out joined recordings (DATA/heldout_long.tsv, else the committed clips joined) streamed to
   an in-process `w2vbert serve` over the live WebSocket at real time in 100 ms PCM messages. For each word of the
   "done" text, its end in the audio (word times of the file's transcript through the pipeline, the same model with
   the chunk mask) to the "final" message that settles it: median and p95, against the target chunk + 0.3 s.
2. Accuracy: held-out WER of the chunked model at 320, 640 and 1280 ms chunks against the full-context demo model
   on the same clips (scripts/train_streaming_demo.py's `heldout_wer`); target <= 1.15x at 640 ms. Then the joined
   held-out recordings (DATA/heldout_long.tsv): streamed as `transcribe --streaming` does, against the full-context
   model through the pipeline's 30 s windows.
3. Cost: the cached encoder's compute per second of audio over 1 minute and over `--long-minutes` of audio (random
   feature steps, chunk by chunk): the ratio, target within 10%.
4. Real-time factor (compute seconds per audio second, streaming chunk by chunk with the cache) of the demo model
   and of the full 600M config (random weights, 640 ms chunks, 4 left chunks), over 60 s of audio.
`--quick` shortens each part (3 recordings, 2 minutes against 0.5, 20 s for the RTF) to check the script runs.
Prints a table; writes the figures as JSON with `--json`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import torch

from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForCTC, load_audio, pipeline
from w2vbert.model.streaming import StreamingEncoder

ROOT = Path(__file__).resolve().parent.parent
FULL_CONTEXT = ROOT / "examples" / "demo-model"
CLIPS = [*sorted((ROOT / "examples" / "audio").glob("*.wav")),
         *(ROOT / "tests" / "data" / n for n in ("hello.wav", "quick.wav", "numbers.wav"))]


# -------------------------------------------------------------------------------------------------- latency
def recordings(data: Path, count: int) -> list[np.ndarray]:
    """The held-out joined recordings (their first `count`), or the committed clips joined into 20 s ones."""
    manifest = data / "heldout_long.tsv"
    if manifest.is_file():
        with manifest.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        return [load_audio(manifest.parent / row["audio"]) for row in rows[:count]]
    clips = [load_audio(p) for p in CLIPS]
    pause = np.zeros(8000, np.float32)
    joined = np.concatenate([piece for clip in clips for piece in (clip, pause)])
    return [joined[: 20 * 16000]] * count


@contextlib.contextmanager
def serving(model: Path):
    """An in-process server of `model` on a free loopback port; yields its ws:// URL of the live stream."""
    import uvicorn

    from w2vbert.serving.app import ServeSettings, create_app, uvicorn_config

    app = create_app(ServeSettings(model=str(model), max_wait_ms=5, max_audio_seconds=3600))
    server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=0))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/v1/audio/stream"
    finally:
        server.should_exit = True
        thread.join(30)


def stream_once(url: str, audio: np.ndarray) -> tuple[float, list[tuple[float, dict]]]:
    """Stream at real time in 100 ms messages; (start time, [(arrival, message)])."""
    from websockets.sync.client import connect

    messages: list[tuple[float, dict]] = []
    with connect(url) as ws:
        reader = threading.Thread(target=lambda: messages.extend((time.perf_counter(), json.loads(m)) for m in ws))
        reader.start()
        started, step = time.perf_counter(), 1600
        for start in range(0, len(audio), step):
            time.sleep(max(0.0, started + start / 16000 - time.perf_counter()))
            ws.send((np.clip(audio[start : start + step], -1, 1) * 32767).astype("<i2").tobytes())
        ws.send(json.dumps({"type": "end"}))
        reader.join(120)
    return started, messages


def latency(model: Path, audios: list[np.ndarray]) -> dict:
    chunk_s = Wav2Vec2BertConfig.from_pretrained(model).streaming_chunk_size * 0.02
    asr = pipeline("automatic-speech-recognition", str(model))
    delays, same = [], 0
    with serving(model) as url:
        for audio in audios:
            words = asr(audio, return_timestamps="word")["chunks"]  # word ends in the audio
            started, messages = stream_once(url, audio)
            finals = [(at, m["committed"].split()) for at, m in messages if m["type"] == "final"]
            done = messages[-1][1]
            same += done.get("text", "").split() == [w["text"] for w in words]
            for i, word in enumerate(words):
                at = next((at for at, settled in finals if len(settled) > i), None)
                if at is not None and at - started < len(audio) / 16000:  # settled while streaming, not at the end
                    delays.append(at - (started + word["timestamp"][1]))
    return {"chunk_s": chunk_s, "recordings": len(audios), "words_settled_live": len(delays),
            "done_text_as_file": same, "final_delay_p50_s": float(np.percentile(delays, 50)),
            "final_delay_p95_s": float(np.percentile(delays, 95)), "target_s": chunk_s + 0.3}


# ------------------------------------------------------------------------------------------------- accuracy
def accuracy(model: Path, data: Path) -> dict:
    spec = importlib.util.spec_from_file_location("train_streaming_demo", ROOT / "scripts" / "train_streaming_demo.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from w2vbert.training.datasets import load_examples
    from w2vbert.training.examples import BadExamples, TextNormalizer

    heldout = load_examples(data / "heldout.tsv", "ctc", BadExamples("skip"), TextNormalizer())
    report = script.heldout_wer(model, FULL_CONTEXT, heldout)
    if (data / "heldout_long.tsv").is_file():  # joined recordings: the live path against 30 s windows
        from w2vbert.inference.streaming import transcribe_streaming
        from w2vbert.training.scorers import error_rates

        joined = load_examples(data / "heldout_long.tsv", "ctc", BadExamples("skip"), TextNormalizer())
        references = [e.target for e in joined]
        full = pipeline("automatic-speech-recognition", str(FULL_CONTEXT), chunk_length_s=30)
        streaming = pipeline("automatic-speech-recognition", str(model))
        full_wer = error_rates(references, [full(e.audio)["text"] for e in joined])["wer"]
        live_wer = error_rates(references, [transcribe_streaming(streaming, e.audio) for e in joined])["wer"]
        report |= {"long_recordings": len(joined), "long_full_context_wer": full_wer, "long_streaming_wer": live_wer}
    return report


# ----------------------------------------------------------------------------------------------- cost, RTF
def streamed_seconds(model: Wav2Vec2BertForCTC, seconds: float, block_frames: int = 5) -> float:
    """Compute seconds to stream `seconds` of random feature steps in blocks of 100 ms."""
    stream = StreamingEncoder(model)
    steps = torch.randn(int(seconds * 50), 160, generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    for start in range(0, steps.shape[0], block_frames):
        stream.feed(steps[start : start + block_frames])
    stream.flush()
    return time.perf_counter() - started


def minute_seconds(model: Wav2Vec2BertForCTC, minutes: int, block_frames: int = 5) -> list[float]:
    """Compute seconds of each minute of one stream of `minutes` minutes of random feature steps, fed in blocks of
    100 ms."""
    stream = StreamingEncoder(model)
    steps = torch.randn(minutes * 60 * 50, 160, generator=torch.Generator().manual_seed(0))
    spent = []
    for minute in range(minutes):
        started = time.perf_counter()
        for start in range(minute * 3000, (minute + 1) * 3000, block_frames):
            stream.feed(steps[start : start + block_frames])
        spent.append(time.perf_counter() - started)
    return spent


def cost(model: Path, short_min: float, long_min: float, repeats: int = 3) -> dict:
    """Compute per audio second in the first `short_min` minutes of a stream against the last minute of a
    `long_min`-minute stream, each the best of `repeats` streams (one stream's minutes differ by a few percent
    from timer noise and the CPU's clock alone)."""
    ctc = Wav2Vec2BertForCTC.from_pretrained(model).eval()
    streamed_seconds(ctc, 5)  # warm-up
    runs = [minute_seconds(ctc, int(long_min)) for _ in range(repeats)]
    best = [min(run[m] for run in runs) for m in range(int(long_min))]
    short = sum(best[: int(short_min)]) / (short_min * 60)
    long = best[-1] / 60
    return {"short_min": short_min, "long_min": long_min, "repeats": repeats, "best_seconds_per_minute": best,
            "compute_per_audio_s_short": short, "compute_per_audio_s_long": long, "long_over_short": long / short}


def rtf(model: Path, seconds: float) -> dict:
    demo = Wav2Vec2BertForCTC.from_pretrained(model).eval()
    streamed_seconds(demo, 5)
    out = {"seconds": seconds, "demo_rtf": streamed_seconds(demo, seconds) / seconds}
    torch.manual_seed(0)
    full = Wav2Vec2BertForCTC(Wav2Vec2BertConfig(vocab_size=32, streaming_chunk_size=32, streaming_left_chunks=4))
    full.eval()
    streamed_seconds(full, 2)
    out["w2v_bert_600m_rtf"] = streamed_seconds(full, seconds) / seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "examples" / "streaming-demo-model")
    parser.add_argument("--data", type=Path, default=ROOT / "build" / "demo-data")
    parser.add_argument("--recordings", type=int, default=10)
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--rtf-seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="short runs, to check the script works")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: latency,accuracy,cost,rtf")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if args.quick:
        args.recordings, args.long_minutes, args.rtf_seconds = 3, 2.0, 20.0
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
    results: dict = {}
    if "latency" not in skip:
        results["latency"] = lv = latency(args.model, recordings(args.data, args.recordings))
        print(f"latency   {lv['recordings']} recordings at real time, {lv['words_settled_live']} words settled live: "
              f"final after the word's end p50 {lv['final_delay_p50_s']:.2f} s, p95 {lv['final_delay_p95_s']:.2f} s "
              f"(target <= {lv['target_s']:.2f} s); done text as the file's in {lv['done_text_as_file']}", flush=True)
    if "accuracy" not in skip:
        if (args.data / "heldout.tsv").is_file():
            results["accuracy"] = acc = accuracy(args.model, args.data)
            print(f"accuracy  full-context WER {acc['full_context_wer']:.4f}; chunked "
                  + ", ".join(f"{ms} ms {acc[f'chunk_{ms}ms_wer']:.4f} ({acc[f'chunk_{ms}ms_wer_ratio']:.2f}x)"
                              for ms in (320, 640, 1280)) + " (target <= 1.15x at 640 ms)", flush=True)
            if "long_recordings" in acc:
                print(f"accuracy  {acc['long_recordings']} joined recordings: full context (30 s windows) WER "
                      f"{acc['long_full_context_wer']:.4f}, streamed (transcribe --streaming) "
                      f"{acc['long_streaming_wer']:.4f}", flush=True)
        else:
            print(f"accuracy  skipped: no {args.data / 'heldout.tsv'} (scripts/make_demo_data.py makes it)")
    if "cost" not in skip:
        results["cost"] = c = cost(args.model, 1, max(2, int(args.long_minutes)))
        print(f"cost      compute per audio second (best of {c['repeats']} streams): first minute "
              f"{c['compute_per_audio_s_short']:.4f} s, minute {c['long_min']:g} "
              f"{c['compute_per_audio_s_long']:.4f} s: "
              f"{c['long_over_short']:.3f}x (target within 10%)", flush=True)
    if "rtf" not in skip:
        results["rtf"] = r = rtf(args.model, args.rtf_seconds)
        print(f"rtf       streaming {r['seconds']:g} s: demo model {r['demo_rtf']:.4f}, W2v-BERT 600M (random) "
              f"{r['w2v_bert_600m_rtf']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
