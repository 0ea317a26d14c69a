"""`w2vbert serve` on replicas: one replica against two, and a replica killed under load.

    PYTHONPATH=src python benchmarks/serve_replicas.py [--engine ray|processes] [--model examples/demo-model]
                                                       [--requests 48] [--clip-seconds 6] [--pin] [--quick]
                                                       [--json out.json]

Replicas (`--engine`): `ray`, Ray Serve's (the cluster of $RAY_ADDRESS, or a local instance started here with every
CPU of the machine), each reserving one CPU and running torch on one thread (`ReplicaOptions(replica_cpus=1,
threads=1)`), behind Ray Serve's proxy; or `processes`, `w2vbert serve --reuse-port --threads 1` processes sharing
one port, the system spreading connections over them. Two replicas on a 2-core machine use both cores where one
uses one. With `--pin`, each replica keeps a core of its own (`w2vbert serve --pin-cores`, `ReplicaOptions(
pin_cores=True)`): a replica is then one core, model thread, decoding and HTTP together, where unpinned its
decoding and features spill onto the other core and two replicas' threads meet on one core.

1. Clips: 12 recordings of `--clip-seconds`, each the committed espeak-ng clips in examples/audio and tests/data
   joined with short pauses, as WAV bytes; their transcripts from `pipeline` in this process (the reference).
2. For 1 and then 2 replicas: the replicas started and warmed up (each one's first batches), then `--requests`
   transcription requests sent by 1, 4 and 16 client threads, each sending its next request when its answer comes:
   latency p50/p95, requests per second, the cores the machine kept busy (and the clients' share of them), and
   whether every transcript is the reference's. The ratio of 2 replicas'
   throughput to 1's is printed per client count.
3. Kill: 2 replicas under 16 clients sending 2 x `--requests` requests; once a third are answered, one replica is
   killed (Ray: its actor, `ray.kill`, and Ray Serve starts another; processes: SIGKILL, not replaced). A client
   retries a request once when it fails (a 5xx answer or a broken connection): the retried and lost requests are
   counted, and the transcripts checked.
Prints a table; `--json` writes the figures. `--quick`: 8 requests, clips of 3 s, clients 1 and 4 (a check that
it runs, not a measurement). About 3-5 minutes on a 2-core CPU with the defaults.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import wave
from pathlib import Path

import numpy as np

from w2vbert import pipeline
from w2vbert.audio.decode import wav_bytes

ROOT = Path(__file__).resolve().parent.parent
RETRY_DELAY_S = 0.5  # openai-python's INITIAL_RETRY_DELAY
CLIPS = [*sorted((ROOT / "examples" / "audio").glob("*.wav")),
         *(ROOT / "tests" / "data" / n for n in ("hello.wav", "quick.wav", "numbers.wav"))]
APP = "w2vbert-replicas"  # the application's name in Ray Serve


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as f:
        return np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768


def recordings(count: int, seconds: float, seed: int = 0) -> list[np.ndarray]:
    """`count` recordings of `seconds` each: the clips in a random order with 0.3-0.8 s pauses between them."""
    rng, clips = np.random.default_rng(seed), [read_wav(p) for p in CLIPS]
    out = []
    for _ in range(count):
        pieces, total = [], 0
        while total < seconds * 16000:
            clip, pause = clips[int(rng.integers(len(clips)))], np.zeros(int(rng.uniform(0.3, 0.8) * 16000), "f4")
            pieces += [clip, pause]
            total += len(clip) + len(pause)
        out.append(np.concatenate(pieces)[: int(seconds * 16000)])
    return out


BOUNDARY = "w2vbert-benchmark-boundary"


def form(wav: bytes) -> bytes:
    """The multipart body of a transcription request for `wav` (response_format text), encoded once per clip so
    that the clients spend the machine's cores on sending, not on encoding 640 KB per request."""
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"response_format\"\r\n\r\ntext\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n")
    return head.encode() + wav + f"\r\n--{BOUNDARY}--\r\n".encode()


