"""Dynamic batching across requests: the library's packer served by one inference thread.

Decode threads stream each input's examples into a :class:`vggish.pipeline.packer.Packer` as they are
made (a few batches per input at most wait in memory: the feeder blocks beyond that). One
inference thread takes up to ``max_batch`` examples at a time, from as many inputs and requests
as are waiting, lets a batch fill for up to ``max_wait`` while inputs are still being decoded,
runs the model and hands every input its rows; an input's future resolves when its last example
is back. Requests are admitted against ``max_queue`` examples before any decoding (429 when the
admitted work would exceed it); a cancelled input (client gone, timeout) drops its waiting
examples and stops its feeder.

A live stream (``/v1/stream``) opens its job with ``rows=True``: its examples are put one block at
a time from the event loop (:meth:`Batcher.put`, never blocking; the stream bounds its own
backlog by not reading its socket), and every model call hands it its rows at once, through an
asyncio queue, instead of only when the job completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggish.errors import CancelledError, LimitExceededError
from vggish.pipeline.packer import Batch, Job, Packer

from .errors import NotReadyError, QueueFullError
from .metrics import Metrics

logger = logging.getLogger("app.batching")

InferFn = Callable[[Any], np.ndarray]
"""(B, 96, 64) float32 examples -> (B, 128) float32 embeddings."""

BACKLOG_BATCHES = 2  # batches of one input that may wait in memory before its feeder blocks


@dataclass(frozen=True)
class BatchOutput:
    """One input's embeddings and where its time went.

    Attributes:
        embeddings: (N, 128) float32, in the order the examples were fed.
        queue_seconds: from opening the input to the first model call holding its examples.
        inference_seconds: from that first model call to the last one.
    """

    embeddings: np.ndarray
    queue_seconds: float
    inference_seconds: float


Delivery = np.ndarray | BaseException | None
"""What a streaming job's queue receives: (m, 128) float32 rows in example order, the error that
failed the job, or None (put there by the stream itself once it has all its rows)."""


class InputJob(Job):
    """A packer job with what the service needs: the waiting coroutine's future and timings.

    Args:
        loop: the event loop of the coroutine that waits for the job.
        rows: also deliver each model call's rows at once, through :attr:`deliveries`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, rows: bool = False) -> None:
        super().__init__()
        self.loop = loop
        self.future: asyncio.Future[BatchOutput] = loop.create_future()
        self.deliveries: asyncio.Queue[Delivery] | None = asyncio.Queue() if rows else None
        self.opened = time.perf_counter()
        self.started: float | None = None
        self.cancelled = False

    def resolve(self, result: BatchOutput | BaseException) -> None:
        """Completes the future from any thread (unless its waiter gave up); a streaming job's
        queue gets the error too."""
        if self.deliveries is not None and isinstance(result, BaseException):
            self.loop.call_soon_threadsafe(self.deliveries.put_nowait, result)
        self.loop.call_soon_threadsafe(_resolve, self.future, result)

    def deliver(self, rows: np.ndarray) -> None:
        """Hands a streaming job the rows of one model call (from the inference thread); they
        reach its queue before the job's future resolves."""
        if self.deliveries is not None:
            self.loop.call_soon_threadsafe(self.deliveries.put_nowait, rows)


