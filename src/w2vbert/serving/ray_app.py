"""The server on Ray Serve (the `ray` extra): replicas of the same FastAPI app behind Ray Serve's one HTTP proxy.

Each replica (`W2vBertReplica`, a Ray actor) loads the models once and serves `create_app`'s app, so its routes,
limits and errors are `w2vbert serve`'s; requests that reach one replica are batched there by the project's own
`Batcher` (no second batcher: Ray Serve's `@serve.batch` is not used). Ray Serve routes each request to a replica,
adds or removes replicas on requests in flight when `min_replicas` < `max_replicas`, restarts a replica whose
health check fails, and on shutdown stops routing to a replica and gives its requests in flight the shutdown grace.
`w2vbert serve --ray` drains before that, as `app.DrainingServer` does: every replica answers new requests 503 with
Retry-After (and /health 503 "draining") until its requests in flight are done, and only then is the application
deleted, so that while requests finish, new ones get an answer to retry elsewhere rather than the proxy's 404.

In order: `ReplicaOptions` (how many replicas, and what each holds), `W2vBertReplica`, `application` (the
deployment bound to its settings), `app` (the builder `serve run w2vbert.serving.ray_app:app key=value...` calls),
`deploy` (the application running, or the reason it is not; `proxy_address`), `drain` (every replica draining,
until none has a request in flight) and `run` (what `w2vbert serve --ray` does: deploy, serve until SIGINT/SIGTERM,
drain, delete, and Ray Serve shut down with its proxy when no other application is left).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import signal
import sys
import threading
import time
import types
import typing
from dataclasses import dataclass
from typing import Any

from w2vbert.utils.extras import optional_import

serve = optional_import("ray.serve", "the server on Ray Serve (w2vbert serve --ray)")
ray = optional_import("ray", "the server on Ray Serve (w2vbert serve --ray)")

from w2vbert.audio.vad import VadOptions  # noqa: E402 - after the extra's check, so a missing Ray is one line
from w2vbert.serving.app import create_app  # noqa: E402
from w2vbert.serving.served import ServeSettings  # noqa: E402
from w2vbert.utils.cores import claim_cores  # noqa: E402

APP_NAME = "w2vbert"  # the application's name in Ray Serve (`serve status`, `serve delete w2vbert`)


@dataclass(frozen=True)
class ReplicaOptions:
    min_replicas: int = 1  # replicas always running
    max_replicas: int = 1  # above min_replicas: Ray Serve autoscales between them on requests in flight
    target_ongoing_requests: float = 2.0  # the requests in flight per replica autoscaling aims at
    replica_cpus: float = 1.0  # CPUs Ray reserves for each replica
    replica_gpus: float = 0.0  # GPUs Ray reserves for each replica (a fraction shares one GPU)
    threads: int = 1  # torch's threads in each replica (one per reserved CPU keeps replicas from competing)
    pin_cores: bool = False  # each replica pinned to `threads` cores of its machine no other replica holds
    shutdown_grace_s: float = 30.0  # how long a stopping replica's requests in flight may finish
    start_tries: int = 3  # starts of a replica (its models loading) that may fail before the deployment fails

    def __post_init__(self) -> None:
        if not 0 < self.min_replicas <= self.max_replicas:
            raise ValueError(f"expected 1 <= min_replicas <= max_replicas, got {self.min_replicas} and "
                             f"{self.max_replicas}")
        if (self.target_ongoing_requests <= 0 or self.replica_cpus < 0 or self.replica_gpus < 0 or self.threads < 1
                or self.start_tries < 1):
            raise ValueError("expected target_ongoing_requests > 0, replica_cpus >= 0, replica_gpus >= 0, threads "
                             f">= 1 and start_tries >= 1, got {self.target_ongoing_requests}, {self.replica_cpus}, "
                             f"{self.replica_gpus}, {self.threads} and {self.start_tries}")


@serve.deployment
@serve.ingress()
class W2vBertReplica:
    """One replica: the models of `settings` loaded once, served by `create_app`'s app. A model that fails to load
    fails the replica's start (the ModelLoadError naming it), and so the application's."""

    def __init__(self, settings: ServeSettings, threads: int, pin_cores: bool = False) -> None:
        import torch

        if pin_cores:  # before the model's threads start, so that they inherit the cores
            claim_cores(threads)
        torch.set_num_threads(threads)
        self.fastapi_app = create_app(settings)

    def __serve_build_asgi_app__(self) -> Any:
        return self.fastapi_app

    def check_health(self) -> None:
        """Ray Serve's health check: a replica whose model thread stopped is restarted."""
        stopped = [name for name, served in self.fastapi_app.state.server.models.items() if not served.batcher.running]
        if stopped:
            raise RuntimeError(f"the model thread of {', '.join(stopped)} has stopped")

    async def drain(self, grace_s: float) -> int:
        """This replica's part of `drain` (called on each replica by `DeploymentHandle.broadcast`): from now on new
        requests are answered 503 with Retry-After and /health 503 "draining"; returns once no request is in flight,
        or after `grace_s`, the requests still in flight. Async, so that it runs on the replica's event loop, where
        the app's requests count themselves."""
        state = self.fastapi_app.state.server
        state.draining = True
        return await state.idle(grace_s)