def transcribe(url: str, body: bytes, retry: bool = False) -> tuple[str | None, float, int]:
    """(the transcript or None, seconds, tries) of one request of `body` (`form`) on a new connection (so the
    system spreads requests, not clients, over processes sharing a port); with `retry`, a 5xx or a broken
    connection is tried once more, half a second later (the official openai client's first retry delay: a
    retry sent at once can reach the killed process's socket, which takes connections until the system has torn
    down that process's memory). The standard library's client, not httpx: `httpx.post` builds a client and its
    TLS context per call, 20-30 ms of CPU that the load generator took from the replicas' two cores."""
    address = urllib.parse.urlsplit(url)
    started = time.perf_counter()
    for attempt in (1, 2) if retry else (1,):
        if attempt > 1:
            time.sleep(RETRY_DELAY_S)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        try:
            connection.request("POST", "/v1/audio/transcriptions", body=body,
                               headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
            answer = connection.getresponse()
            text = answer.read().decode()
            if answer.status == 200:
                return text.strip(), time.perf_counter() - started, attempt
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
    return None, time.perf_counter() - started, attempt


def load(url: str, clips: list[bytes], expected: list[str], requests: int, clients: int,
         on_answer: object = None, retry: bool = False) -> dict:
    """`requests` requests (the clips in turn) from `clients` threads: latency, throughput, failures."""
    jobs = list(range(requests))
    lock, results = threading.Lock(), []

    def client() -> None:
        while True:
            with lock:
                if not jobs:
                    return
                job = jobs.pop(0)
            text, seconds, tries = transcribe(url, clips[job % len(clips)], retry)
            with lock:
                results.append((job, text, seconds, tries))
                if on_answer is not None:
                    on_answer(len(results))

    busy, own, started = machine_busy_seconds(), time.process_time(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - started
    busy, own = machine_busy_seconds() - busy, time.process_time() - own
    latencies = np.array([r[2] for r in results])
    return {
        "clients": clients, "requests": requests, "seconds": round(wall, 2),
        "requests_per_s": round(requests / wall, 3),
        "p50_s": round(float(np.percentile(latencies, 50)), 3), "p95_s": round(float(np.percentile(latencies, 95)), 3),
        "lost": sum(r[1] is None for r in results), "retried": sum(r[3] > 1 for r in results),
        "wrong": sum(r[1] is not None and r[1] != expected[r[0] % len(expected)] for r in results),
        "cores_busy": round(busy / wall, 2), "client_cores": round(own / wall, 2),
    }


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle or waiting for I/O) since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class RayReplicas:
    """Replicas as Ray Serve deploys them, behind its proxy; a killed replica is replaced by Ray Serve."""

    def __init__(self, model: str, pin: bool = False) -> None:
        import ray
        from ray import serve

        from w2vbert.serving.ray_app import ReplicaOptions, deploy
        from w2vbert.serving.served import ServeSettings

        self.ray, self.serve, self.options, self.deploy, self.pin = ray, serve, ReplicaOptions, deploy, pin
        self.settings = ServeSettings(model=model)
        address = os.environ.get("RAY_ADDRESS") or "local"
        ray.init(address=address, log_to_driver=False, include_dashboard=False,
                 **({"num_cpus": os.cpu_count()} if address == "local" else {}))
        self.url = f"http://127.0.0.1:{free_port()}"

    def start(self, count: int) -> None:
        options = self.options(min_replicas=count, max_replicas=count, replica_cpus=1, threads=1, pin_cores=self.pin)
        self.deploy(self.settings, options, "127.0.0.1", int(self.url.rsplit(":", 1)[1]), name=APP)

    def kill_one(self) -> None:
        names = [a["name"] for a in self.ray.util.list_named_actors(all_namespaces=True)
                 if a["namespace"] == "serve" and APP in a["name"] and "W2vBertReplica" in a["name"]]
        self.ray.kill(self.ray.get_actor(names[0], namespace="serve"))

    def stop(self) -> None:
        self.serve.delete(APP)


class ProcessReplicas:
    """`w2vbert serve --reuse-port --threads 1` processes on one port, the system spreading connections; a killed
    process is not replaced (its connections break, the others serve on)."""

    def __init__(self, model: str, pin: bool = False) -> None:
        self.model, self.port, self.processes, self.pin = model, free_port(), [], pin
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, count: int) -> None:
        command = [sys.executable, "-m", "w2vbert", "serve", "-m", self.model, "--port", str(self.port),
                   "--reuse-port", "--threads", "1", "--dtype", "float32"]  # float32 as the reference and Ray
        command += ["--pin-cores"] if self.pin else []
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                           env=env) for _ in range(count)]
        for process in self.processes:
            if "serving" not in process.stdout.readline():
                raise RuntimeError(f"a server did not start: {process.stdout.read()[-2000:]}")

    def kill_one(self) -> None:
        self.processes[0].kill()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(60)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "examples" / "demo-model"))
    parser.add_argument("--engine", choices=("ray", "processes"), default="ray",
                        help="ray: Ray Serve replicas behind its proxy; processes: w2vbert serve --reuse-port "
                             "processes on one port (default: ray)")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--clip-seconds", type=float, default=6.0)
    parser.add_argument("--pin", action="store_true", help="each replica on a core of its own (--pin-cores)")
    parser.add_argument("--quick", action="store_true", help="a check that it runs: 8 requests, 3 s, 1 and 4 clients")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    requests, clip_s, client_counts = ((8, 3.0, (1, 4)) if args.quick else (args.requests, args.clip_seconds,
                                                                            (1, 4, 16)))
    import torch

    torch.set_num_threads(1)
    audio = recordings(12, clip_s)
    clips = [wav_bytes(a) for a in audio]
    asr = pipeline("automatic-speech-recognition", args.model)
    expected = [asr(clip)["text"] for clip in clips]  # the bytes the server gets (16-bit WAV), not the floats
    clips = [form(clip) for clip in clips]
    replicas = (RayReplicas if args.engine == "ray" else ProcessReplicas)(args.model, args.pin)
    url = replicas.url
    figures: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                     "engine": args.engine, "pinned": args.pin, "clip_seconds": clip_s, "runs": {}}
    print(f"{'replicas':>8} {'clients':>7} {'req/s':>7} {'p50 s':>7} {'p95 s':>7} {'lost':>5} {'wrong':>5} "
          f"{'cores busy (clients)':>21}")
    for count in (1, 2):
        replicas.start(count)
        load(url, clips, expected, 4 * count, 2 * count)  # warm-up: each replica's first batches
        for clients in client_counts:
            run = load(url, clips, expected, requests, clients)
            figures["runs"][f"{count}x{clients}"] = run
            print(f"{count:>8} {clients:>7} {run['requests_per_s']:>7.2f} {run['p50_s']:>7.2f} "
                  f"{run['p95_s']:>7.2f} {run['lost']:>5} {run['wrong']:>5} "
                  f"{run['cores_busy']:>13.2f} ({run['client_cores']:.2f})", flush=True)
        if count == 1:
            replicas.stop()
    for clients in client_counts:
        ratio = figures["runs"][f"2x{clients}"]["requests_per_s"] / figures["runs"][f"1x{clients}"]["requests_per_s"]
        figures[f"ratio_{clients}_clients"] = round(ratio, 2)
        print(f"2 replicas / 1 at {clients} clients: {ratio:.2f}x the throughput")

    answered = [0]

    def kill() -> None:
        replicas.kill_one()
        figures["kill_landed_after"] = answered[0]  # requests answered when the kill was done

    killer = threading.Thread(target=kill)

    def kill_one(count: int) -> None:  # called as each answer comes: the kill once a third are answered
        answered[0] = count
        if count >= 2 * requests // 3 and killer.ident is None:
            killer.start()

    run = load(url, clips, expected, 2 * requests, 16, on_answer=kill_one, retry=True)
    killer.join()
    figures["kill"] = run
    print(f"one of 2 replicas killed under 16 clients, {2 * requests} requests (the kill done after "
          f"{figures.get('kill_landed_after', 'all')} answers): {run['retried']} retried once, {run['lost']} lost, "
          f"{run['wrong']} wrong transcripts")
    replicas.stop()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
