"""Running a model on audio: the pipelines, corpus runs over many files, Ray Data.

- `pipelines`: `pipeline(task, model=...)` for speech recognition, classification, frames, embeddings, x-vectors.
- `corpus`: a corpus through transcribe / embed / classify into Parquet shards, resumable, over torchrun ranks.
- `ray_data`: `W2vBertPredictor`, a callable class for `ray.data.Dataset.map_batches`.

Never imports training, serving, export or cli.
"""
