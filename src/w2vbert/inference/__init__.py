"""Running a model on audio: one engine, the task pipelines, corpus runs over many files, Ray Data.

- `engine`: the one inference loop (audio blocks -> windows -> features computed and checked -> batches -> the
  model -> frames kept per recording -> the result) and `Pipeline`, the base whose hooks it calls. The pipelines,
  corpus runs, the server's batcher and live transcription all feed it.
- `pipelines`: `pipeline(task, model=...)` and the six task pipelines: speech recognition, classification,
  frames, embeddings, x-vectors, speech units.
- `corpus`: a corpus through transcribe / embed / classify into Parquet shards, resumable, over torchrun ranks (the
  run loop); `corpus_settings`: its inputs and settings; `corpus_files`: its output directory.
- `units`: `units fit`'s work: a corpus run that samples one layer's frames, then k-means, saved as a codebook
  (`units extract` is a corpus run of the speech-units pipeline).
- `ray_data`: `W2vBertPredictor`, a callable class for `ray.data.Dataset.map_batches`.
- `streaming`: `StreamingTranscription`, a chunked model's transcription chunk by chunk with cached state (settled
  words as each chunk completes), shared by `transcribe --streaming` and the live WebSocket.

Never imports training, serving, export or cli.
"""
