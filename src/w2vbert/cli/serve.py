"""`w2vbert serve`: its arguments, the settings they make, and the listening socket handed to uvicorn (or, with
`--ray`, the replicas handed to Ray Serve: serving/ray_app.py).

The server (serving/, the `serve` extra, and torch) is imported when the command runs, so that `--help` answers
without it and a missing extra is one line (utils/extras.py).
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import TYPE_CHECKING

from w2vbert.cli.arguments import (
    UsageError,
    add_run_options,
    add_vad_option,
    non_negative_float,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from w2vbert.serving.served import ServeSettings


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 0 to 65535, got {value}")
    return value


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """`w2vbert serve`'s arguments (cli.COMMANDS)."""
    parser.add_argument("-m", "--model", required=True, action="append", metavar="[NAME=]DIR",
                        help="model directory or hub repo id, named NAME in the API (default: its folder's name); "
                             "repeat for several models, which requests pick by their `model` field (the first "
                             "when they name none)")
    parser.add_argument("--model-id", help="the first model's name in the API (default: NAME, or the folder's name)")
    parser.add_argument("--model-alias", action="append", default=[], metavar="ALIAS=NAME",
                        help="another name requests may give for the model NAME, e.g. whisper-1=asr for apps that "
                             "hard-code it (repeatable; a plain ALIAS names the model when only one is served)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine "
                                                              "only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=port_number, default=8000, help="default: 8000; 0: any free port")
    parser.add_argument("--reuse-port", action="store_true",
                        help="let several w2vbert serve processes listen on this one port, the system spreading "
                             "connections over them (Linux SO_REUSEPORT): one process per core on one machine")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch threads of the model (default: 1 in each Ray replica, torch's default otherwise; "
                             "give 1 to each of several --reuse-port processes)")
    parser.add_argument("--pin-cores", action="store_true",
                        help="keep this server (each Ray replica) on --threads cores (default 1) of the machine that "
                             "no other pinned w2vbert server holds: one core each for several --reuse-port processes")
    add_run_options(parser, progress=False)  # a server has no end to show progress towards
    parser.add_argument("--quantize", choices=["int8"], default=None)
    parser.add_argument("--chunk-length", type=positive_float, default=None, metavar="S",
                        help="window length for long audio (default: 30 s windows past 30 s)")
    parser.add_argument("--max-batch-seconds", type=positive_float, default=None,
                        help="padded audio per model batch (default: 160 on a GPU, 30 on a CPU)")
    parser.add_argument("--max-wait-ms", type=non_negative_float, default=10.0,
                        help="how long a request waits for others to share its batch (default: 10)")
    parser.add_argument("--api-key", default=os.environ.get("W2VBERT_API_KEY"),
                        help="require 'Authorization: Bearer KEY' (default: $W2VBERT_API_KEY; none: open)")
    parser.add_argument("--max-upload-mb", type=positive_float, default=100.0)
    parser.add_argument("--body-timeout", type=positive_float, default=30.0, metavar="S",
                        help="a request body must arrive whole within this (default: 30; later: 408)")
    parser.add_argument("--max-response-mb", type=positive_float, default=100.0,
                        help="per-frame embeddings that would answer more are refused (default: 100)")
    parser.add_argument("--max-audio-seconds", type=positive_float, default=3600.0)
    parser.add_argument("--request-timeout", type=positive_float, default=600.0, metavar="S")
    parser.add_argument("--max-queue", type=positive_int, default=64, help="requests in flight before 503")
    parser.add_argument("--shutdown-grace", type=non_negative_float, default=30.0, metavar="S",
                        help="on SIGTERM, how long requests in flight may finish before the rest get 503 (default: 30)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow browser calls from this origin (repeatable; default: none)")
    add_vad_option(parser, "for transcriptions: live streams run every sample")
    ray = parser.add_argument_group("replicas on Ray Serve (the ray extra: pip install 'w2vbert[ray]'; the Ray "
                                    "cluster of $RAY_ADDRESS, or a local one)")
    ray.add_argument("--ray", action="store_true", help="serve through Ray Serve's proxy on --host/--port, "
                     "with replicas of the server as Ray actors")
    ray.add_argument("--min-replicas", type=positive_int, default=1, help="replicas always running (default: 1)")
    ray.add_argument("--max-replicas", type=positive_int, default=None,
                     help="above --min-replicas: autoscale up to this many on requests in flight (default: the min)")
    ray.add_argument("--target-ongoing-requests", type=positive_float, default=2.0,
                     help="requests in flight per replica that autoscaling aims at (default: 2)")
    ray.add_argument("--replica-cpus", type=non_negative_float, default=1.0, help="CPUs per replica (default: 1)")
    ray.add_argument("--replica-gpus", type=non_negative_float, default=0.0,
                     help="GPUs per replica, a fraction shares one (default: 0)")
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from w2vbert.utils.extras import require_extra

    require_extra("serve", "w2vbert serve")
    if args.ray and args.port == 0:
        raise UsageError("--ray needs a fixed --port: Ray Serve's proxy does not say which free port it took")
    if args.max_replicas is not None and args.max_replicas < args.min_replicas:
        raise UsageError(f"--max-replicas {args.max_replicas} is below --min-replicas {args.min_replicas}")
    settings = serve_settings(args)
    if args.ray:
        from w2vbert.serving.ray_app import ReplicaOptions, run  # a missing ray.serve: one line naming the extra

        replicas = ReplicaOptions(
            min_replicas=args.min_replicas, max_replicas=args.max_replicas or args.min_replicas,
            target_ongoing_requests=args.target_ongoing_requests, replica_cpus=args.replica_cpus,
            replica_gpus=args.replica_gpus, threads=args.threads or 1, pin_cores=args.pin_cores,
            shutdown_grace_s=args.shutdown_grace)
        run(settings, replicas, args.host, args.port)
        return 0
    import torch

    from w2vbert.serving.app import DrainingServer, create_app, uvicorn_config

    if args.pin_cores:  # before torch starts its threads, so that they inherit the cores
        from w2vbert.utils.cores import claim_cores

        try:
            claim_cores(args.threads or 1)
        except RuntimeError as error:
            raise UsageError(f"--pin-cores: {error}") from None
        args.threads = args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)

    # An address that cannot be served is said before the model loads.
    listener = listen(args.host, args.port, args.reuse_port)
    with listener:
        app = create_app(settings)
        listener.listen(2048)  # connections from now on wait for uvicorn rather than being refused
        host, port = listener.getsockname()[:2]
        shown = host if listener.family == socket.AF_INET else f"[{host}]"
        print(f"w2vbert: serving {', '.join(settings.sources)} on http://{shown}:{port}", flush=True)
        config = uvicorn_config(app, timeout_graceful_shutdown=args.shutdown_grace)
        DrainingServer(config, app.state.server).run(sockets=[listener])
    return 0


