"""Dynamic batching: examples from concurrent requests are merged into model calls.

Requests put their log-mel examples in one bounded queue (counted in examples). A single
inference thread takes up to ``max_batch`` examples at a time, from as many requests as needed,
waiting at most ``max_wait`` for a batch to fill, runs the model and hands each request its
rows. A request that is cancelled (client gone, timeout) takes its waiting examples out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from app.errors import LimitExceededError, NotReadyError, QueueFullError
from app.metrics import Metrics

logger = logging.getLogger("app.batching")

InferFn = Callable[[np.ndarray], np.ndarray]
"""(B, 96, 64) float32 examples -> (B, 128) float32 embeddings."""


@dataclass(frozen=True)
class BatchOutput:
    """One input's embeddings and where its time went.

    Attributes:
        embeddings: (N, 128) float32, in the order the examples were submitted.
        queue_seconds: from submission to the first model call holding its examples.
        inference_seconds: from that first model call to the last one.
    """

    embeddings: np.ndarray
    queue_seconds: float
    inference_seconds: float


class _Job:
    """One input's examples on their way through the queue and the model."""

    def __init__(self, examples: np.ndarray, loop: asyncio.AbstractEventLoop) -> None:
        self.examples = examples
        self.loop = loop
        self.future: asyncio.Future[BatchOutput] = loop.create_future()
        self.next = 0  # first example not yet taken into a batch
        self.outputs: list[np.ndarray] = []
        self.submitted = time.perf_counter()
        self.started: float | None = None

    @property
    def remaining(self) -> int:
        return int(self.examples.shape[0]) - self.next


def _resolve(future: asyncio.Future[BatchOutput], result: BatchOutput | BaseException) -> None:
    """Runs on the event loop: completes the future unless its waiter gave up."""
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Batcher:
    """A bounded example queue served by one inference thread.

    Args:
        infer: the model call, (B, 96, 64) -> (B, 128); it runs on the inference thread only.
        max_batch: most examples per model call.
        max_wait_s: longest wait for a batch to fill once examples are waiting; the batcher
            waits only while inputs are still being decoded (see :meth:`expecting`), so a lone
            request on an idle server runs at once.
        max_queue: most examples waiting; :meth:`submit` refuses more with 429.
        retry_after_s: the ``Retry-After`` sent with 429.
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
        self._queue: deque[_Job] = deque()
        self._pending = 0
        self._decoding = 0  # inputs being decoded, whose examples may join the next batch
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

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Marks an input as being decoded for the block: its examples may come soon, so a batch
        is worth waiting for (up to ``max_wait_s``). With none, the batch runs at once."""
        with self._cond:
            self._decoding += 1
        try:
            yield
        finally:
            with self._cond:
                self._decoding -= 1
                self._cond.notify_all()

    @property
    def pending_examples(self) -> int:
        """Examples waiting for the model now."""
        return self._pending

    async def embed(self, examples: np.ndarray) -> BatchOutput:
        """Queues (N, 96, 64) examples and waits for their embeddings.

        Raises:
            QueueFullError: the queue cannot take N more examples now (429).
            LimitExceededError: N is more than the queue ever holds (413).
            NotReadyError: the service is shutting down (503).
        """
        job = self._submit(examples, asyncio.get_running_loop())
        try:
            return await job.future
        except asyncio.CancelledError:
            self._cancel(job)
            raise

    def _submit(self, examples: np.ndarray, loop: asyncio.AbstractEventLoop) -> _Job:
        count = examples.shape[0]
        if count > self.max_queue:
            raise LimitExceededError(
                "max_queue_examples", f"an input needs {count} examples; the queue holds {self.max_queue}"
            )
        job = _Job(examples, loop)
        with self._cond:
            if self._closing:
                raise NotReadyError("the server is shutting down", headers={"Retry-After": self._retry_after})
            if self._pending + count > self.max_queue:
                raise QueueFullError(
                    f"the queue is full ({self._pending} of {self.max_queue} examples waiting)",
                    headers={"Retry-After": self._retry_after},
                )
            self._queue.append(job)
            self._pending += count
            self._metrics.queue_depth.set(self._pending)
            self._cond.notify_all()
        return job

    def _cancel(self, job: _Job) -> None:
        """Takes a job's waiting examples out of the queue (its running batch, if any, finishes)."""
        with self._cond:
            if job in self._queue:
                self._queue.remove(job)
                self._pending -= job.remaining
                job.next = job.examples.shape[0]
                self._metrics.queue_depth.set(self._pending)

    def _run(self) -> None:
        """The inference thread: batches until closed and drained."""
        while True:
            parts = self._next_batch()
            if parts is None:
                return
            if parts:
                self._execute(parts)

    def _next_batch(self) -> list[tuple[_Job, int, int]] | None:
        """Waits for examples, lets the batch fill for up to ``max_wait_s``, and takes it.

        Returns:
            (job, start, stop) slices making up the batch; None once closed and drained.
        """
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            deadline = time.perf_counter() + self.max_wait_s
            while self._pending < self.max_batch and self._decoding and not self._closing:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._take()

    def _take(self) -> list[tuple[_Job, int, int]]:
        """Takes up to ``max_batch`` examples from the front of the queue (lock held)."""
        parts: list[tuple[_Job, int, int]] = []
        room = self.max_batch
        while self._queue and room:
            job = self._queue[0]
            count = min(room, job.remaining)
            parts.append((job, job.next, job.next + count))
            job.next += count
            room -= count
            self._pending -= count
            if job.remaining == 0:
                self._queue.popleft()
        self._metrics.queue_depth.set(self._pending)
        return parts

    def _execute(self, parts: list[tuple[_Job, int, int]]) -> None:
        """Runs one model call and hands every job its rows; a model failure fails its jobs."""
        started = time.perf_counter()
        for job, _, _ in parts:
            if job.started is None:
                job.started = started
                self._metrics.queue_time.observe(started - job.submitted)
        batch = np.concatenate([job.examples[a:b] for job, a, b in parts])
        try:
            out = self.infer(batch)
        except Exception as e:  # the model call failed: its jobs fail with the error, the thread lives
            logger.exception("model call on %d examples failed", batch.shape[0])
            for job, _, _ in parts:
                self._cancel(job)
                job.loop.call_soon_threadsafe(_resolve, job.future, e)
            return
        self._metrics.inference_time.observe(time.perf_counter() - started)
        self._metrics.batch_examples.observe(batch.shape[0])
        self._metrics.batch_requests.observe(len(parts))
        self._deliver(parts, out)

    def _deliver(self, parts: list[tuple[_Job, int, int]], out: np.ndarray) -> None:
        offset = 0
        done = time.perf_counter()
        for job, a, b in parts:
            job.outputs.append(out[offset : offset + b - a])
            offset += b - a
            if b == job.examples.shape[0]:
                assert job.started is not None
                result = BatchOutput(
                    np.concatenate(job.outputs), job.started - job.submitted, done - job.started
                )
                job.loop.call_soon_threadsafe(_resolve, job.future, result)