def application(settings: ServeSettings, replicas: ReplicaOptions) -> Any:
    """The deployment of `settings` with `replicas`, bound: what `serve.run` takes. A name given twice or an alias
    of no model is a ValueError here, before any replica starts."""
    settings.catalog  # noqa: B018 - the names checked before Ray starts anything
    if replicas.min_replicas == replicas.max_replicas:
        scaling: dict[str, Any] = {"num_replicas": replicas.min_replicas}
    else:
        scaling = {"autoscaling_config": {"min_replicas": replicas.min_replicas,
                                          "max_replicas": replicas.max_replicas,
                                          "target_ongoing_requests": replicas.target_ongoing_requests}}
    return W2vBertReplica.options(
        **scaling,
        # The replica's own bound answers 503 past max_queue; up to it, requests go to the replica and meet in its
        # batcher rather than waiting in Ray Serve's queue (whose default is 5 a replica).
        max_ongoing_requests=settings.max_queue,
        ray_actor_options={"num_cpus": replicas.replica_cpus, "num_gpus": replicas.replica_gpus},
        graceful_shutdown_timeout_s=replicas.shutdown_grace_s,
        # How often a stopping replica counts its requests in flight (Ray's default 2 s): after `drain` there are
        # none, and the command need not wait a whole period to see it.
        graceful_shutdown_wait_loop_s=0.2,
        max_constructor_retry_count=replicas.start_tries,
    ).bind(settings, replicas.threads, replicas.pin_cores)


def app(args: dict[str, str]) -> Any:
    """The application `serve run w2vbert.serving.ray_app:app model=DIR [key=value...]` builds: keys are the fields
    of ServeSettings and ReplicaOptions; the tuples (more_models, model_aliases, cors_origins) are comma-separated,
    `vad=true` turns on the default voice activity options."""
    values: dict[type, dict[str, Any]] = {ServeSettings: {}, ReplicaOptions: {}}
    for key, text in args.items():
        owner = next((kind for kind in values if key in {field.name for field in dataclasses.fields(kind)}), None)
        if owner is None:
            known = sorted(field.name for kind in values for field in dataclasses.fields(kind))
            raise ValueError(f"unknown argument {key}={text}: expected one of {', '.join(known)}")
        values[owner][key] = typed(typing.get_type_hints(owner)[key], key, text)
    if "model" not in values[ServeSettings]:
        raise ValueError("expected model=DIR (a model directory or hub repo id)")
    return application(ServeSettings(**values[ServeSettings]), ReplicaOptions(**values[ReplicaOptions]))


def typed(hint: Any, key: str, text: str) -> Any:
    """`text` as the type of the field `key` (`hint`): a number, a bool, comma-separated strings, or a string."""
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)  # `X | None`
    kind = next(kind for kind in typing.get_args(hint) if kind is not type(None)) if optional else hint
    if optional and text.lower() in ("", "none"):
        return None
    if kind is VadOptions:
        return VadOptions() if text.lower() in ("1", "true", "yes") else None
    if typing.get_origin(kind) is tuple:
        return tuple(part for part in text.split(",") if part)
    if kind is bool:
        return text.lower() in ("1", "true", "yes")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"expected {kind.__name__} for {key}, got {text!r}") from None


def deploy(
    settings: ServeSettings, replicas: ReplicaOptions, host: str, port: int, name: str = APP_NAME,
    route_prefix: str = "/",
) -> None:
    """The application running on the Ray cluster of $RAY_ADDRESS (none: the one Ray finds on this machine, or a
    local one started now), behind Ray Serve's proxy on host:port (a proxy running already keeps its address).
    Returns once every replica is up; a replica that fails to start (a model that does not load) is a RuntimeError
    with the reason, after Ray Serve's retries."""
    bound = application(settings, replicas)
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    listening = proxy_address()
    if listening is not None and listening != (host, port):  # Ray Serve keeps a running proxy's address
        raise RuntimeError(f"Ray Serve on this cluster already listens on {listening[0]}:{listening[1]}, not "
                           f"{host}:{port}: pass --host {listening[0]} --port {listening[1]}, or stop it first "
                           "(serve shutdown)")
    try:
        serve.run(bound, name=name, route_prefix=route_prefix)
    except Exception as error:  # noqa: BLE001 - Ray Serve's deployment failures: one line with the reason
        raise RuntimeError(f"the replicas of {', '.join(settings.sources)} did not start: "
                           f"{failure_reason(name, error)}") from error


