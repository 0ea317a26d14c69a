"""`w2vbert serve --ray` as a command (issue 31): sent SIGTERM, it drains as `w2vbert serve` does (the request in flight
finishes, new ones get 503 with Retry-After, /health says "draining"), then deletes its application, shuts Ray
Serve down when nothing else is served, and exits; and it refuses a --port other than that of a proxy running
already.

A module of its own: the command starts Ray Serve's proxy on its own port with its application at /, which needs a
cluster where test_ray_serve.py's proxy is not running (pytest shuts that one down when it leaves that module).
Ray is the cluster of $RAY_ADDRESS (CI starts one), or one the command finds on this machine or starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from test_bulk import free_port
from test_server import DEMO
from test_server_models import assert_sigterm_drains

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")


@pytest.fixture
def no_proxy_left():
    """Ray Serve's proxy shut down after the test, should the command have left it (it shuts Ray Serve down when
    its application was the only one): a later `serve.start` on that cluster would keep its port."""
    yield
    started = not ray.is_initialized()
    try:
        if started:
            ray.init(address=os.environ.get("RAY_ADDRESS") or "auto", log_to_driver=False)
    except ConnectionError:
        return  # the command's own local Ray, gone with it
    serve.shutdown()
    if started:
        ray.shutdown()


def test_on_sigterm_ray_replicas_finish_the_request_in_flight_while_new_ones_get_503_then_the_command_exits(
        no_proxy_left):
    port = free_port()
    # The request held in flight waits 5 s in the replica's batcher: time for the signal to reach every replica.
    command = [sys.executable, "-m", "w2vbert", "serve", "--ray", "-m", str(DEMO), "--port", str(port),
               "--max-wait-ms", "5000", "--shutdown-grace", "20"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for line in process.stdout:  # Ray's own log lines come first
            if line.startswith("w2vbert: serving"):
                break
        else:
            pytest.fail(f"w2vbert serve --ray ended before serving: {process.wait(30)}")
        url = f"http://127.0.0.1:{port}"
        assert_sigterm_drains(process, url)
        signalled = time.monotonic()
        assert process.wait(30) == 0
        assert time.monotonic() - signalled < 15  # it stopped once nothing was in flight, not after the 20 s grace
        with pytest.raises(httpx.ConnectError):  # nothing else was served: Ray Serve went too, with its port
            httpx.get(url + "/health", timeout=10)
        output = process.stdout.read()
        assert "w2vbert: draining" in output and "ended early" not in output, output
    finally:
        process.kill()


def test_a_port_other_than_the_running_proxys_is_refused_naming_the_one_it_listens_on(no_proxy_left):
    ray.init(address=os.environ.get("RAY_ADDRESS") or "local", log_to_driver=False, include_dashboard=False)
    running, other = free_port(), free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": running})
    done = subprocess.run([sys.executable, "-m", "w2vbert", "serve", "--ray", "-m", str(DEMO), "--port", str(other)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"already listens on 127.0.0.1:{running}, not 127.0.0.1:{other}" in done.stderr.splitlines()[-1]
