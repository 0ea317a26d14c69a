"""What training and inference share about a corpus: manifests, batches by length, speaker-verification trials.

- `manifest`: CSV / TSV / JSON-lines manifests of recordings, read with "file:line" for every row.
- `sampler`: `LengthGroupedBatchSampler`, batches capped by padded seconds of audio.
- `verification`: trials, cosine scores, equal error rate and minDCF.
"""