def proxy_address() -> tuple[str, int] | None:
    """The host and port Ray Serve's proxy on this cluster listens on (None: Ray's client cannot say)."""
    try:  # a private part of Ray Serve (there since Ray 2.0): the controller's HTTP options
        config = serve.context._get_global_client().http_config
    except Exception:  # noqa: BLE001 - another Ray whose client does not offer it: not checked
        return None
    return str(config.host), int(config.port)


def drain(name: str, grace_s: float) -> int:
    """Every replica of the application `name` draining (`W2vBertReplica.drain`), until none has a request in flight
    or `grace_s` has passed; the requests still in flight then. The application stays deployed, so that the proxy
    keeps routing new requests to replicas that answer them 503 with Retry-After."""
    handle = serve.get_app_handle(name)
    # broadcast reaches the replicas running now; each answers within grace_s, the rest is Ray's own latency.
    return sum(handle.broadcast("drain", grace_s).results(timeout_s=grace_s + 10))


def run(settings: ServeSettings, replicas: ReplicaOptions, host: str, port: int) -> None:
    """`w2vbert serve --ray`: `deploy`, then serve until SIGINT or SIGTERM, then `drain` for at most the shutdown grace
    and delete the application (Ray Serve gives what is still in flight the grace again). Later signals are ignored:
    a process gone mid-drain would leave replicas that answer 503 for ever."""
    deploy(settings, replicas, host, port)
    print(f"w2vbert: serving {', '.join(settings.sources)} on http://{host}:{port} through Ray Serve "
          f"({replicas.min_replicas} to {replicas.max_replicas} replicas)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # in place of ray.init's SIGTERM handler, which exits at once
        signal.signal(sig, lambda number, frame: stop.set())
    while not stop.wait(0.5):  # a timed wait, so that the handlers run
        pass
    grace = replicas.shutdown_grace_s
    print(f"w2vbert: draining: new requests are answered 503; the requests in flight have {grace:g} s", flush=True)
    drained = in_background(drain, (APP_NAME, grace), grace + 10)
    if not drained.done():
        early = f"no answer from the replicas in {grace + 10:g} s"
    elif drained.exception():  # Ray's errors carry the replica's traceback: its last line says what happened
        early = (str(drained.exception()).strip().splitlines() or [type(drained.exception()).__name__])[-1]
    else:
        early = f"{drained.result()} requests still in flight" if drained.result() else ""
    if early:
        print(f"w2vbert: the drain ended early ({early}): deleting the replicas", file=sys.stderr, flush=True)
    # A local Ray started by this process shares its process group, so a Ctrl-C or a group's SIGTERM stops its
    # processes too, and the deletion would wait for them forever: it gets the grace and a little more.
    if not in_background(serve.delete, (APP_NAME,), grace + 10).done():
        print("w2vbert: Ray did not confirm the replicas' end (was the local Ray stopped by the same signal?)",
              file=sys.stderr, flush=True)
    elif not in_background(serve.status, (), 10).result(0).applications:  # nothing else served: the proxy goes
        in_background(serve.shutdown, (), 30)                               # too, with its port


def in_background(target: Any, args: tuple, timeout: float) -> concurrent.futures.Future:
    """The future of `target(*args)` run in a daemon thread, once it is done or `timeout` seconds have passed; waited
    for in short waits, so that the signal handlers run meanwhile."""
    future: concurrent.futures.Future = concurrent.futures.Future()

    def call() -> None:
        try:
            future.set_result(target(*args))
        except Exception as error:  # noqa: BLE001 - the caller reads it from the future
            future.set_exception(error)

    threading.Thread(target=call, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        concurrent.futures.wait([future], timeout=0.1)
    return future


def failure_reason(name: str, error: Exception) -> str:
    """Why the application `name` failed to deploy: the replica's error as Ray Serve's status keeps it (our
    ModelLoadError's line when a model did not load), else the exception's last line."""
    try:
        deployments = serve.status().applications[name].deployments.values()
        messages = "\n".join(deployment.message for deployment in deployments)
    except Exception:  # noqa: BLE001 - no status to read: the exception says what it can
        messages = ""
    for line in (messages + "\n" + str(error)).splitlines():
        if "ModelLoadError: " in line:
            return line.split("ModelLoadError: ", 1)[1].strip()
    lines = [line.strip() for line in (messages or str(error)).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
