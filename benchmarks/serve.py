"""`w2vbert serve` under load, on loopback: dynamic batching against one request at a time, bounded memory with
many queued requests, and live transcription's delay.

    PYTHONPATH=src python benchmarks/serve.py [--model examples/demo-model] [--clients 32] [--requests 8]
                                              [--json out.json] [--no-live]

1. Starts `python -m w2vbert serve -m MODEL --port 0 --max-queue 256` (its defaults otherwise) and waits for it.
2. Clips: 32 recordings of 5-15 s (lengths drawn with a fixed seed), each the committed espeak-ng clips in
   examples/audio and tests/data joined with short pauses, as WAV bytes.
3. One at a time: every request of the load below, sent sequentially by one client: the total time.
4. Load: `--clients` threads, each sending `--requests` transcription requests (the clips in turn) as fast as
   its answers come: failed requests, latency p50/p95, total time; the throughput ratio against (3).
5. Memory: 100 requests sent at once (all queued within the limit); the server's peak RSS while they are served,
   against its RSS before.
6. Live (skipped with --no-live): a 60 s recording streamed over the WebSocket at real time in 100 ms messages:
   the final transcript against the file's, partials per second of audio, and the delay from a word's end in the
   audio to the first partial with text for it (as many words), and to the first whose words up to it are the
   file's (p50/p95).
Prints a table and writes the figures as JSON with `--json`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import httpx
import numpy as np

from w2vbert import pipeline
from w2vbert.audio.decode import wav_bytes

ROOT = Path(__file__).resolve().parent.parent
CLIPS = [*sorted((ROOT / "examples" / "audio").glob("*.wav")),
         *(ROOT / "tests" / "data" / n for n in ("hello.wav", "quick.wav", "numbers.wav"))]


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as f:
        return np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768


def joined(seconds: float, rng: np.random.Generator) -> np.ndarray:
    clips = [read_wav(p) for p in CLIPS]
    pieces, total = [], 0
    while total < seconds * 16000:
        clip = clips[int(rng.integers(len(clips)))]
        pause = np.zeros(int(rng.uniform(0.3, 0.8) * 16000), np.float32)
        pieces += [clip, pause]
        total += len(clip) + len(pause)
    return np.concatenate(pieces)[: int(seconds * 16000)]


def machine() -> dict:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")),
                 platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "amx": "amx_bf16" in flags, "avx512": "avx512f" in flags,
            "date": time.strftime("%Y-%m-%d")}


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def transcribe(client: httpx.Client, url: str, data: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    response = client.post(url + "/v1/audio/transcriptions", files={"file": ("clip.wav", data)},
                           data={"response_format": "text"}, timeout=300)
    return response.status_code, time.perf_counter() - started


def load(url: str, clips: list[bytes], clients: int, per_client: int) -> dict:
    def one_client(c: int) -> list[tuple[int, float]]:
        with httpx.Client() as client:
            return [transcribe(client, url, clips[(c * per_client + r) % len(clips)]) for r in range(per_client)]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(one_client, range(clients)) for r in rs]
    total = time.perf_counter() - started
    latencies = np.array([seconds for _, seconds in results])
    return {"requests": len(results), "failed": sum(status != 200 for status, _ in results), "seconds": total,
            "p50_s": float(np.percentile(latencies, 50)), "p95_s": float(np.percentile(latencies, 95))}


def sequential(url: str, clips: list[bytes], count: int) -> dict:
    with httpx.Client() as client:
        started = time.perf_counter()
        results = [transcribe(client, url, clips[i % len(clips)]) for i in range(count)]
    return {"requests": count, "failed": sum(s != 200 for s, _ in results), "seconds": time.perf_counter() - started}


def memory(url: str, pid: int, clips: list[bytes], count: int = 100) -> dict:
    before, peak, stop = rss(pid), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        statuses = list(pool.map(lambda i: transcribe(httpx.Client(), url, clips[i % len(clips)])[0], range(count)))
    stop.set()
    sampler.join()
    return {"queued": count, "failed": sum(s != 200 for s in statuses), "rss_before": before, "rss_peak": peak[0]}


def live(url: str, audio: np.ndarray, expected: dict) -> dict:
    from websockets.sync.client import connect

    messages = []
    with connect(url.replace("http", "ws") + "/v1/audio/stream") as ws:
        def receive() -> None:
            for raw in ws:
                messages.append((time.perf_counter(), json.loads(raw)))

        reader = threading.Thread(target=receive)
        reader.start()
        started, step = time.perf_counter(), 1600  # 100 ms messages, sent at real time
        for start in range(0, len(audio), step):
            time.sleep(max(0.0, started + start / 16000 - time.perf_counter()))
            ws.send((np.clip(audio[start : start + step], -1, 1) * 32767).astype("<i2").tobytes())
        ws.send(json.dumps({"type": "end"}))
        reader.join(120)
    partials = [(at, m) for at, m in messages if m["type"] == "partial"]
    words = expected["chunks"]
    shown, right = [], []  # per word of the file's transcript: delays from its end in the audio
    for i, word in enumerate(words):
        wanted = [w["text"] for w in words[: i + 1]]
        end = started + word["timestamp"][1]
        # text for it: the first partial with as many words; its text: the first whose words up to it are the file's
        arrival = next((at for at, m in partials if len(m["text"].split()) > i), None)
        exact = next((at for at, m in partials if m["text"].split()[: i + 1] == wanted), None)
        shown += [] if arrival is None else [arrival - end]
        right += [] if exact is None else [exact - end]
    done = messages[-1][1]
    gaps = np.diff([0.0] + [m["audio_seconds"] for _, m in partials])
    last = partials[-1][1]["text"].split() if partials else []
    return {"seconds": len(audio) / 16000, "same_as_file": done.get("text") == expected["text"],
            "partials": len(partials), "max_audio_between_partials_s": float(gaps.max()), "words": len(words),
            "text_delay_p50_s": float(np.percentile(shown, 50)), "text_delay_p95_s": float(np.percentile(shown, 95)),
            "exact_delay_p50_s": float(np.percentile(right, 50)), "exact_delay_p95_s": float(np.percentile(right, 95)),
            "last_partial_words_as_file": sum(a == b["text"] for a, b in zip(last, words, strict=False)),
            "last_partial_words": len(last)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "examples" / "demo-model")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=8, help="per client")
    parser.add_argument("--no-live", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    clips = [wav_bytes(joined(float(rng.uniform(5, 15)), rng)) for _ in range(32)]
    command = [sys.executable, "-m", "w2vbert", "serve", "-m", str(args.model), "--port", "0", "--max-queue", "256"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = server.stdout.readline()
        if "http://" not in line:
            raise RuntimeError(f"the server did not start: {line}{server.stdout.read()}")
        url = line.split("on ", 1)[1].strip()
        threading.Thread(target=server.stdout.read, daemon=True).start()  # keep its pipe drained
        with httpx.Client() as client:
            transcribe(client, url, clips[0])  # warm-up
        result = {"machine": machine(), "model": str(args.model), "command": " ".join(command[1:])}
        count = args.clients * args.requests
        result["one_at_a_time"] = sequential(url, clips, count)
        print(f"one at a time: {count} requests in {result['one_at_a_time']['seconds']:.1f} s", flush=True)
        result["load"] = load(url, clips, args.clients, args.requests)
        ratio = result["one_at_a_time"]["seconds"] / result["load"]["seconds"]
        result["throughput_ratio"] = ratio
        print(f"{args.clients} clients x {args.requests}: {result['load']['failed']} failed, "
              f"{result['load']['seconds']:.1f} s, p50 {result['load']['p50_s']:.2f} s, "
              f"p95 {result['load']['p95_s']:.2f} s; throughput {ratio:.2f}x one at a time", flush=True)
        result["memory"] = memory(url, server.pid, clips)
        m = result["memory"]
        print(f"100 requests at once: {m['failed']} failed, RSS {m['rss_before'] / 2**20:.0f} MiB before, "
              f"peak {m['rss_peak'] / 2**20:.0f} MiB", flush=True)
        if not args.no_live:
            audio = joined(60.0, np.random.default_rng(1))
            audio = (np.clip(audio, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32768  # as PCM16 sends it
            expected = pipeline("automatic-speech-recognition", str(args.model))(
                {"array": audio, "sampling_rate": 16000}, return_timestamps="word")
            result["live"] = live(url, audio, expected)
            lv = result["live"]
            print(f"live 60 s at real time: final transcript the file's: {lv['same_as_file']}; {lv['partials']} "
                  f"partials (at most {lv['max_audio_between_partials_s']:.2f} s of audio apart); from a word's end "
                  f"to partial text for it: p50 {lv['text_delay_p50_s']:.2f} s, p95 {lv['text_delay_p95_s']:.2f} s; "
                  f"to partials spelling the file's words up to it: p50 {lv['exact_delay_p50_s']:.2f} s, p95 "
                  f"{lv['exact_delay_p95_s']:.2f} s", flush=True)
    finally:
        server.terminate()
        server.wait(60)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
