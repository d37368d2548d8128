"""Dynamic batching across requests: the library's driver served by one inference thread.

Decode threads stream each input's examples into the :class:`vggish.pipeline.driver.Driver`; the
inference thread cuts batches of up to ``max_batch`` examples, shared fairly among the inputs
waiting, lets a batch fill for up to ``max_wait`` while inputs are still being decoded, runs the
model and hands every input its rows (a live stream's after every model call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from vggish.errors import CancelledError, LimitExceededError, plural
from vggish.pipeline.driver import Driver, InferFn, Output
from vggish.pipeline.packer import Batch, Job

from .errors import NotReadyError, QueueFullError
from .metrics import Metrics

logger = logging.getLogger("app.batching")

BACKLOG_BATCHES = 2  # batches of one input that may wait in memory before its feeder blocks

Delivery = Output | BaseException
"""What a streaming job's queue receives: each model call's Output, or the error that failed the job."""


class InputJob(Job):
    """A driver job with the waiting coroutine's future and timings; with ``rows``, each model
    call's rows also come at once through :attr:`deliveries`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, postprocess: bool = False, rows: bool = False
    ) -> None:
        super().__init__(postprocess=postprocess, rows=rows)
        self.loop = loop
        self.future: asyncio.Future[Output] = loop.create_future()
        self.deliveries: asyncio.Queue[Delivery] | None = asyncio.Queue() if rows else None
        self.opened = time.perf_counter()
        self.started: float | None = None  # its first model call
        self.finished = 0.0  # when its last Output or error was handed over
        self.cancelled = False

    def hand(self, out: Delivery) -> None:
        """From any thread: a stream gets ``out``; the last Output or an error resolves the future."""
        if self.deliveries is not None:
            self.loop.call_soon_threadsafe(self.deliveries.put_nowait, out)
        if isinstance(out, BaseException) or out.done:
            self.finished = time.perf_counter()
            self.loop.call_soon_threadsafe(_resolve, self.future, out)


def _resolve(future: asyncio.Future[Output], result: Delivery) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


class Batcher:
    """The driver, its lock, and the inference thread, the only one that calls ``infer``
    ((B, 96, 64) -> (B, 128)); ``retry_after_s`` is the ``Retry-After`` of 429 and 503."""

    def __init__(
        self,
        infer: InferFn,
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        retry_after_s: int,
        metrics: Metrics,
        postprocess: Callable[[np.ndarray], Any] | None = None,
    ) -> None:
        self.max_batch, self.max_wait_s, self.max_queue = max_batch, max_wait_s, max_queue
        self._retry_after = str(retry_after_s)
        self._metrics = metrics
        self._cond = threading.Condition()
        self.driver = Driver(infer, max_batch, postprocess=postprocess, fair=True)
        self._admitted = 0  # examples admitted and not yet released
        self._feeding = 0  # inputs being decoded, whose examples may join the next batch
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="vggish-inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Refuses new work, lets the thread finish every queued example, and joins it."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def infer(self) -> InferFn:
        """The model call (tests replace it to hold or break the model)."""
        return self.driver.infer

    @infer.setter
    def infer(self, infer: InferFn) -> None:
        self.driver.infer = infer

    @property
    def pending_examples(self) -> int:
        """Examples waiting for the model now."""
        return self.driver.packer.pending

    @contextlib.contextmanager
    def admitted(self, examples: int) -> Iterator[None]:
        """Admits a request that will make about ``examples`` examples, for the block (413 past
        what the queue ever holds, 429 when it is full now, 503 while shutting down)."""
        if examples > self.max_queue:
            raise LimitExceededError(
                "max_queue_examples",
                f"the request makes {plural(examples, 'example')}; the queue holds {self.max_queue}",
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

    def open(
        self, loop: asyncio.AbstractEventLoop, *, postprocess: bool = False, rows: bool = False
    ) -> InputJob:
        """A new input's job, fed by :meth:`feed`, or by :meth:`put` and :meth:`end` (a stream)."""
        return InputJob(loop, postprocess=postprocess, rows=rows)

    def put(self, job: InputJob, block: Any) -> None:
        """Queues a block of a stream's examples now (the caller bounds its backlog)."""
        with self._cond:
            if job.cancelled:
                raise CancelledError("the stream was cancelled")
            self._queue(job, block)

    def end(self, job: InputJob) -> None:
        """Marks that a job fed by :meth:`put` gets no more examples."""
        with self._cond:
            outputs = self.driver.close(job)
        for out in outputs:
            job.hand(out)

    def feed(self, job: InputJob, blocks: Iterator[Any]) -> None:
        """Streams an input's example blocks into the queue on a decode thread (waiting while its
        backlog holds ``BACKLOG_BATCHES`` batches), then closes it; an error cancels the job."""
        with self._cond:
            self._feeding += 1
        try:
            for block in blocks:
                with self._cond:
                    while job.queued >= BACKLOG_BATCHES * self.max_batch and not job.cancelled:
                        self._cond.wait()
                    if job.cancelled:
                        raise CancelledError("the request was cancelled")
                    self._queue(job, block)
            self.end(job)
        except BaseException:
            self.cancel(job)
            raise
        finally:
            with self._cond:
                self._feeding -= 1
                self._cond.notify_all()

    def _queue(self, job: InputJob, block: Any) -> None:
        self.driver.packer.put(job, block)
        self._metrics.queue_depth.set(self.driver.packer.pending)
        self._cond.notify_all()

    def cancel(self, job: InputJob) -> None:
        """Drops the job's waiting examples and stops its feeder (a running batch still finishes)."""
        with self._cond:
            job.cancelled = True
            self.driver.packer.cancel(job)
            self._metrics.queue_depth.set(self.driver.packer.pending)
            self._cond.notify_all()

    async def result(self, job: InputJob) -> Output:
        """Waits for the job's last Output; cancelling the wait cancels the job."""
        try:
            return await job.future
        except asyncio.CancelledError:
            self.cancel(job)
            raise

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._execute(batch)

    def _next_batch(self) -> Batch | None:
        """Waits for examples, lets the batch fill for up to ``max_wait_s``, and cuts it."""
        packer = self.driver.packer
        with self._cond:
            while not packer.pending:
                if self._closing and not self._feeding:
                    return None
                self._cond.wait(0.1 if self._closing else None)
            deadline = time.perf_counter() + self.max_wait_s
            while packer.pending < self.max_batch and self._feeding and not self._closing:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = packer.take()
            self._metrics.queue_depth.set(packer.pending)
            self._cond.notify_all()  # feeders waiting on their backlog
            assert batch is not None
            return batch

    def _execute(self, batch: Batch) -> None:
        """Runs one model call and hands every job its rows; a model failure fails its jobs."""
        started = time.perf_counter()
        jobs = [job for job, _ in batch.parts if isinstance(job, InputJob)]
        for job in jobs:
            if job.started is None:
                job.started = started
                self._metrics.queue_time.observe(started - job.opened)
        try:
            out = self.driver.infer(batch.examples)
        except Exception as e:  # the model call failed: its jobs fail with the error, the thread lives
            logger.exception("model call on %d examples failed", len(batch))
            for job in jobs:
                self.cancel(job)
                job.hand(e)
            return
        self._metrics.inference_time.observe(time.perf_counter() - started)
        self._metrics.batch_examples.observe(len(batch))
        self._metrics.batch_requests.observe(len(batch.parts))
        with self._cond:
            outputs = self.driver.deliver(batch, out)
        for output in outputs:
            assert isinstance(output.job, InputJob)
            output.job.hand(output)
