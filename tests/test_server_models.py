"""`w2vbert serve` beyond one model and one process (issue 31): requests pick a model by the name or alias in
`model`, an unknown name is a 404 listing them, /v1/models, /health and /metrics cover each, a model that does not
load stops the server naming it; processes sharing a port with --reuse-port each serve, and one stopping leaves the
others serving; a server sent SIGTERM drains (the request in flight finishes, new ones get 503 with Retry-After).
Servers run as in test_server.py: uvicorn on loopback, the official openai client.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
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
    websockets_exceptions,
    websockets_sync,
)
from w2vbert import pipeline
from w2vbert.cli.parser import main as cli_main
from w2vbert.serving.served import model_spec


def test_requests_pick_a_model_by_name_or_alias_and_an_unknown_name_is_a_404_listing_them(classifier_dir):
    settings = ServeSettings(model=str(DEMO), model_id="asr", more_models=(f"lid={classifier_dir}",),
                             model_aliases=("whisper-1=asr", "langid=lid"))
    audio = EXAMPLES[0].read_bytes()
    text = pipeline("automatic-speech-recognition", str(DEMO))(str(EXAMPLES[0]))["text"]
    labels = pipeline("audio-classification", str(classifier_dir))(str(EXAMPLES[0]), top_k=3)
    with running(create_app(settings)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        listed = client.models.list().data
        assert [(m.id, m.model_extra["root"]) for m in listed] == [
            ("asr", "asr"), ("lid", "lid"), ("whisper-1", "asr"), ("langid", "lid")]
        for name in ("asr", "whisper-1", None):  # no model: the first
            with EXAMPLES[0].open("rb") as f:
                assert client.audio.transcriptions.create(file=f, model=name or openai.NOT_GIVEN).text == text
        for name in ("lid", "langid"):
            answer = post(url, "/v1/audio/classifications", audio, model=name, top_k="3").json()
            assert answer["model"] == "lid" and [x["label"] for x in answer["labels"]] == [x["label"] for x in labels]
        assert_openai_error(post(url, "/v1/audio/transcriptions", audio, model="lid"), 400,
                            "'lid'", "Wav2Vec2BertForSequenceClassification")
        with EXAMPLES[0].open("rb") as f, pytest.raises(openai.NotFoundError) as refused:
            client.audio.transcriptions.create(file=f, model="whisper-2")
        for name in ("'whisper-2'", "asr", "lid", "whisper-1 (for asr)", "langid (for lid)"):
            assert name in refused.value.message
        with pytest.raises(websockets_exceptions.InvalidStatus) as stream_refused:
            websockets_sync.connect(url.replace("http", "ws") + "/v1/audio/stream?model=nope", open_timeout=10)
        assert stream_refused.value.response.status_code == 404
        health = httpx.get(url + "/health").json()
        assert health["status"] == "ok" and health["model"] == "asr"
        assert {name: model["task"] for name, model in health["models"].items()} == {
            "asr": "automatic-speech-recognition", "lid": "audio-classification"}
        metrics = httpx.get(url + "/metrics").text
        assert 'w2vbert_batch_windows_count{model="asr"} 3.0' in metrics  # the three transcriptions
        assert 'w2vbert_batch_windows_count{model="lid"} 2.0' in metrics  # the two classifications


def test_a_model_that_fails_to_load_stops_the_server_with_one_line_naming_it(tmp_path, capsys):
    assert cli_main(["serve", "-m", str(DEMO), "-m", f"broken={tmp_path}", "--port", "0"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "the model 'broken'" in error and "failed to load" in error, error


@pytest.mark.parametrize("arguments, words", [
    (["-m", f"a={DEMO}", "-m", f"a={DEMO}"], "two models are named 'a'"),
    (["-m", f"a={DEMO}", "--model-alias", "whisper-1=b"], "whisper-1=b names no served model"),
    (["-m", f"a={DEMO}", "-m", f"b={DEMO}", "--model-alias", "whisper-1"], "give ALIAS=NAME"),
    (["-m", f"a={DEMO}", "-m", f"b={DEMO}", "--model-alias", "b=a"], "the name 'b' is taken"),
])
def test_names_that_clash_and_aliases_of_no_model_are_usage_errors_before_loading(arguments, words, capsys):
    assert cli_main(["serve", *arguments, "--port", "0"]) == 2
    assert words in capsys.readouterr().err


def test_serve_ray_without_ray_serve_is_one_line_naming_the_extra_and_bad_replica_counts_a_usage_error(
        monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray.serve", None)  # as if not installed: `import ray.serve` raises ImportError
    monkeypatch.delitem(sys.modules, "w2vbert.serving.ray_app", raising=False)
    assert cli_main(["serve", "--ray", "-m", str(DEMO)]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "needs ray.serve" in error and "w2vbert[ray]" in error, error
    assert cli_main(["serve", "--ray", "-m", str(DEMO), "--min-replicas", "3", "--max-replicas", "2"]) == 2
    assert "--max-replicas 2 is below --min-replicas 3" in capsys.readouterr().err
    assert cli_main(["serve", "--ray", "-m", str(DEMO), "--port", "0"]) == 2
    assert "--ray needs a fixed --port" in capsys.readouterr().err


def test_a_model_is_named_by_name_equals_or_by_its_folder():
    assert model_spec("asr=models/ctc") == ("asr", "models/ctc")
    assert model_spec("models/ctc") == ("ctc", "models/ctc")
    assert model_spec("org/repo") == ("repo", "org/repo")
    assert model_spec(str(DEMO)) == ("demo-model", str(DEMO))


def test_processes_sharing_a_port_each_serve_and_one_stopped_leaves_the_other_serving():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "w2vbert", "serve", "-m", str(DEMO), "--port", str(port), "--reuse-port"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
                 for _ in range(2)]
    try:
        for process in processes:
            assert f":{port}" in process.stdout.readline()
        url = f"http://127.0.0.1:{port}"
        # Each request on a new connection: the system picks a process by the connection's ports, so 40 requests
        # reach both (all 40 to one: a chance of 2 ** -39).
        assert {httpx.get(url + "/health").json()["process"] for _ in range(40)} == {p.pid for p in processes}
        processes[0].send_signal(signal.SIGTERM)
        assert processes[0].wait(30) == -signal.SIGTERM
        for _ in range(5):
            answer = post(url, "/v1/audio/transcriptions", EXAMPLES[0].read_bytes())
            assert answer.status_code == 200 and answer.json()["text"], answer.text
        assert httpx.get(url + "/health").json()["process"] == processes[1].pid
    finally:
        for process in processes:
            process.kill()
            process.wait(30)


def test_on_sigterm_the_request_in_flight_finishes_while_new_ones_get_503_with_retry_after():
    command = [sys.executable, "-m", "w2vbert", "serve", "-m", str(DEMO), "--port", "0", "--max-wait-ms", "2000",
               "--shutdown-grace", "20"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    try:
        url = process.stdout.readline().split("on ", 1)[1].strip()
        assert_sigterm_drains(process, url)
        signalled = time.monotonic()
        assert process.wait(30) == -signal.SIGTERM
        assert time.monotonic() - signalled < 10  # it stopped once nothing was in flight, not after the 20 s grace
    finally:
        process.kill()


def assert_sigterm_drains(process: subprocess.Popen, url: str) -> None:
    """SIGTERM to the server `process` at `url` while a request waits in its batcher (for company, up to the server's
    --max-wait-ms): while that request is in flight, new requests are answered 503 with Retry-After and /health says
    "draining"; then the request is answered 200 with its transcript."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(post, url, "/v1/audio/transcriptions", EXAMPLES[0].read_bytes())
        wait_for_queued(url)
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while (health := httpx.get(url + "/health", timeout=10)).json()["status"] != "draining":
            assert time.monotonic() < deadline, f"the server did not drain: {health.text}"
            time.sleep(0.02)
        assert health.status_code == 503
        refused = post(url, "/v1/audio/transcriptions", EXAMPLES[0].read_bytes())
        assert_openai_error(refused, 503, "shutting down")
        assert refused.headers["retry-after"] == "5"
        assert not in_flight.done()  # all of this while the request was in flight
        answer = in_flight.result()
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == pipeline("automatic-speech-recognition", str(DEMO))(str(EXAMPLES[0]))["text"]


def test_health_is_503_once_a_model_thread_has_stopped():
    # What balancers and Ray Serve's replica health check (W2vBertReplica.check_health, the same test) act on.
    app = create_app(ServeSettings(model=str(DEMO), model_id="asr", more_models=(f"other={DEMO}",)))
    with running(app) as url:
        assert httpx.get(url + "/health").status_code == 200
        app.state.server.models["other"].batcher.close()
        answer = httpx.get(url + "/health")
        assert answer.status_code == 503 and answer.json()["status"] == "failed"
        assert {name: model["running"] for name, model in answer.json()["models"].items()} == {
            "asr": True, "other": False}
