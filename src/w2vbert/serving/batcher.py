"""Dynamic batching: the windows of concurrent requests run together on one model thread.

A request is prepared on its caller's thread by the inference engine (decoded, cut into the pipeline's windows, of
its speech only when the pipeline has a `vad`, features computed and checked: `prepare`, or window by window with
`prepared_windows`), then handed to the
`Batcher` with its postprocessing options (`submit`, which returns a `concurrent.futures.Future`; an asyncio caller
awaits it with `asyncio.wrap_future`, so its event loop never waits on the model; cancelling it drops the windows
not yet run). The model thread waits at most `max_wait_s` from the oldest request's arrival for windows to fill a
batch, then takes the windows of the waiting requests round robin, the next window of each in turn, the requests
that have had the fewest windows run first, up to `max_batch_seconds` of padded audio (the engine's `fits`: the
longest window times the batch size; one window longer than that runs alone). So a short request waits for at most
a batch or two, never for the whole of the long uploads ahead of it. It runs the batch with `Pipeline.run_windows`,
and completes each request whose windows have all run with `Pipeline.result`. What is the batcher's own: the
requests waiting and which of their windows share a batch.

In order: a request's preparation, the request record, the batcher.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from w2vbert.audio.decode import SAMPLING_RATE, stream_audio
from w2vbert.inference.engine import (
    STREAM_BLOCK_S,
    AudioInput,
    Pipeline,
    ReadyWindow,
    Recording,
    as_clip,
    checked_windows,
    fits,
    windows_of,
)

logger = logging.getLogger(__name__)


class TooLong(ValueError):
    """An input longer than the server allows: its 413 names `param` and `code` (OpenAI's error fields)."""

    def __init__(self, message: str, param: str = "file", code: str = "audio_too_long") -> None:
        super().__init__(message)
        self.param, self.code = param, code

    @classmethod
    def past(cls, limit_s: float, what: str = "the audio") -> TooLong:
        return cls(f"{what} is longer than this server's limit of {limit_s:g} s")


def prepare(
    pipe: Pipeline, source: AudioInput, name: str, max_seconds: float | None = None, too_long: TooLong | None = None
) -> tuple[Recording, list[ReadyWindow]]:
    """Decode `source` and compute its windows' features, as `pipe` would before batching: (recording,
    checked windows, their audio dropped). The errors are `prepared_windows`'s."""
    recording, windows = prepared_windows(pipe, source, name, max_seconds, too_long)
    return recording, list(windows)


def prepared_windows(
    pipe: Pipeline, source: AudioInput, name: str, max_seconds: float | None = None, too_long: TooLong | None = None
) -> tuple[Recording, Iterator[ReadyWindow]]:
    """(recording, its checked windows as they are computed): each step decodes and computes features up to the
    next window, so a caller may take turns between uploads. Raises what a bad input raises in the pipeline
    (ValueError, OSError, TypeError), naming it `name`, and `too_long` (or a TooLong naming the limit) as soon as
    the decoded audio passes `max_seconds`: bytes are decoded as a stream, so a small upload of hours of audio
    never sits in memory whole."""

    def blocks() -> Iterator[np.ndarray]:
        decoded = 0
        stream = (stream_audio(bytes(source), STREAM_BLOCK_S) if isinstance(source, (bytes, bytearray))
                  else as_clip(source).blocks())
        for block in stream:
            decoded += len(block)
            if max_seconds is not None and decoded > max_seconds * SAMPLING_RATE:
                raise too_long or TooLong.past(max_seconds)
            yield block

    def windows() -> Iterator[ReadyWindow]:
        try:
            yield from checked_windows(pipe, recording, windows_of(pipe, blocks(), pipe.default_plan()))
        except TooLong:
            raise
        except (ValueError, OSError, TypeError) as error:  # named after the upload, not "<bytes>"
            message = str(error)
            raise type(error)(name + message.removeprefix("<bytes>") if message.startswith("<bytes>") else message) \
                from None

    recording = Recording(name)
    return recording, windows()


@dataclass
class _Request:
    pipe: Pipeline
    recording: Recording
    options: dict[str, Any]  # for Pipeline.result (return_timestamps, top_k, pool)
    future: concurrent.futures.Future
    windows: collections.deque[ReadyWindow]  # not yet taken into a batch, in their order
    remaining: int  # windows not yet run
    taken: int = 0  # windows taken into batches so far: the request that has had the fewest goes first
    finished: bool = False  # completed, or given up by its caller (then its windows are dropped)
    queued: float = field(default_factory=time.perf_counter)

    def turn(self) -> tuple[int, int, float]:
        """Its place in line: fewest windows run first, then fewest left, then the oldest."""
        return self.taken, len(self.windows), self.queued


@dataclass
class BatchReport:
    """What the model thread tells `on_batch` after each batch (for metrics)."""

    windows: int
    padded_seconds: float
    audio_seconds: float
    forward_seconds: float


class Batcher:
    """One model thread serving every request; `submit` is safe from any thread.

    `max_batch_seconds` caps a batch's padded audio; `max_wait_s` is how long the oldest window waits for
    company before its batch runs anyway (0: run whatever is queued at once).
    """

    def __init__(
        self,
        max_batch_seconds: float,
        max_wait_s: float,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        if max_batch_seconds <= 0 or max_wait_s < 0:
            raise ValueError(f"expected max_batch_seconds > 0 and max_wait_s >= 0, got {max_batch_seconds}, "
                             f"{max_wait_s}")
        self.max_batch_seconds = max_batch_seconds
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._waiting: list[_Request] = []  # requests with windows not yet taken, in arrival order
        self._requests = 0  # submitted and not yet completed
        self._lock = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="w2vbert-model", daemon=True)
        self._thread.start()

    @property
    def queued_windows(self) -> int:
        return sum(len(request.windows) for request in self._waiting)

    @property
    def pending_requests(self) -> int:
        return self._requests

    def submit(
        self, pipe: Pipeline, recording: Recording, ready: list[ReadyWindow], **options: Any
    ) -> concurrent.futures.Future:
        """Queue a prepared request; the future gets `pipe.result(recording, **options)`, or its exception.
        Cancelling the future (a caller gone) drops its windows not yet run. A request with no window to run is
        completed on the caller's thread (an asyncio caller runs `submit` in a worker thread when the recording is
        long: the result decodes all its frames)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        request = _Request(pipe, recording, options, future, collections.deque(ready), len(ready))
        with self._lock:
            if self._closing or not self._thread.is_alive():
                raise RuntimeError("the server is shutting down")
            self._requests += 1
            if ready:
                self._waiting.append(request)
            self._lock.notify()
        future.add_done_callback(lambda _: self._forget(request))
        if not ready:  # nothing to run (too short, or frames all run already): the result says it
            self._complete(request)
        return future

    @property
    def running(self) -> bool:
        """Whether the model thread takes work (/health and Ray Serve's replica health check ask)."""
        return self._thread.is_alive() and not self._closing

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued for requests still waiting, then stop the model thread."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout)

    def _forget(self, request: _Request) -> None:
        """A request whose caller gave up (a timeout, a client gone): its windows not yet taken are dropped now."""
        if not request.future.cancelled():
            return
        with self._lock:
            if not request.finished:
                request.finished = True
                self._requests -= 1
                if request in self._waiting:
                    self._waiting.remove(request)

    # ------------------------------------------------------------------------------------- the model thread
    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run(batch)
            except Exception as error:  # noqa: BLE001 - whatever fails, the thread serves the next batch
                logger.exception("a batch of %d windows failed", len(batch))
                for _, request in batch:
                    if not request.future.done():
                        request.future.set_exception(RuntimeError(f"the model failed on this batch: {error}"))

    def _next_batch(self) -> list[tuple[ReadyWindow, _Request]] | None:
        with self._lock:
            while not self._waiting:
                if self._closing:
                    return None
                self._lock.wait()
            deadline = min(request.queued for request in self._waiting) + self.max_wait_s
            while not self._closing and not self._full() and (left := deadline - time.perf_counter()) > 0:
                self._lock.wait(left)
            return self._take() if self._waiting else []

    def _full(self) -> bool:
        """Whether the windows waiting for the next request's pipeline fill a batch."""
        pipe = min(self._waiting, key=_Request.turn).pipe
        windows = [window for request in self._waiting if request.pipe is pipe for window in request.windows]
        longest = 0
        for count, window in enumerate(windows, 1):
            longest = max(longest, window.window.samples)
            if not fits(count, longest, self.max_batch_seconds):
                return True
        return False

    def _take(self) -> list[tuple[ReadyWindow, _Request]]:
        """A batch for the pipeline of the request whose turn it is: round robin over the waiting requests of that
        pipeline, in their turn (fewest windows run first: a short request is not held behind long uploads), the
        next window of each while they fit. A request's windows are taken in their order, never one past a window
        left behind, since their outputs join the recording in the order they run."""
        line = sorted(self._waiting, key=_Request.turn)
        line = [request for request in line if request.pipe is line[0].pipe]
        batch: list[tuple[ReadyWindow, _Request]] = []
        longest = 0
        while line:
            still = []
            for request in line:  # one window each per round; a request whose window does not fit is done
                grown = max(longest, request.windows[0].window.samples)
                if batch and not fits(len(batch) + 1, grown, self.max_batch_seconds):
                    continue
                batch.append((request.windows.popleft(), request))
                request.taken += 1
                longest = grown
                if request.windows:
                    still.append(request)
            line = still
        self._waiting = [request for request in self._waiting if request.windows]
        return batch

    def _run(self, batch: list[tuple[ReadyWindow, _Request]]) -> None:
        if not batch:
            return
        pipe = batch[0][1].pipe
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                pipe.run_windows([window for window, _ in batch])
        except Exception as error:  # noqa: BLE001 - one bad batch fails its requests, never the server
            logger.exception("a batch of %d windows failed", len(batch))
            for _, request in batch:
                request.recording.fail(RuntimeError(f"the model failed on this batch: {error}"))
        report = BatchReport(
            windows=len(batch),
            padded_seconds=len(batch) * max(w.window.samples for w, _ in batch) / SAMPLING_RATE,
            audio_seconds=sum(w.new_samples for w, _ in batch) / SAMPLING_RATE,
            forward_seconds=time.perf_counter() - started,
        )
        for _, request in batch:
            request.remaining -= 1
            if request.remaining == 0:
                self._complete(request)
        if self.on_batch is not None:
            self.on_batch(report)

    def _complete(self, request: _Request) -> None:
        with self._lock:
            if request.finished:
                return  # its caller gave up
            request.finished = True
            self._requests -= 1
        if not request.future.set_running_or_notify_cancel():
            return  # the caller gave up: no result to compute
        try:
            result = request.pipe.result(request.recording, **request.options)
        except Exception as error:  # noqa: BLE001 - reported to its request
            result = error
        if isinstance(result, Exception):
            request.future.set_exception(result)
        else:
            request.future.set_result(result)
