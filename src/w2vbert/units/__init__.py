"""Speech units: discrete tokens from one layer's frames, as HuBERT's k-means units (and the "semantic" tokens of
TTS and speech-LM builders) are made. Knows nothing of models or audio: frames in, unit ids out.

- `names`: the defaults and choices the command line shows (torch-free, like every `names` module).
- `sampling`: which frames of a corpus go into the k-means sample, decided per frame by a hash of (file id, frame
  index, seed), so that any sharding over processes draws the same sample.
- `kmeans`: k-means in torch (k-means++ initialisation, Lloyd or mini-batch iterations, restarts), distances
  computed a bounded block at a time, on CPU or GPU.
- `codebook`: `Codebook` (centroids, the normalisation, a card of where they came from), saved as safetensors
  with a JSON card; `load_codebook` reads those and the `.npy` centroids other tools ship, and refuses pickles;
  `run_lengths`, the run-length form of a unit sequence.
- `quality`: how well units follow frame labels (HuBERT's phone and cluster purity, PNMI) and their bit rate.

Imports only torch, numpy, safetensors and `w2vbert.utils` (its import-linter layer is just above `loading`, below
audio and the model); `inference` builds on it: the `speech-units` pipeline, and the corpus runs of `units fit`
and `units extract`.
"""
