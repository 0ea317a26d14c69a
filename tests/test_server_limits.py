"""`w2vbert serve` under clients that misbehave or overload it (issue 32's probe): slow and abandoned uploads, long
uploads ahead of a short one, huge answers from small uploads, bad addresses, refused WebSockets, shutdown with
work queued, and apps that hard-code another model's name. Servers run as in test_server.py: uvicorn on loopback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from test_server import (
    DEMO,
    EXAMPLES,
    ServeSettings,
    assert_openai_error,
    create_app,
    openai,
    post,
    running,
    wait_for_queued,
    websockets_sync,
)
from w2vbert import pipeline
from w2vbert.audio.decode import load_audio, wav_bytes
from w2vbert.cli.parser import main as cli_main
from w2vbert.serving.batcher import Batcher, prepare
from w2vbert.serving.served import Served


def raw_upload(url: str, body: bytes, declared: int | None = None) -> socket.socket:
    """A socket that sent a transcription request's headers and `body` (all of it, or the start of `declared`
    bytes), left open."""
    host, port = url.removeprefix("http://").split(":")
    form = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + body
            + b"\r\n--x--\r\n")
    sent = form if declared is None else form[: len(form) // 2]
    head = (f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; "
            f"boundary=x\r\nContent-Length: {declared or len(form)}\r\n\r\n").encode()
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.sendall(head + sent)
    return connection


def health(url: str) -> dict:
    return httpx.get(url + "/health", timeout=10).json()


# -------------------------------------------------------------------------------------- slow, abandoned
def test_clients_sending_their_body_slowly_hold_no_place_and_get_408():
    # Before: the place was taken before the body was read, with no timeout: 3 silent sockets held max_queue=2.
    with running(create_app(ServeSettings(model=str(DEMO), max_queue=2, body_timeout_s=1.0))) as url:
        silent = [raw_upload(url, b"RIFF" * 100, declared=100_000) for _ in range(3)]
        assert post(url, "/v1/audio/transcriptions", EXAMPLES[0].read_bytes()).status_code == 200
        for connection in silent:
            answer = b"".join(iter(functools.partial(connection.recv, 65536), b""))  # until the server closes
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"1 s" in answer and b"--body-timeout" in answer
            connection.close()
        assert health(url)["requests_in_flight"] == 0


def test_clients_that_leave_have_their_queued_work_dropped_and_their_places_freed():
    # A minute's wait for company keeps the windows queued; before, they stayed queued and in flight all along.
    with running(create_app(ServeSettings(model=str(DEMO), max_wait_ms=60_000))) as url:
        left = [raw_upload(url, EXAMPLES[0].read_bytes()) for _ in range(5)]
        deadline = time.time() + 30
        while health(url)["queued_windows"] < 5:
            assert time.time() < deadline, "the uploads did not reach the batcher"
            time.sleep(0.02)
        for connection in left:
            connection.close()
        deadline = time.time() + 10
        while (now := health(url))["requests_in_flight"] or now["queued_windows"]:
            assert time.time() < deadline, f"the abandoned requests are still there: {now}"
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- fairness
def test_a_short_request_queued_behind_long_uploads_finishes_before_them():
    # Before: windows ran in arrival order, so a 1.5 s clip waited for every window of the long uploads ahead.
    pipe = pipeline("automatic-speech-recognition", str(DEMO), chunk_length_s=5)
    long_audio = np.tile(load_audio(str(EXAMPLES[0])), 10)[: 18 * 16000]  # 18 s: four windows of 5 s
    first_batch, go = threading.Event(), threading.Event()
    run_windows = pipe.run_windows

    def held_first_batch(batch, progress=None):  # the model is busy with the first upload's first window
        if not first_batch.is_set():
            first_batch.set()
            go.wait(30)
        run_windows(batch, progress)

    pipe.run_windows = held_first_batch
    batcher = Batcher(max_batch_seconds=5, max_wait_s=0)  # one 5 s window a batch
    finished = []
    try:
        for name in ("long 1", "long 2", "long 3", "short"):
            audio = load_audio(str(EXAMPLES[1]))[: 24000] if name == "short" else long_audio
            future = batcher.submit(pipe, *prepare(pipe, audio, name))
            future.add_done_callback(lambda _, name=name: finished.append(name))
            if name == "long 1":
                assert first_batch.wait(30)
        go.set()
        deadline = time.time() + 60
        while len(finished) < 4:
            assert time.time() < deadline
            time.sleep(0.01)
    finally:
        go.set()
        batcher.close(30)
    assert finished[0] == "short", finished


def test_a_short_upload_is_prepared_between_the_windows_of_long_uploads_ahead_of_it():
    # Before: each upload was decoded and featured whole, in a pool of 2 threads: a short one sent after three long
    # ones waited for the preparation of two of them.
    served = Served(ServeSettings(model=str(DEMO), chunk_length_s=5))
    long_upload = wav_bytes(np.tile(load_audio(str(EXAMPLES[0])), 20)[: 60 * 16000])  # 12 windows
    short_upload = wav_bytes(load_audio(str(EXAMPLES[1]))[: 24000])
    finished = []

    async def prepare(name: str, data: bytes) -> None:
        await served.prepare(served.transcriber, data, name)
        finished.append(name)

    async def uploads() -> None:
        await asyncio.gather(*(prepare(f"long {i}", long_upload) for i in range(3)), prepare("short", short_upload))

    try:
        asyncio.run(uploads())
    finally:
        served.close()
    assert finished[0] == "short", finished


# ---------------------------------------------------------------------------------------- huge answers
def write_flac(path, samples: np.ndarray, rate: int = 16000):
    """Mono int16 `samples` -> a FLAC file, encoded by PyAV (a dependency already)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in (*stream.encode(frame), *stream.encode(None)):
            container.mux(packet)
    return path


