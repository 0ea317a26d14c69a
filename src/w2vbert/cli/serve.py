"""`w2vbert serve`: its arguments, the settings they make, and the listening socket handed to uvicorn.

The server (serving/, the `serve` extra, and torch) is imported when the command runs, so that `--help` answers
without it and a missing extra is one line (utils/extras.py).
"""

from __future__ import annotations

import argparse
import os
import socket

from w2vbert.cli.arguments import add_run_options, non_negative_float, non_negative_int, positive_float, positive_int


def configure(name: str, parser: argparse.ArgumentParser) -> None:
    """`w2vbert serve`'s arguments (cli.COMMANDS)."""
    parser.add_argument("-m", "--model", required=True, help="model directory or hub repo id")
    parser.add_argument("--model-id", help="the model's name in the API (default: the folder's name)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine "
                                                              "only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=non_negative_int, default=8000, help="default: 8000; 0: any free port")
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
    parser.add_argument("--max-audio-seconds", type=positive_float, default=3600.0)
    parser.add_argument("--request-timeout", type=positive_float, default=600.0, metavar="S")
    parser.add_argument("--max-queue", type=positive_int, default=64, help="requests in flight before 503")
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

    from w2vbert.serving.app import ServeSettings, create_app

    settings = ServeSettings(
        model=args.model, model_id=args.model_id, device=args.device, dtype=args.dtype, quantize=args.quantize,
        chunk_length_s=args.chunk_length, max_batch_seconds=args.max_batch_seconds, max_wait_ms=args.max_wait_ms,
        api_key=args.api_key, max_upload_mb=args.max_upload_mb, max_audio_seconds=args.max_audio_seconds,
        request_timeout_s=args.request_timeout, max_queue=args.max_queue, cors_origins=tuple(args.cors_origin),
        vad=VadOptions() if args.vad else None,
    )
    app = create_app(settings)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))  # here, so that --port 0 can say the port the system chose
    listener.listen(2048)  # connections from now on wait for uvicorn rather than being refused
    host, port = listener.getsockname()[:2]
    print(f"w2vbert: serving {settings.name} on http://{host if family == socket.AF_INET else f'[{host}]'}:{port}",
          flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30)
    uvicorn.Server(config).run(sockets=[listener])
    return 0
