"""Text in and out: the CTC tokenizer, CTC decoding, forced alignment, time segments, output writers, the processor.

- `tokenizer`: `Wav2Vec2CTCTokenizer` and `build_vocab`.
- `decoding`: greedy and beam-search CTC decoding (flashlight-text for the LM).
- `alignment`: forced alignment of a known transcript, words and characters with times.
- `segments`: labelled time segments <-> the model's 20 ms frames.
- `writers`: txt, json, srt, vtt, tsv outputs.
- `processor`: `Wav2Vec2BertProcessor`, the feature extractor and the tokenizer as one.

Imports `w2vbert.audio` and `w2vbert.loading`, never the model.
"""
