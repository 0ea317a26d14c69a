"""Audio in: decoding, the fbank front end, windows for long audio, voice activity, augmentation.

- `decode`: any file FFmpeg reads (through PyAV) or any array -> 16 kHz mono float32 (`load_audio`, `stream_audio`).
- `features`: `SeamlessM4TFeatureExtractor`, the 80-bin fbank of the original front end, stacked to 160, and its
  config files.
- `fbank`: the Kaldi fbank itself, batched in PyTorch: mel filters, log-mel frames, per-clip normalisation.
- `clips`: what the extractor accepts as audio -> one zero-padded (batch, samples) batch, with its checks.
- `windows`: long audio cut into overlapping windows whose kept frames tile the recording.
- `vad`: Silero voice activity (the `vad` extra): which windows hold speech.
- `augment`: training-time gain, noise and offset.

Imports only `w2vbert.loading` and `w2vbert.utils`.
"""
