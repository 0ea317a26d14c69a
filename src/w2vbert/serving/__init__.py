"""`w2vbert serve`: OpenAI's audio API over HTTP, live transcription over a WebSocket, a web page.

- `app`: `create_app(settings)`, the FastAPI app assembled from the modules below (its docstring lists the routes).
- `served`: `ServeSettings` (the models by name, their aliases) and `Served`, one model with its pipelines and
  batcher. `state`: `ServerState`, what every route of one app shares (settings, models, metrics, requests in
  flight) and the checks against it.
- `errors`: `ApiError` and the handlers that answer in OpenAI's error shape. `middleware`: CORS, then `Gate` (the
  API key, the body read whole within its limits, a place in flight, clients gone cancelled, accounting).
  `routes/`: one router per concern (audio uploads, the live stream, status, the page).
- `batcher`: concurrent requests' windows batched on one model thread, round robin over the requests (prepared and
  run by inference/engine.py; the requests waiting and which windows share a batch are its own).
- `live`: live transcription of audio pushed as it arrives (windows cut as it comes, run through the engine on the
  batcher). `web/`: the page.
- `ray_app`: replicas of the app on Ray Serve (`w2vbert serve --ray`, `serve run w2vbert.serving.ray_app:app`).
"""
