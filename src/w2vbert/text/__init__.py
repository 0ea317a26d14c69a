"""Text in and out: the CTC tokenizer, CTC decoding, forced alignment, time segments, output writers, the processor.

- `tokenizer`: `Wav2Vec2CTCTokenizer`: text <-> CTC label ids, as the transformers class.
- `vocab`: the vocabulary and the tokenizer's files (`build_vocab`, `checked_vocab`, `read_tokenizer_files`).
- `encoding`: label ids in batches (`LABEL_PAD`, `pad_labels`, `BatchEncoding`), their padding and checks, and the
  text helpers of `decode` (word offsets, clean-up of spaces).
- `decoding`: greedy and beam-search CTC decoding (flashlight-text for the LM).
- `alignment`: forced alignment of a known transcript, words and characters with times.
- `segments`: labelled time segments <-> the model's 20 ms frames.
- `writers`: txt, json, srt, vtt, tsv outputs.
- `processor`: `Wav2Vec2BertProcessor`, the feature extractor and the tokenizer as one.
- `processor_kwargs`: the keywords the processor's call takes and which part each reaches (transformers' routing).

Imports `w2vbert.audio`, `w2vbert.loading` and `w2vbert.utils`, never the model.
"""
