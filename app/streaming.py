"""Live streaming: raw PCM as it arrives -> the one source of examples -> the shared batcher ->
each embedding (and a head's labels) as soon as its 0.975 s window is complete.

A :class:`StreamSession` is the service side of one ``/v1/stream`` connection (the WebSocket
protocol is ``app/routes/stream.py``'s). Memory stays bounded whatever the client does: a message
is at most ``stream_max_message_bytes``, pushed a second at a time, and past ``backlog`` examples
on their way :meth:`StreamSession.push` waits, so the socket is not read (TCP pushes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np

from vggish import params
from vggish.audio import decode as audio
from vggish.errors import CancelledError, InvalidAudioError, plural
from vggish.features.logmel import example_timestamps
from vggish.heads import Head
from vggish.pipeline.driver import Output
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import ExampleStream, Limits

from .batching import BACKLOG_BATCHES, InputJob
from .errors import RequestTimeoutError
from .json_inputs import check_float_peak
from .schemas import DEFAULT_FRAME_TOP_K, StreamStart
from .service import EmbeddingService

PCM_DTYPES: dict[str, np.dtype[Any]] = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
PIECE_SECONDS = 1.0  # input audio pushed into the example stream per step (bounds what one step makes)


class StreamSession:
    """One live stream: PCM in, embedding messages (with ``head``'s labels) out, at most
    ``backlog`` examples on their way at once."""

    def __init__(
        self,
        service: EmbeddingService,
        start: StreamStart,
        options: EmbedOptions,
        head: Head | None,
        backlog: int,
    ) -> None:
        self.service = service
        self.options = options
        self.head = head
        self.top_k = start.top_k or DEFAULT_FRAME_TOP_K  # labels per embedding: bounded, whatever the head
        self.backlog = backlog
        self.sample_rate = start.sample_rate
        self.channels = start.channels
        self.dtype = PCM_DTYPES[start.format]
        self.frame_bytes = self.dtype.itemsize * self.channels
        limits = Limits(seconds=service.settings.max_input_seconds)
        self.stream = ExampleStream(self.sample_rate, options, limits=limits, label="the stream")
        self.job: InputJob = service.batcher.open(
            asyncio.get_running_loop(), postprocess=bool(options.postprocess), rows=True
        )
        self.sent = 0  # embedding messages handed out
        self._partial = b""  # the bytes of an incomplete frame, carried to the next message
        self._on_the_way = 0  # examples put into the batcher and not yet handed out
        self._room = asyncio.Condition()
        self._lead = 0.0  # seconds of audio received ahead of real time
        self._paced_at = time.monotonic()

    @property
    def seconds(self) -> float:
        return self.stream.num_samples / self.sample_rate

    def ready_message(self, warning: str | None) -> dict[str, Any]:
        return {
            "type": "ready",
            "weights": self.service.weights_id,
            "example_seconds": params.EXAMPLE_SPAN_SECONDS,
            "hop": self.options.hop_seconds,
            "sample_rate": self.sample_rate,
            "max_seconds": self.service.settings.max_input_seconds,
            "max_message_bytes": self.service.settings.stream_max_message_bytes,
            **({} if warning is None else {"warnings": [warning]}),
        }

    def end_message(self, drained: bool = False) -> dict[str, Any]:
        """The server's last message (``drained``: the server is shutting down, and says so)."""
        message: dict[str, Any] = {"type": "end", "examples": self.sent, "seconds": self.seconds}
        if drained:
            message["detail"] = (
                f"the server is shutting down: the stream ends after the {self.seconds:g} s of audio "
                "received; send what follows on a new stream"
            )
        return message

    async def push(self, data: bytes) -> None:
        """Takes one binary message of interleaved PCM; returns once its examples are queued
        (waiting while the backlog is full, or while the stream runs ahead of real time by more
        than ``stream_burst_seconds``). RequestTimeoutError: no room within ``request_timeout_s``."""
        mono = self._decode(data)
        loop = asyncio.get_running_loop()
        piece = max(1, int(PIECE_SECONDS * self.sample_rate))
        for start in range(0, len(mono), piece):
            part = mono[start : start + piece]
            await self._pace(len(part) / self.sample_rate)
            await self._queue(await loop.run_in_executor(self.service.pool, self.stream.push, part))

    async def finish(self, *, whole_frames: bool = True) -> None:
        """Ends the input and flushes it; a stream that stopped inside a frame is refused with
        ``whole_frames`` (InvalidAudioError), else the part is dropped."""
        if self._partial and whole_frames:
            raise InvalidAudioError(
                f"the stream ended inside a frame: {plural(len(self._partial), 'byte')} left over; send "
                f"whole frames of {self.frame_bytes} bytes ({self.channels} × {self.dtype.itemsize})"
            )
        loop = asyncio.get_running_loop()
        await self._queue(await loop.run_in_executor(self.service.pool, self.stream.finish))
        self.service.batcher.end(self.job)

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Each embedding's message as its model call returns (or the call's error), until the end."""
        deliveries = self.job.deliveries
        assert deliveries is not None
        while True:
            out = await deliveries.get()
            if isinstance(out, BaseException):
                raise out
            for message in self._embedding_messages(out):
                yield message
                async with self._room:  # handed out (sent): room for one more
                    self._on_the_way -= 1
                    self._room.notify_all()
            if out.done:
                return

    def close(self) -> None:
        """Drops what is still waiting for the model (the client is gone, or the stream failed)."""
        self.service.batcher.cancel(self.job)
        self.service.metrics.audio_seconds.inc(self.seconds)
        self.service.metrics.examples.inc(self.sent)

    def _decode(self, data: bytes) -> np.ndarray:
        """Interleaved PCM -> mono float64, as the library reads arrays; a partial frame waits."""
        if self._partial:
            data = self._partial + data
        whole = len(data) - len(data) % self.frame_bytes
        self._partial = bytes(data[whole:])
        frames = np.frombuffer(data, dtype=self.dtype, count=whole // self.dtype.itemsize)
        frames = frames.reshape(-1, self.channels)
        if self.dtype.kind == "f":
            audio.check_finite(frames, offset=self.stream.num_samples)
            check_float_peak(float(np.abs(frames).max(initial=0.0)), "the stream", '"format": "s16le"')
        return audio.validate_waveform(frames, self.sample_rate)

    async def _pace(self, seconds: float) -> None:
        """Counts ``seconds`` more audio; waits while the stream is more than ``stream_burst_seconds``
        ahead of real time (which live audio never is)."""
        now = time.monotonic()
        self._lead = max(0.0, self._lead - (now - self._paced_at)) + seconds
        self._paced_at = now
        ahead = self._lead - self.service.settings.stream_burst_seconds
        if ahead > 0:
            await asyncio.sleep(ahead)

    async def _queue(self, examples: np.ndarray) -> None:
        """Puts examples into the batcher, no more than the backlog on their way at once."""
        for start in range(0, len(examples), self.backlog):
            block = examples[start : start + self.backlog]
            await self._wait_for_room(len(block))
            try:
                self.service.batcher.put(self.job, block)
            except CancelledError:  # only a failed model call cancels a live job: answer its error
                await self.job.future
                raise

    async def _wait_for_room(self, count: int) -> None:
        def room() -> bool:
            return self._on_the_way == 0 or self._on_the_way + count <= self.backlog

        async with self._room:
            if not room():
                self.service.metrics.stream_waits.inc()
                timeout = self.service.settings.request_timeout_s
                try:
                    await asyncio.wait_for(self._room.wait_for(room), timeout)
                except asyncio.TimeoutError as e:
                    raise RequestTimeoutError(
                        f"no embedding could be sent within request_timeout_s={timeout:g}: the server "
                        "is overloaded or the client does not read its messages"
                    ) from e
            self._on_the_way += count

    def _embedding_messages(self, out: Output) -> Iterator[dict[str, Any]]:
        rows, first = out.embeddings, self.sent
        spans = example_timestamps(len(rows), self.options.hop_seconds, start=first)
        labels = self.head.top_labels(rows, self.top_k) if self.head is not None else None
        for k, row in enumerate(rows):
            message: dict[str, Any] = {
                "type": "embedding",
                "index": first + k,
                "start": float(spans[k, 0]),
                "end": float(spans[k, 1]),
                "embedding": row.tolist(),
            }
            if out.postprocessed is not None:
                message["postprocessed"] = out.postprocessed[k].tolist()
            if labels is not None:
                message["labels"] = labels[k]
            self.sent += 1
            yield message


@contextlib.contextmanager
def opened(
    service: EmbeddingService, start: StreamStart, options: EmbedOptions, head: Head | None
) -> Iterator[StreamSession]:
    """A session admitted into the batcher's queue for its backlog (429, 503), closed on the way out."""
    s = service.settings
    backlog = min(BACKLOG_BATCHES * s.max_batch_examples, s.max_queue_examples)  # within the queue
    with service.batcher.admitted(backlog):
        session = StreamSession(service, start, options, head, backlog)
        service.metrics.streams.inc()
        try:
            yield session
        finally:
            service.metrics.streams.dec()
            session.close()