def _resolve(future: asyncio.Future[BatchOutput], result: BatchOutput | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Batcher:
    """The packer, its lock, and the inference thread.

    Args:
        infer: the model call, (B, 96, 64) -> (B, 128); it runs on the inference thread only.
        max_batch: most examples per model call.
        max_wait_s: longest wait for a batch to fill once examples are waiting; the batcher
            waits only while inputs are still being decoded, so a lone request runs at once.
        max_queue: most examples admitted and not yet through the model; beyond, 429.
        retry_after_s: the ``Retry-After`` sent with 429 and 503.
        metrics: where batch sizes, queue depth and times are recorded.
    """

    def __init__(
        self,
        infer: InferFn,
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        retry_after_s: int,
        metrics: Metrics,
    ) -> None:
        self.infer = infer
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self._retry_after = str(retry_after_s)
        self._metrics = metrics
        self._cond = threading.Condition()
        self._packer = Packer(max_batch)
        self._admitted = 0  # examples admitted and not yet released
        self._feeding = 0  # inputs being decoded, whose examples may join the next batch
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="vggish-inference", daemon=True)

    def start(self) -> None:
        """Starts the inference thread."""
        self._thread.start()

    def close(self) -> None:
        """Refuses new work, lets the thread finish every queued example, and joins it."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def pending_examples(self) -> int:
        """Examples waiting for the model now."""
        return self._packer.pending

    @contextlib.contextmanager
    def admitted(self, examples: int) -> Iterator[None]:
        """Admits a request that will make about ``examples`` examples, for the block.

        Raises:
            LimitExceededError: more than the queue ever holds (413, ``max_queue_examples``).
            QueueFullError: the admitted work would exceed ``max_queue`` now (429).
            NotReadyError: the service is shutting down (503).
        """
        if examples > self.max_queue:
            raise LimitExceededError(
                "max_queue_examples",
                f"the request makes {examples} examples; the queue holds {self.max_queue}",
            )
        with self._cond:
            if self._closing:
                raise NotReadyError("the server is shutting down", headers={"Retry-After": self._retry_after})
            if self._admitted + examples > self.max_queue:
                raise QueueFullError(
                    f"the queue is full ({self._admitted} of {self.max_queue} examples admitted)",
                    headers={"Retry-After": self._retry_after},
                )
            self._admitted += examples
        try:
            yield
        finally:
            with self._cond:
                self._admitted -= examples

    def open(self, loop: asyncio.AbstractEventLoop, *, rows: bool = False) -> InputJob:
        """A new input's job; its examples come through :meth:`feed`, or :meth:`put` and
        :meth:`end` (a stream, ``rows=True``: its rows come as each model call returns)."""
        return InputJob(loop, rows)

    def put(self, job: InputJob, block: Any) -> None:
        """Queues a block of a job's examples now, without waiting for room: the caller bounds
        its backlog (a stream stops reading its socket; see ``app.streaming``).

        Raises:
            CancelledError: the job was cancelled.
        """
        with self._cond:
            if job.cancelled:
                raise CancelledError("the stream was cancelled")
            self._packer.put(job, block)
            self._metrics.queue_depth.set(self._packer.pending)
            self._cond.notify_all()

    def end(self, job: InputJob) -> None:
        """Marks that a job fed by :meth:`put` gets no more examples (its future resolves once
        its last rows are back)."""
        with self._cond:
            if self._packer.close(job):
                self._finish(job, time.perf_counter())

    def feed(self, job: InputJob, blocks: Iterator[Any]) -> None:
        """Streams an input's example blocks into the queue (on a decode thread), then closes it.

        Blocks until each block fits the input's backlog (``BACKLOG_BATCHES`` batches); while it
        runs, the inference thread waits for batches to fill (up to ``max_wait_s``).

        Raises:
            CancelledError: the job was cancelled (the request is gone).
            Exception: whatever ``blocks`` raises (the job is cancelled first).
        """
        with self._cond:
            self._feeding += 1
        try:
            for block in blocks:
                self._put(job, block)
            with self._cond:
                if self._packer.close(job):
                    self._finish(job, time.perf_counter())
        except BaseException:
            self.cancel(job)
            raise
        finally:
            with self._cond:
                self._feeding -= 1
                self._cond.notify_all()

    def _put(self, job: InputJob, block: Any) -> None:
        with self._cond:
            while job.queued >= BACKLOG_BATCHES * self.max_batch and not job.cancelled:
                self._cond.wait()
            if job.cancelled:
                raise CancelledError("the request was cancelled")
            self._packer.put(job, block)
            self._metrics.queue_depth.set(self._packer.pending)
            self._cond.notify_all()

    def cancel(self, job: InputJob) -> None:
        """Drops the job's waiting examples and stops its feeder (a running batch still finishes)."""
        with self._cond:
            job.cancelled = True
            self._packer.cancel(job)
            self._metrics.queue_depth.set(self._packer.pending)
            self._cond.notify_all()

    async def result(self, job: InputJob) -> BatchOutput:
        """Waits for the job's embeddings; cancelling the wait cancels the job."""
        try:
            return await job.future
        except asyncio.CancelledError:
            self.cancel(job)
            raise

    def _run(self) -> None:
        """The inference thread: batches until closed and drained."""
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _next_batch(self) -> Batch | None:
        """Waits for examples, lets the batch fill for up to ``max_wait_s``, and cuts it."""
        with self._cond:
            while not self._packer.pending:
                if self._closing and not self._feeding:
                    return None
                self._cond.wait(0.1 if self._closing else None)
            deadline = time.perf_counter() + self.max_wait_s
            while self._packer.pending < self.max_batch and self._feeding and not self._closing:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = self._packer.take()
            self._metrics.queue_depth.set(self._packer.pending)
            self._cond.notify_all()  # feeders waiting on their backlog
            assert batch is not None
            return batch

    def _execute(self, batch: Batch) -> None:
        """Runs one model call and hands every job its rows; a model failure fails its jobs."""
        started = time.perf_counter()
        for job, _ in batch.parts:
            assert isinstance(job, InputJob)
            if job.started is None:
                job.started = started
                self._metrics.queue_time.observe(started - job.opened)
        try:
            out = self.infer(batch.examples)
        except Exception as e:  # the model call failed: its jobs fail with the error, the thread lives
            logger.exception("model call on %d examples failed", len(batch))
            for job, _ in batch.parts:
                assert isinstance(job, InputJob)
                self.cancel(job)
                job.resolve(e)
            return
        done = time.perf_counter()
        self._metrics.inference_time.observe(done - started)
        self._metrics.batch_examples.observe(len(batch))
        self._metrics.batch_requests.observe(len(batch.parts))
        with self._cond:
            offset = 0
            for job, rows in batch.parts:
                assert isinstance(job, InputJob)
                job.deliver(out[offset : offset + rows])
                offset += rows
            for job in self._packer.deliver(batch, out):
                assert isinstance(job, InputJob)
                self._finish(job, done)

    def _finish(self, job: InputJob, done: float) -> None:
        started = job.started if job.started is not None else done
        job.resolve(BatchOutput(job.embeddings(), started - job.opened, done - started))