def serve_settings(args: argparse.Namespace) -> ServeSettings:
    """The settings the arguments ask for; names that clash or aliases of no model are a UsageError."""
    from w2vbert.audio.vad import VadOptions
    from w2vbert.serving.served import ServeSettings, model_spec

    name, model = model_spec(args.model[0])
    settings = ServeSettings(
        model=model, model_id=args.model_id or name, more_models=tuple(args.model[1:]),
        model_aliases=tuple(args.model_alias), device=args.device,
        dtype=args.dtype, quantize=args.quantize, chunk_length_s=args.chunk_length,
        max_batch_seconds=args.max_batch_seconds, max_wait_ms=args.max_wait_ms, api_key=args.api_key,
        max_upload_mb=args.max_upload_mb, body_timeout_s=args.body_timeout, max_audio_seconds=args.max_audio_seconds,
        max_response_mb=args.max_response_mb, request_timeout_s=args.request_timeout, max_queue=args.max_queue,
        cors_origins=tuple(args.cors_origin), vad=VadOptions() if args.vad else None,
    )
    try:
        settings.catalog  # noqa: B018 - every name checked before anything loads
    except ValueError as error:
        raise UsageError(f"{error} (-m NAME=DIR, --model-alias ALIAS=NAME)") from None
    return settings


def listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A socket bound to (host, port), before the model loads: here, so that --port 0 can say the port the system
    chose, and a host or port that cannot be served is a usage error at once. `reuse_port`: other processes may
    bind the same port (SO_REUSEPORT), and the system spreads new connections over those listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        if not hasattr(socket, "SO_REUSEPORT"):
            listener.close()
            raise UsageError("--reuse-port needs SO_REUSEPORT, which this system does not have")
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise UsageError(f"cannot listen on --host {host} --port {port}: {error.strerror or error}") from None
    return listener
