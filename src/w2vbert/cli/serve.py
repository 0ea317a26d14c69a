"""`w2vbert serve`: its arguments, the settings they make, and the listening socket handed to uvicorn.

The server (serving/, the `serve` extra, and torch) is imported when the command runs, so that `--help` answers
without it and a missing extra is one line (utils/extras.py).
"""

from __future__ import annotations

import argparse
import os
import socket

from w2vbert.cli.arguments import UsageError, add_run_options, non_negative_float, positive_float, positive_int


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 0 to 65535, got {value}")
    return value


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """`w2vbert serve`'s arguments (cli.COMMANDS)."""
    parser.add_argument("-m", "--model", required=True, help="model directory or hub repo id")
    parser.add_argument("--model-id", help="the model's name in the API (default: the folder's name)")
    parser.add_argument("--model-alias", action="append", default=[], metavar="NAME",
                        help="another name requests may give, e.g. whisper-1 for apps that hard-code it (repeatable)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine "
                                                              "only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=port_number, default=8000, help="default: 8000; 0: any free port")
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
    parser.add_argument("--vad", action="store_true",
                        help="transcriptions skip non-speech before the model (Silero VAD, the vad extra: pip "
                             "install 'w2vbert[vad]', or '.[vad]' in a clone); live streams run every sample")
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from w2vbert.audio.vad import VadOptions
    from w2vbert.utils.extras import require_extra

    require_extra("serve", "w2vbert serve")
    import uvicorn

    from w2vbert.serving.app import ServeSettings, create_app, uvicorn_config

    listener = listen(args.host, args.port)  # an address that cannot be served is said before the model loads
    settings = ServeSettings(
        model=args.model, model_id=args.model_id, model_aliases=tuple(args.model_alias), device=args.device,
        dtype=args.dtype, quantize=args.quantize, chunk_length_s=args.chunk_length,
        max_batch_seconds=args.max_batch_seconds, max_wait_ms=args.max_wait_ms, api_key=args.api_key,
        max_upload_mb=args.max_upload_mb, body_timeout_s=args.body_timeout, max_audio_seconds=args.max_audio_seconds,
        max_response_mb=args.max_response_mb, request_timeout_s=args.request_timeout, max_queue=args.max_queue,
        cors_origins=tuple(args.cors_origin), vad=VadOptions() if args.vad else None,
    )
    with listener:
        app = create_app(settings)
        listener.listen(2048)  # connections from now on wait for uvicorn rather than being refused
        host, port = listener.getsockname()[:2]
        shown = host if listener.family == socket.AF_INET else f"[{host}]"
        print(f"w2vbert: serving {settings.name} on http://{shown}:{port}", flush=True)
        config = uvicorn_config(app, timeout_graceful_shutdown=args.shutdown_grace)
        uvicorn.Server(config).run(sockets=[listener])
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port), before the model loads: here, so that --port 0 can say the port the system
    chose, and a host or port that cannot be served is a usage error at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise UsageError(f"cannot listen on --host {host} --port {port}: {error.strerror or error}") from None
    return listener
