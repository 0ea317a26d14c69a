"""`w2vbert serve --ray` (issue 31): the server's app as a Ray Serve deployment, called through Ray Serve's proxy on
loopback with the official openai client.

Ray is the cluster of $RAY_ADDRESS (CI starts one with `ray start --head --num-cpus 2`, as for tests/test_bulk.py),
or a local instance this module starts; one replica of one CPU holds the demo model twice (as "asr" and "other"),
so it fits CI's two CPUs. The module skips when Ray Serve cannot start here.
"""

from __future__ import annotations

import os
import socket

import h11
import httpx
import pytest

from test_bulk import free_port
from test_server import DEMO, EXAMPLES, ServeSettings, assert_openai_error, openai, post
from w2vbert import pipeline

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
ray_app = pytest.importorskip("w2vbert.serving.ray_app")


@pytest.fixture(scope="module")
def proxy():
    """Ray Serve's proxy URL, with the application "w2vbert-test" deployed behind it at /."""
    started, port = not ray.is_initialized(), free_port()
    try:  # Ray and Ray Serve's proxy: a machine that cannot run them skips; a deployment that fails fails
        if started:
            address = os.environ.get("RAY_ADDRESS") or "local"
            ray.init(address=address, log_to_driver=False, include_dashboard=False,
                     **({"num_cpus": 2} if address == "local" else {}))
        serve.start(http_options={"host": "127.0.0.1", "port": port})
    except (ConnectionError, TimeoutError, RuntimeError) as error:
        pytest.skip(f"Ray Serve does not start here: {error}")
    settings = ServeSettings(model=str(DEMO), model_id="asr", more_models=(f"other={DEMO}",),
                             model_aliases=("whisper-1=asr",), max_wait_ms=5)
    ray_app.deploy(settings, ray_app.ReplicaOptions(), "127.0.0.1", port, name="w2vbert-test")
    url = f"http://127.0.0.1:{port}"
    yield url
    serve.shutdown()  # the proxy too: a later session's serve.start would keep this one's port
    if started:
        ray.shutdown()


def test_the_openai_client_gets_the_pipeline_transcript_through_ray_serve_by_name_and_alias(proxy):
    client = openai.OpenAI(base_url=proxy + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["asr", "other", "whisper-1"]
    for path in EXAMPLES:
        expected = pipeline("automatic-speech-recognition", str(DEMO))(str(path))["text"]
        for name in ("asr", "whisper-1", "other"):
            with path.open("rb") as f:
                assert client.audio.transcriptions.create(file=f, model=name).text == expected
    health = httpx.get(proxy + "/health", timeout=10).json()
    assert health["status"] == "ok" and set(health["models"]) == {"asr", "other"}
    assert 'w2vbert_batch_windows_count{model="other"}' in httpx.get(proxy + "/metrics", timeout=10).text


def test_an_unknown_model_is_a_404_listing_the_models_through_ray_serve(proxy):
    answer = post(proxy, "/v1/audio/transcriptions", EXAMPLES[0].read_bytes(), model="whisper-2")
    assert_openai_error(answer, 404, "'whisper-2'", "asr", "other", "whisper-1 (for asr)")


def test_an_upload_over_the_limit_is_a_413_through_ray_serve_before_its_body_is_sent(proxy):
    # Ray Serve's proxy passes the request on at its headers and the replica pulls the body as it reads it, so the
    # replica's check of Content-Length answers while the client has sent none of its 101 MB (the limit is 100 MB).
    answer = headers_only(proxy, "/v1/audio/transcriptions", {"content-type": "multipart/form-data; boundary=x",
                                                              "content-length": str(101 * 2**20)})
    assert_openai_error(answer, 413, "100 MB")


def headers_only(url: str, path: str, headers: dict[str, str]) -> httpx.Response:
    """The answer to a POST of `path` at `url` whose headers are sent but not a byte of its body (h11 on a socket:
    httpx sends the whole body before it reads an answer)."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    client = h11.Connection(h11.CLIENT)
    with socket.create_connection((host, port), timeout=20) as connection:
        connection.sendall(client.send(h11.Request(method="POST", target=path,
                                                   headers=[("host", host), *headers.items()])))
        events: list = []
        while not events or not isinstance(events[-1], h11.EndOfMessage):
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(connection.recv(65536))  # a timeout here: no answer before the body
            else:
                events.append(event)
    start = events[0]
    body = b"".join(event.data for event in events if isinstance(event, h11.Data))
    return httpx.Response(start.status_code, headers=start.headers, content=body)


def test_a_replica_whose_model_does_not_load_fails_the_deployment_naming_the_model(proxy, tmp_path):
    settings = ServeSettings(model=str(DEMO), more_models=(f"broken={tmp_path}",))
    with pytest.raises(RuntimeError, match=r"the model 'broken' .* failed to load: FileNotFoundError"):
        ray_app.deploy(settings, ray_app.ReplicaOptions(replica_cpus=0.5, start_tries=1), "127.0.0.1",
                       httpx.URL(proxy).port, name="w2vbert-broken", route_prefix="/broken")
    serve.delete("w2vbert-broken")


def test_serve_run_builds_the_application_from_key_value_arguments_and_names_a_wrong_one():
    built = ray_app.app({"model": str(DEMO), "more_models": f"a={DEMO},b={DEMO}", "model_aliases": "whisper-1=a",
                         "max_wait_ms": "5", "min_replicas": "1", "max_replicas": "3", "replica_cpus": "0.5",
                         "vad": "false", "api_key": "none", "pin_cores": "true"})
    options = built._bound_deployment
    settings, threads, pin_cores = options.init_args
    assert settings.more_models == (f"a={DEMO}", f"b={DEMO}") and settings.names == ("demo-model", "a", "b",
                                                                                      "whisper-1")
    assert settings.max_wait_ms == 5.0 and settings.vad is None and settings.api_key is None and threads == 1
    assert pin_cores is True
    assert options._deployment_config.autoscaling_config.max_replicas == 3
    assert options.ray_actor_options["num_cpus"] == 0.5
    with pytest.raises(ValueError, match="unknown argument replicas=2: expected one of .*max_replicas"):
        ray_app.app({"model": str(DEMO), "replicas": "2"})
    with pytest.raises(ValueError, match="expected float for max_wait_ms, got 'soon'"):
        ray_app.app({"model": str(DEMO), "max_wait_ms": "soon"})
    with pytest.raises(ValueError, match="min_replicas <= max_replicas"):
        ray_app.app({"model": str(DEMO), "min_replicas": "3", "max_replicas": "2"})
