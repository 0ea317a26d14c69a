"""The server's routes, one FastAPI router per concern; each reads the app's `ServerState` (serving/state.py).

- `audio`: POST /v1/audio/transcriptions, /v1/audio/classifications, /v1/audio/embeddings (multipart uploads).
- `stream`: WS /v1/audio/stream, live transcription.
- `status`: GET /v1/models, /health, /metrics. `page`: GET /, the web page.
"""