def test_per_frame_embeddings_past_the_response_limit_are_413_before_the_model_runs(tmp_path):
    # An 18 KB FLAC of 50 min of silence answered 300 MB of JSON; here 5 min against a 5 MB limit.
    silence = write_flac(tmp_path / "silence.flac", np.zeros(16000 * 300, np.int16))
    assert silence.stat().st_size < 100_000  # a small upload asking for a large answer
    with running(create_app(ServeSettings(model=str(DEMO), max_response_mb=5))) as url:
        refused = post(url, "/v1/audio/embeddings", silence.read_bytes(), "silence.flac", pool="none")
        assert_openai_error(refused, 413, "5 MB", "--max-response-mb", "pool=mean")
        assert refused.json()["error"]["code"] == "response_too_large"
        assert health(url)["queued_windows"] == 0  # nothing went to the model
        short = post(url, "/v1/audio/embeddings", EXAMPLES[0].read_bytes(), pool="none")
        assert short.status_code == 200, short.text


# ------------------------------------------------------------------------------ the command, shutdown
@pytest.mark.parametrize("arguments, words", [
    (["--port", "99999"], "65535, got 99999"),
    (["--host", "no-such-host.invalid"], "cannot listen on --host no-such-host.invalid"),
])
def test_serve_refuses_an_address_it_cannot_listen_on_before_loading_the_model(monkeypatch, capsys, arguments,
                                                                               words):
    monkeypatch.setattr("w2vbert.serving.app.create_app", lambda *a: pytest.fail("the model was loaded"))
    try:
        code = cli_main(["serve", "-m", str(DEMO), *arguments])
    except SystemExit as exit:  # argparse's own refusal
        code = exit.code
    assert code == 2
    error = capsys.readouterr().err
    assert words in error and "Traceback" not in error
    assert error.strip().splitlines()[-1].startswith("w2vbert serve: error:")


def test_a_refused_websocket_is_answered_without_an_error_in_the_log():
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    errors = logging.getLogger("uvicorn.error")
    with running(create_app(ServeSettings(model=str(DEMO), api_key="k"))) as url:
        errors.addHandler(handler)  # once uvicorn has set up its logging, which drops the handlers it finds
        try:
            for query, status in (("", "401"), ("?api_key=k&format=opus", "400")):
                with pytest.raises(Exception, match=status):
                    websockets_sync.connect(url.replace("http", "ws") + "/v1/audio/stream" + query, open_timeout=10)
            assert httpx.get(url + "/health").status_code == 200
        finally:
            errors.removeHandler(handler)
    assert [r.getMessage() for r in records if r.levelno >= logging.WARNING] == []


def test_sigterm_answers_the_queued_requests_503_after_the_grace_and_logs_no_traceback():
    command = [sys.executable, "-m", "w2vbert", "serve", "-m", str(DEMO), "--port", "0", "--max-wait-ms", "60000",
               "--shutdown-grace", "0.5"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        url = process.stdout.readline().split("on ", 1)[1].strip()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            waiting = [pool.submit(post, url, "/v1/audio/transcriptions", EXAMPLES[0].read_bytes())
                       for _ in range(3)]
            wait_for_queued(url, windows=3)  # all three queued (a request still connecting would get no answer)
            process.send_signal(signal.SIGTERM)
            for response in (f.result() for f in waiting):
                assert_openai_error(response, 503, "shutting down")
        assert process.wait(30) == -signal.SIGTERM
        log = process.stdout.read()
        assert "Traceback" not in log and "CancelledError" not in log, log
    finally:
        process.kill()


# ------------------------------------------------------------------------------------------ model names
def test_model_aliases_answer_to_the_names_apps_hard_code_and_are_listed():
    with running(create_app(ServeSettings(model=str(DEMO), model_aliases=("whisper-1", "gpt-4o-transcribe")))) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list()] == ["demo-model", "whisper-1", "gpt-4o-transcribe"]
        with EXAMPLES[0].open("rb") as f:
            assert client.audio.transcriptions.create(file=f, model="whisper-1").text
        with EXAMPLES[0].open("rb") as f, pytest.raises(openai.NotFoundError, match="--model-alias"):
            client.audio.transcriptions.create(file=f, model="whisper-2")
