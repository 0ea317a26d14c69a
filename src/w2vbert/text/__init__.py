"""Text in and out: the CTC tokenizer, CTC decoding, forced alignment, time segments, output writers, the processor.

- `tokenizer`: `Wav2Vec2CTCTokenizer`: text <-> CTC label ids, with the calls, padding, decoding and files of the
  transformers class, built on `tokens`.
- `tokens`: `CtcTokens`, what the tokens are (vocabulary, added and special tokens, `target_lang`) and text <->
  tokens <-> ids; `added` keeps the added tokens (`AddedTokens`), `special` the special-token attributes.
- `prepare`: transformers' rules for padding, truncation and text pairs, from texts to the output columns.
- `ctc_text`: CTC tokens -> text with character and word offsets (`Wav2Vec2CTCTokenizerOutput`).
- `vocab`: the vocabulary and the tokenizer's files (`build_vocab`, `checked_vocab`, `read_tokenizer_files`,
  `write_tokenizer_files`).
- `encoding`: label ids in batches (`LABEL_PAD`, `pad_labels`, `BatchEncoding`), their padding and checks.
- `decoding`: greedy and beam-search CTC decoding (flashlight-text for the LM).
- `alignment`: forced alignment of a known transcript, words and characters with times.
- `segments`: labelled time segments <-> the model's 20 ms frames.
- `writers`: txt, json, srt, vtt, tsv outputs.
- `processor`: `Wav2Vec2BertProcessor`, the feature extractor and the tokenizer as one.
- `processor_kwargs`: the keywords the processor's call takes and which part each reaches (transformers' routing).

Imports `w2vbert.audio`, `w2vbert.loading` and `w2vbert.utils`, never the model.
"""
