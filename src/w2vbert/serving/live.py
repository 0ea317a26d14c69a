"""Live transcription: audio pushed as it arrives, partial text re-decoded as it grows, settled text that never
changes, and at the end the transcript the same audio gives as a file.

The stream is cut into the pipeline's own long-audio windows (audio/windows.py's `WindowCutter`): a window runs
once the audio reaches past its end, exactly as when the file is transcribed, so its kept frames are final. The
window still growing (from the last final window's start to now) is re-decoded every `partial_every_s` of new
audio, with the final frames before it, for the partial text. Each window goes through the inference engine as a
file's windows do (features computed and checked, inference/engine.py; run on the server's `Batcher`): what is
live's own is when windows are cut and which frames each text is read from.

Settled text is what the final frames fix: every word of their transcript except the last, which later audio may
still extend (greedy CTC over a prefix of the frames spells a prefix of the whole text, so those words stay). At
the end the last windows run and the transcript is the one of the whole frame sequence: the file's.

Messages (JSON, server to client), in the order they come:
    {"type": "partial", "text": all the text so far, "committed": the settled part, "audio_seconds": s}
    {"type": "final", "text": words newly settled (with their trailing space), "committed": all settled text}
    {"type": "done", "text": the transcript, "duration": s}
The "final" texts concatenated, then the "done" text's remainder, give the "done" text.

A chunked model (fine-tuned with --streaming) streams instead (`ChunkedLiveTranscript`): each chunk runs once,
through the encoder's caches (inference/streaming.py), so a word is "final" as soon as the chunk holding its end
(and the delimiter after it) is complete, one chunk after its audio rather than one 30 s window; "partial"
messages decode the chunk still filling. Same messages, same rule for the "done" text.

In order: the settled-text rule, PCM and encoded input, the live transcript, the chunked live transcript.
"""

from __future__ import annotations

import asyncio
import io
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import soxr

from w2vbert.audio.decode import SAMPLING_RATE, stream_audio
from w2vbert.audio.windows import Window, WindowCutter
from w2vbert.inference.engine import ReadyWindow, Recording, featured_windows
from w2vbert.inference.pipelines import AutomaticSpeechRecognitionPipeline
from w2vbert.inference.streaming import StreamingTranscription, is_chunked
from w2vbert.serving.batcher import Batcher, TooLong

PARTIAL_EVERY_S = 0.5  # new audio between two partial decodes: partials at least twice a second of speech
ENCODED_BLOCK_S = 0.25  # FFmpeg-decoded audio is handed on in blocks of this length


def settled(text: str) -> str:
    """The words of `text` that more audio cannot change: all but the last, each with its trailing space."""
    words = text.split()
    return "".join(word + " " for word in words[:-1])


# ------------------------------------------------------------------------------------------------ input
class Pcm16:
    """16-bit little-endian PCM bytes at `sampling_rate` -> float32 blocks at 16 kHz; an odd trailing byte waits
    for the next message, and a resampler keeps its state across messages."""

    def __init__(self, sampling_rate: int = SAMPLING_RATE) -> None:
        if not 1000 <= sampling_rate <= 384_000:
            raise ValueError(f"expected a sample_rate between 1000 and 384000 Hz, got {sampling_rate}")
        self.carry = b""
        self.resampler = (None if sampling_rate == SAMPLING_RATE else
                          soxr.ResampleStream(sampling_rate, SAMPLING_RATE, 1, dtype="float32", quality="HQ"))

    def decode(self, data: bytes, last: bool = False) -> np.ndarray:
        data = self.carry + data
        whole = len(data) - len(data) % 2
        self.carry = data[whole:]
        audio = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0
        if self.resampler is not None:
            audio = self.resampler.resample_chunk(audio, last=last)
        return audio

    def close(self) -> None:
        pass


