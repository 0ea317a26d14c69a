"""Streaming transcription with a chunked model: audio blocks in, settled words out as each chunk completes.

`StreamingTranscription` chains the three streaming parts: the feature stream (audio/features.py's
`FeatureStream`, fixed statistics), the cached encoder and CTC head (model/streaming.py's `StreamingEncoder`), and
greedy CTC over the frames settled so far. A chunk's frames never change once it is complete, so the text of the
settled frames only grows: its words that a word delimiter, or a pause (PAUSE_S of blank frames after the last
letter, read as a delimiter), closes are final (`Update.final`); the chunk still filling gives the partial text
(`partial`). Without the pause rule a word before a silence waited for the next word: CTC models often emit the
delimiter only where the next word starts. Its result does not depend on how the audio is cut
into blocks, so `w2vbert transcribe --streaming` on a file gives the live WebSocket's text
(serving/live.py; tests/test_streaming.py).

In order: `settled_words`, `Update`, `StreamingTranscription`, `is_chunked`, `transcribe_streaming` (a file).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from w2vbert.audio.decode import stream_audio
from w2vbert.inference.pipelines import AutomaticSpeechRecognitionPipeline
from w2vbert.model.chunking import chunking_of
from w2vbert.model.streaming import StreamingEncoder

PAUSE_S = 0.2  # blank frames after a word's last letter that end the word (well above a pause inside a word)


def settled_words(text: str, closed: bool) -> str:
    """The words of `text` later frames cannot change, each with its trailing space: all of them when the last is
    `closed` (a word delimiter followed it), else all but the last (more letters may still come)."""
    words = text.split()
    return "".join(word + " " for word in (words if closed else words[:-1]))


@dataclass(frozen=True)
class Update:
    """What one block of audio changed."""

    final: str  # words newly settled, each with its trailing space ("" when none)
    committed: str  # every settled word so far


class StreamingTranscription:
    """One stream through a chunked CTC model: `feed` audio (16 kHz mono float32, any block size), `partial` for
    the text including the chunk not yet complete, `finish` for the transcript."""

    def __init__(self, pipe: AutomaticSpeechRecognitionPipeline) -> None:
        if pipe.decoder is not None:
            raise ValueError("streaming transcription decodes greedily: leave out the beam search decoder")
        self.tokenizer = pipe.tokenizer
        self.encoder = StreamingEncoder(pipe.model)  # refuses a full-context model, with the reason
        self.features = pipe.feature_extractor.stream()  # refuses per-clip statistics, with the reason
        self.device = next(pipe.model.parameters()).device
        self.pause_frames = max(1, round(PAUSE_S * pipe.feature_extractor.sampling_rate / pipe.frame_samples()))
        self.ids: list[int] = []  # greedy CTC ids of the settled frames
        self.committed = ""
        self.samples = 0

    @property
    def seconds(self) -> float:
        return self.samples / self.features.extractor.sampling_rate

    @torch.no_grad()
    def feed(self, audio: np.ndarray) -> Update:
        """Audio in; the words it settled."""
        self.samples += len(audio)
        steps = self.features.feed(audio)
        if steps.shape[0]:
            self.ids += self.encoder.feed(steps.to(self.device)).argmax(-1).tolist()
        closed = self._closed(self.ids)
        if not closed and self._paused(self.ids):
            self.ids.append(self.tokenizer.word_delimiter_token_id)  # the pause ends the word, in the text too
            closed = True
        now = settled_words(self._text(self.ids), closed)
        if not now.startswith(self.committed) or len(now) <= len(self.committed):
            return Update("", self.committed)
        delta, self.committed = now[len(self.committed):], now
        return Update(delta, now)

    @torch.no_grad()
    def partial(self) -> str:
        """All the text so far, with the chunk still filling decoded as if the stream ended now."""
        return self._text(self.ids + self.encoder.peek().argmax(-1).tolist())

    @torch.no_grad()
    def finish(self) -> str:
        """The stream ends mid-chunk or not: the last chunk runs, and the transcript of every frame is returned (the
        settled words, then the rest)."""
        self.features.flush()
        self.ids += self.encoder.flush().argmax(-1).tolist()
        return self._text(self.ids)

    def _text(self, ids: list[int]) -> str:
        """Greedy CTC text of `ids`, words separated by one space (two delimiters around a blank make two)."""
        return " ".join(self.tokenizer.decode(ids).split())

    def _paused(self, ids: list[int]) -> bool:
        """Whether the settled frames end with a letter followed by at least `pause_frames` blanks."""
        blank = self.tokenizer.pad_token_id
        blanks = next((count for count, token in enumerate(reversed(ids)) if token != blank), len(ids))
        return blanks < len(ids) and blanks >= self.pause_frames  # blanks < len: a letter comes before them

    def _closed(self, ids: list[int]) -> bool:
        """Whether the last letter of the settled frames is followed by a word delimiter."""
        blank, delimiter = self.tokenizer.pad_token_id, self.tokenizer.word_delimiter_token_id
        spoken = [i for i in ids if i != blank]
        return bool(spoken) and spoken[-1] == delimiter


def is_chunked(pipe: AutomaticSpeechRecognitionPipeline) -> bool:
    """Whether the pipeline's model was trained to stream (a chunked config)."""
    return chunking_of(pipe.model.config) is not None


def transcribe_streaming(pipe: AutomaticSpeechRecognitionPipeline, source: str, block_s: float = 0.25) -> str:
    """A file's transcript through the streaming path: its audio read in blocks of `block_s`, as the live
    WebSocket receives it (the text does not depend on the block size)."""
    stream = StreamingTranscription(pipe)
    for block in stream_audio(source, block_s):
        stream.feed(block)
    return stream.finish()
