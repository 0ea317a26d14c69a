"""`w2vbert serve`: the official openai client, a WebSocket client and a browser against a real server on loopback.

The server runs in this process (uvicorn in a thread, port chosen by the system) with the shipped demo model, so
its transcripts are real words; what it answers is compared with `w2vbert transcribe` and the pipelines.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from conftest import tiny_config_kwargs
from w2vbert import Wav2Vec2BertConfig, Wav2Vec2BertForSequenceClassification, pipeline
from w2vbert.audio.decode import wav_bytes
from w2vbert.audio.features import SeamlessM4TFeatureExtractor
from w2vbert.cli.parser import main as cli_main

uvicorn = pytest.importorskip("uvicorn")  # the `serve` extra and the clients of the dev extra
openai = pytest.importorskip("openai")
websockets_sync = pytest.importorskip("websockets.sync.client")
websockets_exceptions = pytest.importorskip("websockets.exceptions")
server_module = pytest.importorskip("w2vbert.serving.app")
ServeSettings, create_app = server_module.ServeSettings, server_module.create_app

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo-model"
EXAMPLES = sorted((ROOT / "examples" / "audio").glob("*.wav"))
DATA = Path(__file__).parent / "data"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5Er"
                       "kJggg==")  # a 1 x 1 picture


@contextlib.contextmanager
def running(app, **options):
    """The app served by uvicorn on a free loopback port, in a thread (`options`: more of uvicorn's settings);
    yields its base URL."""
    server = uvicorn.Server(server_module.uvicorn_config(app, host="127.0.0.1", port=0, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture(scope="module")
def server():
    with running(create_app(ServeSettings(model=str(DEMO), max_wait_ms=5, max_upload_mb=1,
                                          max_audio_seconds=120))) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def cli_outputs(tmp_path_factory):
    """What `w2vbert transcribe -f all` writes for each example recording: {stem: {format: text}}."""
    out = tmp_path_factory.mktemp("cli")
    assert cli_main(["transcribe", *map(str, EXAMPLES), "-m", str(DEMO), "-o", str(out), "-f", "all",
                     "--no-progress"]) == 0
    return {p.stem: {fmt: (out / f"{p.stem}.{fmt}").read_text() for fmt in ("txt", "json", "srt", "vtt")}
            for p in EXAMPLES}


def post(url: str, path: str, data: bytes | None = None, filename: str = "a.wav", timeout: float = 60,
         **fields) -> httpx.Response:
    files = None if data is None else {"file": (filename, data)}
    return httpx.post(url + path, files=files, data=fields, timeout=timeout)


def assert_openai_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    for word in words:
        assert word in error["message"], error["message"]


# --------------------------------------------------------------------------------- OpenAI's API, its client
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_openai_client_gets_the_transcript_of_w2vbert_transcribe_in_every_format(client, cli_outputs, path):
    expected = cli_outputs[path.stem]
    text = expected["txt"].strip()
    assert text  # the demo model writes words for its examples
    with path.open("rb") as f:
        assert client.audio.transcriptions.create(file=f, model="demo-model").text == text
    for fmt, cli_format in (("text", "txt"), ("srt", "srt"), ("vtt", "vtt")):
        with path.open("rb") as f:
            answer = client.audio.transcriptions.create(file=f, model="demo-model", response_format=fmt)
        assert answer == expected[cli_format], fmt
    with path.open("rb") as f:
        verbose = client.audio.transcriptions.create(file=f, model="demo-model", response_format="verbose_json",
                                                     timestamp_granularities=["word", "segment"])
    chunks = json.loads(expected["json"])["chunks"]
    assert verbose.text == text
    assert [(w.word, w.start, w.end) for w in verbose.words] == [(c["text"], *c["timestamp"]) for c in chunks]
    assert " ".join(s.text for s in verbose.segments) == text
    assert verbose.duration == pytest.approx(path.stat().st_size / 32000, abs=0.01)


def test_an_upload_of_eight_channels_is_transcribed_and_the_server_lives_on(server, cli_outputs):
    # One 8-channel upload segfaulted the whole server (issue 32); every channel holds the same speech here, so the
    # channel mean is the mono recording and the transcript is the command line's.
    path = EXAMPLES[0]
    with wave.open(str(path)) as mono:
        samples = np.frombuffer(mono.readframes(mono.getnframes()), "<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(8)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(np.repeat(samples[:, None], 8, axis=1).tobytes())
    response = post(server, "/v1/audio/transcriptions", buffer.getvalue(), model="demo-model")
    assert response.status_code == 200, response.text
    assert response.json()["text"] == cli_outputs[path.stem]["txt"].strip()
    assert httpx.get(server + "/health", timeout=10).status_code == 200


def test_a_streamed_transcription_sends_deltas_that_add_up_to_the_text(client, cli_outputs):
    path = EXAMPLES[0]
    with path.open("rb") as f:
        events = list(client.audio.transcriptions.create(file=f, model="demo-model", stream=True))
    assert [e.type for e in events][-1] == "transcript.text.done"
    deltas = "".join(e.delta for e in events if e.type == "transcript.text.delta")
    assert deltas == events[-1].text == cli_outputs[path.stem]["txt"].strip()


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list()] == ["demo-model"]


def test_a_request_for_another_model_is_refused_naming_the_served_one(server):
    response = post(server, "/v1/audio/transcriptions", EXAMPLES[0].read_bytes(), model="whisper-1")
    assert_openai_error(response, 404, "demo-model", "whisper-1")


# ---------------------------------------------------------------------------------- embeddings, classifier
def test_embeddings_equal_the_feature_extraction_pipeline_as_floats_and_base64(server):
    data = EXAMPLES[1].read_bytes()
    for layer, pool in ((-1, "mean"), (2, "none")):
        expected = pipeline("feature-extraction", str(DEMO), layer=layer, pool=None if pool == "none" else pool)(
            str(EXAMPLES[1]))
        floats = post(server, "/v1/audio/embeddings", data, layer=str(layer), pool=pool).json()
        coded = post(server, "/v1/audio/embeddings", data, layer=str(layer), pool=pool,
                     encoding_format="base64").json()
        assert floats["data"][0]["shape"] == list(expected.shape) == coded["data"][0]["shape"]
        np.testing.assert_allclose(np.array(floats["data"][0]["embedding"]), expected, atol=1e-5)
        decoded = np.frombuffer(base64.b64decode(coded["data"][0]["embedding"]), "<f4").reshape(expected.shape)
        np.testing.assert_allclose(decoded, expected, atol=1e-5)
    assert_openai_error(post(server, "/v1/audio/embeddings", data, layer="9"), 400, "layer")


def test_classifications_equal_the_pipeline_and_transcriptions_need_a_ctc_model(tmp_path):
    torch.manual_seed(0)
    config = Wav2Vec2BertConfig(**tiny_config_kwargs(id2label={0: "en", 1: "de", 2: "mn"}, num_labels=None))
    Wav2Vec2BertForSequenceClassification(config).save_pretrained(tmp_path)
    SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(tmp_path)
    expected = pipeline("audio-classification", str(tmp_path))(str(EXAMPLES[0]), top_k=2)
    with running(create_app(ServeSettings(model=str(tmp_path)))) as url:
        answer = post(url, "/v1/audio/classifications", EXAMPLES[0].read_bytes(), top_k="2").json()
        assert [x["label"] for x in answer["labels"]] == [x["label"] for x in expected]
        np.testing.assert_allclose([x["score"] for x in answer["labels"]], [x["score"] for x in expected],
                                   atol=1e-6)
        assert_openai_error(post(url, "/v1/audio/transcriptions", EXAMPLES[0].read_bytes()), 400,
                            "Wav2Vec2BertForSequenceClassification")


# ------------------------------------------------------------------------------------- dynamic batching
def test_concurrent_requests_share_batches_and_get_their_own_transcripts(cli_outputs):
    jobs = [EXAMPLES[i % 2] for i in range(16)]
    # A wait of 300 ms makes the sharing certain here; the default (10 ms) is for throughput (benchmarks/serve.py).
    with running(create_app(ServeSettings(model=str(DEMO), max_wait_ms=300))) as url:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            texts = list(pool.map(lambda p: post(url, "/v1/audio/transcriptions", p.read_bytes(),
                                                 response_format="text").text, jobs))
        batches = metric(url, "w2vbert_batch_windows_count")
        windows = metric(url, "w2vbert_batch_windows_sum")
    assert texts == [cli_outputs[p.stem]["txt"] for p in jobs]
    assert windows == len(jobs) and batches < len(jobs) / 2  # requests ran together


def metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} in /metrics")


def test_health_and_metrics_report_requests_errors_and_audio(server):
    assert httpx.get(server + "/health").json()["status"] == "ok"
    post(server, "/v1/audio/transcriptions", b"garbage bytes, not audio")
    text = httpx.get(server + "/metrics").text
    for series in ("w2vbert_requests_total", "w2vbert_errors_total", "w2vbert_requests_in_flight",
                   "w2vbert_queued_windows", "w2vbert_batch_windows_bucket", "w2vbert_audio_seconds_total",
                   "w2vbert_request_seconds_bucket"):
        assert series in text, series
    assert 'w2vbert_errors_total{code="400",endpoint="/v1/audio/transcriptions"}' in text


# ----------------------------------------------------------------------------------------- bad input
def test_each_bad_request_gets_its_4xx_while_a_load_runs_and_the_load_loses_nothing(server, cli_outputs):
    good = EXAMPLES[0].read_bytes()
    bad = [
        (dict(data=b"\x00\x01garbage" * 50), 400, ()),
        (dict(data=b""), 400, ("empty",)),
        (dict(data=(DATA / "not_audio.txt").read_bytes(), filename="notes.txt"), 400, ()),
        (dict(data=(DATA / "corrupt.wav").read_bytes()), 400, ()),
        (dict(data=PNG, filename="picture.png"), 400, ("picture.png",)),  # a format FFmpeg reads, without audio
        (dict(data=b"\x00" * (2 * 2**20)), 413, ("1 MB",)),
        (dict(data=None), 400, ("'file'",)),
        (dict(data=good, response_format="docx"), 400, ("response_format", "docx")),
        (dict(data=good, timestamp_granularities="sentence"), 400, ()),
        (dict(data=wav_bytes(np.zeros(100, np.float32))), 400, ("too short",)),
    ]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        load = [pool.submit(post, server, "/v1/audio/transcriptions", good, response_format="text")
                for _ in range(24)]
        for fields, status, words in bad:
            fields = dict(fields)
            response = post(server, "/v1/audio/transcriptions", fields.pop("data"), fields.pop("filename", "a.wav"),
                            **fields)
            assert_openai_error(response, status, *words)
        assert [f.result().text for f in load] == [cli_outputs[EXAMPLES[0].stem]["txt"]] * 24
    assert_openai_error(httpx.get(server + "/v1/nothing"), 404, "/v1/nothing")


def test_audio_longer_than_the_limit_is_413_naming_it(tmp_path):
    from test_pipelines import write_wav
    from w2vbert.audio.decode import load_audio

    audio = load_audio(str(EXAMPLES[0]))
    long = write_wav(tmp_path / "long.wav", np.tile(audio, 3))
    with running(create_app(ServeSettings(model=str(DEMO), max_audio_seconds=5))) as url:
        assert_openai_error(post(url, "/v1/audio/transcriptions", long.read_bytes()), 413, "5 s")
        assert post(url, "/v1/audio/transcriptions", EXAMPLES[0].read_bytes()).status_code == 200


def test_api_key_is_required_and_compared_and_the_page_and_health_stay_open():
    with running(create_app(ServeSettings(model=str(DEMO), api_key="s3cret"))) as url:
        data = EXAMPLES[0].read_bytes()
        assert_openai_error(post(url, "/v1/audio/transcriptions", data), 401, "API key")
        bad = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("a.wav", data)},
                         headers={"Authorization": "Bearer wrong"})
        assert_openai_error(bad, 401, "not valid")
        authorised = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        with EXAMPLES[0].open("rb") as f:
            assert authorised.audio.transcriptions.create(file=f, model="demo-model").text
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()
        assert httpx.get(url + "/health").status_code == 200
        assert httpx.get(url + "/").status_code == 200
        with pytest.raises(Exception, match="401"):
            websockets_sync.connect(url.replace("http", "ws") + "/v1/audio/stream", open_timeout=10)
        for extra in (dict(additional_headers={"Authorization": "Bearer s3cret"}), {}):
            query = "" if extra else "?api_key=s3cret"  # browsers cannot set headers on a WebSocket
            with websockets_sync.connect(url.replace("http", "ws") + "/v1/audio/stream" + query, **extra) as ws:
                ws.send(pcm16(recording_of(2.0)))
                ws.send(json.dumps({"type": "end"}))
                assert [json.loads(m) for m in ws][-1]["type"] == "done"


def test_a_full_queue_answers_503_with_retry_after_and_a_slow_request_504():
    data = EXAMPLES[0].read_bytes()
    # The first request waits up to 3 s for company in the batcher: it holds the only place in the queue.
    with running(create_app(ServeSettings(model=str(DEMO), max_queue=1, max_wait_ms=3000,
                                          request_timeout_s=1.0))) as url:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, url, "/v1/audio/transcriptions", data)
            wait_for_queued(url)
            busy = post(url, "/v1/audio/transcriptions", data)
            assert_openai_error(busy, 503, "busy")
            assert busy.headers["retry-after"] == "1"
            assert_openai_error(first.result(), 504, "1 s")


def wait_for_queued(url: str, timeout: float = 30, windows: int = 1) -> None:
    """Until the server holds at least `windows` windows in its batcher queue."""
    deadline = time.time() + timeout
    while httpx.get(url + "/health").json()["queued_windows"] < windows:
        assert time.time() < deadline, "no request reached the batcher"
        time.sleep(0.02)


def test_an_upload_over_the_limit_without_a_content_length_is_413_too(server):
    def body():  # chunked transfer: the limit is found while reading
        yield b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for _ in range(40):
            yield b"\x00" * 65536
        yield b"\r\n--x--\r\n"

    response = httpx.post(server + "/v1/audio/transcriptions", content=body(),
                          headers={"content-type": "multipart/form-data; boundary=x"}, timeout=60)
    assert_openai_error(response, 413, "1 MB")


def test_cors_is_off_by_default_and_on_for_the_origins_given():
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with running(create_app(ServeSettings(model=str(DEMO)))) as url:
        response = httpx.options(url + "/v1/audio/transcriptions", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    with running(create_app(ServeSettings(model=str(DEMO), cors_origins=("https://app.example",),
                                          api_key="k"))) as url:
        response = httpx.options(url + "/v1/audio/transcriptions", headers=preflight)  # a preflight has no key
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        refused = httpx.get(url + "/v1/models", headers={"Origin": "https://app.example"})
        assert refused.status_code == 401  # and the browser can read why
        assert refused.headers["access-control-allow-origin"] == "https://app.example"


# ------------------------------------------------------------------------------------------------ live
def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def recording_of(seconds: float) -> np.ndarray:
    """The example recordings and the test clips joined with 0.6 s pauses, to `seconds` of audio."""
    from w2vbert.audio.decode import load_audio

    clips = [load_audio(str(p)) for p in [*EXAMPLES, DATA / "hello.wav", DATA / "numbers.wav"]]
    pause = np.zeros(int(0.6 * 16000), np.float32)
    pieces, total, i = [], 0, 0
    while total < seconds * 16000:
        pieces += [clips[i % len(clips)], pause]
        total += len(clips[i % len(clips)]) + len(pause)
        i += 1
    return np.concatenate(pieces)[: int(seconds * 16000)]


def stream(url: str, audio: np.ndarray, chunk_s: float = 0.1, speed: float = 0.0, **query) -> list[dict]:
    """Send `audio` as PCM messages of `chunk_s` (`speed` x real time; 0: as fast as possible), end the stream,
    and return every message received, each with its arrival time and the audio sent by then."""
    params = "&".join(f"{k}={v}" for k, v in query.items())
    messages, sent = [], [0.0]
    with websockets_sync.connect(url.replace("http", "ws") + "/v1/audio/stream?" + params) as ws:
        def receive() -> None:
            for raw in ws:
                message = json.loads(raw)
                message["_at"], message["_sent_s"] = time.perf_counter(), sent[0]
                messages.append(message)

        reader = threading.Thread(target=receive)
        reader.start()
        started, step = time.perf_counter(), int(chunk_s * 16000)
        for start in range(0, len(audio), step):
            ws.send(pcm16(audio[start : start + step]))
            sent[0] = min(start + step, len(audio)) / 16000
            if speed:
                time.sleep(max(0.0, started + sent[0] / speed - time.perf_counter()))
        ws.send(json.dumps({"type": "end"}))
        reader.join(60)
    return messages


def test_a_live_stream_ends_with_the_files_transcript_and_settled_text_never_changes(server, tmp_path):
    from test_pipelines import write_wav

    audio = recording_of(60.0)
    expected = pipeline("automatic-speech-recognition", str(DEMO))(str(write_wav(tmp_path / "r.wav", audio)))
    messages = stream(server, audio, chunk_s=0.1, speed=20.0)
    assert messages[-1]["type"] == "done"
    assert messages[-1]["text"] == expected["text"]
    assert messages[-1]["duration"] == pytest.approx(60.0, abs=0.01)
    finals = [m for m in messages if m["type"] == "final"]
    assert "".join(m["text"] for m in finals) == expected["text"]
    committed = [m["committed"] for m in messages if m["type"] in ("partial", "final")] + [expected["text"]]
    assert all(later.startswith(earlier) for earlier, later in zip(committed, committed[1:], strict=False))
    partials = [m for m in messages if m["type"] == "partial"]
    gaps = np.diff([0.0] + [m["audio_seconds"] for m in partials])
    assert len(partials) >= 60 and gaps.max() <= 1.0  # a partial for at least every second of audio
    assert partials[len(partials) // 2]["text"].startswith(partials[len(partials) // 2]["committed"])


def test_a_live_stream_at_another_rate_and_an_encoded_stream_transcribe_as_the_file(server):
    from w2vbert.audio.decode import load_audio, resample

    at_8k = resample(recording_of(8.0), 16000, 8000)
    sent = (np.clip(at_8k, -1, 1) * 32767).astype(np.int16).astype(np.float32) / 32768  # what PCM16 carries
    expected = pipeline("automatic-speech-recognition", str(DEMO))({"array": sent, "sampling_rate": 8000})
    messages = stream(server, at_8k, chunk_s=0.05, sample_rate=8000)
    assert messages[-1]["type"] == "done" and messages[-1]["duration"] == pytest.approx(8.0, abs=0.02)
    assert messages[-1]["text"] == expected["text"]
    encoded = (DATA / "quick_44k.flac").read_bytes()
    expected = pipeline("automatic-speech-recognition", str(DEMO))(str(DATA / "quick_44k.flac"))
    with websockets_sync.connect(server.replace("http", "ws") + "/v1/audio/stream?format=encoded") as ws:
        for start in range(0, len(encoded), 4096):
            ws.send(encoded[start : start + 4096])
        ws.send(json.dumps({"type": "end"}))
        replies = [json.loads(m) for m in ws]
    assert replies[-1]["type"] == "done" and replies[-1]["text"] == expected["text"]
    assert load_audio(str(DATA / "quick_44k.flac")).size / 16000 == pytest.approx(replies[-1]["duration"], abs=0.01)


def test_a_text_message_is_an_error_and_a_client_leaving_mid_stream_costs_the_others_nothing(server, cli_outputs):
    good = EXAMPLES[0].read_bytes()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # a load of good requests all along
        load = [pool.submit(post, server, "/v1/audio/transcriptions", good, response_format="text")
                for _ in range(12)]
        with websockets_sync.connect(server.replace("http", "ws") + "/v1/audio/stream") as ws:
            ws.send(pcm16(recording_of(1.0)))
            ws.send("hello?")
            replies = []
            with pytest.raises(websockets_exceptions.ConnectionClosedError):  # closed with 1003, not 1000
                for message in ws:
                    replies.append(json.loads(message))
            assert replies[-1]["type"] == "error" and "expected binary audio" in replies[-1]["error"]["message"]
            assert ws.close_code == 1003
        with websockets_sync.connect(server.replace("http", "ws") + "/v1/audio/stream") as ws:
            ws.send(pcm16(recording_of(3.0)))
        # ... and closed mid-stream, without {"type": "end"}; an encoded stream left so ends its decoder too
        with websockets_sync.connect(server.replace("http", "ws") + "/v1/audio/stream?format=encoded") as ws:
            ws.send((DATA / "quick_44k.flac").read_bytes()[:20000])
        deadline = time.time() + 10
        while any(t.name == "w2vbert-live-decoder" for t in threading.enumerate()):
            assert time.time() < deadline, "the decoder of an abandoned stream is still running"
            time.sleep(0.05)
        with pytest.raises(Exception, match="400"):
            websockets_sync.connect(server.replace("http", "ws") + "/v1/audio/stream?format=opus", open_timeout=10)
        assert [f.result().text for f in load] == [cli_outputs[EXAMPLES[0].stem]["txt"]] * 12


# ------------------------------------------------------------------------------------ the page, a browser
def test_a_browser_uploads_an_example_recording_and_sees_its_transcript(server, cli_outputs):
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver") or "/usr/lib/chromium/chromedriver"
    if chromium is None or not os.path.exists(driver_path):
        pytest.skip("no chromium with its driver here (Debian: apt install chromium chromium-driver)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        browser.get(server + "/")
        WebDriverWait(browser, 20).until(lambda b: b.find_element(By.ID, "model").text == "demo-model")
        browser.find_element(By.ID, "file").send_keys(str(EXAMPLES[0]))
        browser.find_element(By.ID, "transcribe").click()
        WebDriverWait(browser, 60).until(lambda b: b.find_element(By.ID, "transcript").text)
        assert browser.find_element(By.ID, "transcript").text == cli_outputs[EXAMPLES[0].stem]["txt"].strip()
        rows = browser.find_elements(By.CSS_SELECTOR, "#words tbody tr")
        assert [r.find_elements(By.TAG_NAME, "td")[2].text for r in rows] == \
            cli_outputs[EXAMPLES[0].stem]["txt"].split()
    finally:
        browser.quit()


# ----------------------------------------------------------------------------------- the command itself
def test_serve_binds_to_loopback_and_finishes_the_requests_in_flight_on_sigterm(tmp_path):
    command = [sys.executable, "-m", "w2vbert", "serve", "-m", str(DEMO), "--port", "0", "--max-wait-ms", "1500"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        assert "http://127.0.0.1:" in line, line
        url = line.split("on ", 1)[1].strip()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(post, url, "/v1/audio/transcriptions", EXAMPLES[0].read_bytes())
            wait_for_queued(url)  # the request waits in the batcher (up to 1.5 s)
            process.send_signal(signal.SIGTERM)
            assert in_flight.result().status_code == 200
        assert process.wait(30) == -signal.SIGTERM  # uvicorn shuts down, then re-raises the signal it got
    finally:
        process.kill()
