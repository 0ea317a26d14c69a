"""`w2vbert serve`: OpenAI's audio API over HTTP, live transcription over a WebSocket, a web page.

- `app`: the FastAPI app and its settings. `batcher`: concurrent requests' windows batched on one model thread.
- `live`: live transcription of audio pushed as it arrives. `web/`: the page.
"""