class _ByteQueue(io.RawIOBase):
    """A readable file whose bytes arrive from another thread (`feed`); `read` waits for them; `close_input`
    marks the end."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue()
        self.rest = b""
        self.ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.rest and not self.ended:
            chunk = self.chunks.get()
            if chunk is None:
                self.ended = True
            else:
                self.rest = chunk
        count = min(len(buffer), len(self.rest))
        buffer[:count] = self.rest[:count]
        self.rest = self.rest[count:]
        return count


class Encoded:
    """Bytes of an audio file in any format FFmpeg reads, arriving in pieces -> float32 blocks at 16 kHz, decoded
    by a thread as the bytes come (after FFmpeg has read enough of them to know the format). The thread stops
    past `max_seconds` of audio; `close` ends it whatever state the stream is in."""

    def __init__(self, max_seconds: float | None = None) -> None:
        self.input = _ByteQueue()
        self.blocks: queue.Queue[np.ndarray | Exception | None] = queue.Queue()
        self.max_samples = None if max_seconds is None else int(max_seconds * SAMPLING_RATE)
        self.thread = threading.Thread(target=self._decode, name="w2vbert-live-decoder", daemon=True)
        self.thread.start()

    def _decode(self) -> None:
        decoded = 0
        try:
            for block in stream_audio(io.BufferedReader(self.input), ENCODED_BLOCK_S):
                decoded += len(block)
                if self.max_samples is not None and decoded > self.max_samples:
                    raise TooLong.past(self.max_samples / SAMPLING_RATE, "the stream")
                self.blocks.put(block)
            self.blocks.put(None)
        except Exception as error:  # noqa: BLE001 - handed to the stream's reader
            self.blocks.put(error)
        finally:
            self.input.ended = True  # no more reads: pieces still arriving are dropped

    def decode(self, data: bytes, last: bool = False) -> np.ndarray:
        """The audio decoded so far that was not handed out yet; `last` waits for the decoder to finish (call it
        from a worker thread)."""
        if data and not self.input.ended:
            self.input.chunks.put(bytes(data))
        if last:
            self.input.chunks.put(None)
            self.thread.join()
        return np.concatenate([np.zeros(0, np.float32), *self._ready()])

    def close(self) -> None:
        self.input.chunks.put(None)

    def _ready(self) -> Iterator[np.ndarray]:
        while True:
            try:
                block = self.blocks.get_nowait()
            except queue.Empty:
                return
            if isinstance(block, TooLong):
                raise block
            if isinstance(block, Exception):
                raise ValueError(f"the stream's audio cannot be decoded: {block}") from block
            if block is not None:
                yield block


# ------------------------------------------------------------------------------------------ the transcript
class LiveTranscript:
    """One stream: `feed` audio as it arrives and `finish` at its end; each yields the messages to send."""

    def __init__(
        self, pipe: AutomaticSpeechRecognitionPipeline, batcher: Batcher, name: str = "<stream>",
        partial_every_s: float = PARTIAL_EVERY_S,
    ) -> None:
        self.pipe = pipe
        self.batcher = batcher
        self.cutter = WindowCutter(pipe.default_plan())
        self.recording = Recording(name)  # the final windows' frames: the file's, so far
        self.committed = ""
        self.partial_every = int(partial_every_s * SAMPLING_RATE)
        self.last_partial = 0  # samples pushed when the last partial was decoded

    @property
    def seconds(self) -> float:
        return self.cutter.samples / SAMPLING_RATE

    async def feed(self, audio: np.ndarray) -> AsyncIterator[dict[str, Any]]:
        for window in self.cutter.push(audio):
            message = await self._final(window)
            if message is not None:
                yield message
        if self.cutter.samples - self.last_partial >= self.partial_every:
            self.last_partial = self.cutter.samples
            pending = self.cutter.pending()
            if pending is not None:
                yield await self._partial(pending)

    async def finish(self) -> AsyncIterator[dict[str, Any]]:
        text = self.committed
        for window in self.cutter.end():
            await self._final(window, announce=False)
        if self.recording.pieces or self.recording.error is not None:
            text = await self._decode(self.recording, [])
        if not text.startswith(self.committed):  # cannot happen with greedy CTC; said rather than hidden
            raise RuntimeError("the transcript does not continue the settled text")
        if len(text) > len(self.committed):
            yield {"type": "final", "text": text[len(self.committed):], "committed": text}
            self.committed = text
        yield {"type": "done", "text": text, "duration": round(self.seconds, 3)}

    async def _final(self, window: Window, announce: bool = True) -> dict[str, Any] | None:
        ready = await asyncio.to_thread(self._checked, self.recording, window)
        text = await self._decode(self.recording, [ready] if ready is not None else [])
        now = settled(text)
        if not announce or not now.startswith(self.committed) or len(now) <= len(self.committed):
            return None
        delta, self.committed = now[len(self.committed):], now
        return {"type": "final", "text": delta, "committed": now}

    async def _partial(self, window: Window) -> dict[str, Any]:
        tentative = self.recording.fork()
        ready = await asyncio.to_thread(self._checked, tentative, window)
        text = await self._decode(tentative, [ready] if ready is not None else [])
        return {"type": "partial", "text": text, "committed": self.committed, "audio_seconds": round(self.seconds, 3)}

    def _checked(self, recording: Recording, window: Window) -> ReadyWindow | None:
        [(window, features)] = featured_windows(self.pipe.feature_extractor, [window], self.pipe.device)
        try:
            return self.pipe.checked(recording, window, features)
        except ValueError:  # a stream too short for one output frame so far: nothing to decode yet
            return None

    async def _decode(self, recording: Recording, ready: list[ReadyWindow]) -> str:
        if not ready and not recording.pieces:
            return ""
        future = await asyncio.to_thread(self.batcher.submit, self.pipe, recording, ready)  # it may decode here
        result = await asyncio.wrap_future(future)
        return result["text"]


# -------------------------------------------------------------------------------- the chunked live transcript
class ChunkedLiveTranscript:
    """One stream through a chunked model: the messages of `LiveTranscript`, each chunk run once with cached state.

    The model work of a stream runs in a worker thread, one block at a time (a chunk is a few hundred ms of audio:
    nothing to batch across streams), beside the `Batcher`'s thread rather than through it.
    """

    def __init__(self, pipe: AutomaticSpeechRecognitionPipeline, partial_every_s: float = PARTIAL_EVERY_S) -> None:
        self.stream = StreamingTranscription(pipe)
        self.partial_every = int(partial_every_s * SAMPLING_RATE)
        self.last_partial = 0  # samples pushed when the last partial was decoded
        self.lock = asyncio.Lock()  # one block at a time through the stream's caches

    @property
    def seconds(self) -> float:
        return self.stream.seconds

    async def feed(self, audio: np.ndarray) -> AsyncIterator[dict[str, Any]]:
        async with self.lock:
            update = await asyncio.to_thread(self.stream.feed, audio)
            if update.final:
                yield {"type": "final", "text": update.final, "committed": update.committed}
            if self.stream.samples - self.last_partial >= self.partial_every:
                self.last_partial = self.stream.samples
                text = await asyncio.to_thread(self.stream.partial)
                yield {"type": "partial", "text": text, "committed": self.stream.committed,
                       "audio_seconds": round(self.seconds, 3)}

    async def finish(self) -> AsyncIterator[dict[str, Any]]:
        """The stream ends (mid-chunk or not): the last chunk's words, then the transcript."""
        async with self.lock:
            text = await asyncio.to_thread(self.stream.finish)
        committed = self.stream.committed
        if not (text + " ").startswith(committed):  # cannot happen with greedy CTC; said rather than hidden
            raise RuntimeError("the transcript does not continue the settled text")
        if len(text) > len(committed):
            yield {"type": "final", "text": text[len(committed):], "committed": text}
        yield {"type": "done", "text": text, "duration": round(self.seconds, 3)}


Transcript = LiveTranscript | ChunkedLiveTranscript


def live_transcript(pipe: AutomaticSpeechRecognitionPipeline, batcher: Batcher) -> Transcript:
    """The live transcript the model allows: chunk by chunk for a chunked model, windows re-decoded otherwise."""
    return ChunkedLiveTranscript(pipe) if is_chunked(pipe) else LiveTranscript(pipe, batcher)
