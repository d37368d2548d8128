"""The cross-request batcher on its own: when it waits for a batch to fill and when it does not,
admission, backpressure on feeders, and cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from vggish.errors import CancelledError, LimitExceededError
from vggish_app.batching import BACKLOG_BATCHES, Batcher
from vggish_app.errors import QueueFullError
from vggish_app.metrics import Metrics

LONG_WAIT_S = 120.0  # far beyond the tests' own timeout: a batcher that waited would fail them


class Recorder:
    """A fake model that records the batch sizes it was called with (row i -> 128 x its value)."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()
        self.gate = gate

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(30)
        with self.lock:
            self.calls.append(batch.shape[0])
        return np.repeat(batch.reshape(batch.shape[0], -1)[:, :1], 128, axis=1).astype(np.float32)


def _batcher(infer: Recorder, max_batch: int = 64, max_queue: int = 1000) -> Batcher:
    batcher = Batcher(
        infer,
        max_batch=max_batch,
        max_wait_s=LONG_WAIT_S,
        max_queue=max_queue,
        retry_after_s=1,
        metrics=Metrics(),
    )
    batcher.start()
    return batcher


def _examples(value: float, count: int) -> np.ndarray:
    return np.full((count, 96, 64), value, dtype=np.float32)


async def _embed(batcher: Batcher, blocks: Iterator[np.ndarray]) -> np.ndarray:
    loop = asyncio.get_running_loop()
    job = batcher.open(loop)
    await loop.run_in_executor(None, batcher.feed, job, blocks)
    return (await asyncio.wait_for(batcher.result(job), timeout=30)).embeddings


def test_a_lone_input_runs_without_waiting_for_the_batch_to_fill() -> None:
    infer = Recorder()
    batcher = _batcher(infer)
    try:
        embeddings = asyncio.run(_embed(batcher, iter([_examples(3.0, 5)])))
    finally:
        batcher.close()
    assert infer.calls == [5]
    assert np.all(embeddings == 3.0) and embeddings.shape == (5, 128)


def test_waits_for_inputs_still_decoding_and_merges_them() -> None:
    infer = Recorder()
    batcher = _batcher(infer)
    decoding = threading.Event()

    def still_decoding() -> Iterator[np.ndarray]:
        yield _examples(1.0, 4)
        decoding.wait(30)  # the rest of this input is still being decoded

    async def run() -> tuple[np.ndarray, np.ndarray]:
        first = asyncio.ensure_future(_embed(batcher, still_decoding()))
        await asyncio.sleep(0.2)
        assert not first.done() and infer.calls == []  # held back: more examples are on their way
        second = asyncio.ensure_future(_embed(batcher, iter([_examples(2.0, 6)])))
        await asyncio.sleep(0.2)
        assert infer.calls == []  # still held: the first input is still decoding
        decoding.set()  # decoding done: the batch goes without waiting out max_wait_s
        return await asyncio.gather(first, second)

    try:
        a, b = asyncio.run(run())
    finally:
        batcher.close()
    assert infer.calls == [10]  # one model call for both inputs
    assert np.all(a == 1.0) and a.shape == (4, 128)
    assert np.all(b == 2.0) and b.shape == (6, 128)


def test_a_failing_decode_releases_the_batch_and_fails_only_its_input() -> None:
    infer = Recorder()
    batcher = _batcher(infer)

    def broken() -> Iterator[np.ndarray]:
        yield _examples(5.0, 3)
        raise ValueError("undecodable")

    async def run() -> np.ndarray:
        with pytest.raises(ValueError, match="undecodable"):
            await _embed(batcher, broken())
        return await _embed(batcher, iter([_examples(1.0, 2)]))

    try:
        out = asyncio.run(run())
    finally:
        batcher.close()
    assert infer.calls == [2] and np.all(out == 1.0)  # the failed input's examples were dropped


def test_admission_refuses_beyond_the_queue() -> None:
    batcher = _batcher(Recorder(), max_queue=100)
    try:
        with batcher.admitted(60):
            with pytest.raises(QueueFullError, match="queue is full") as full, batcher.admitted(50):
                pass
            assert full.value.headers == {"Retry-After": "1"}
            with batcher.admitted(40):  # 60 + 40 fits
                pass
        # More than the queue ever holds: 413, not 429.
        with pytest.raises(LimitExceededError, match="max_queue_examples"), batcher.admitted(101):
            pass
        with batcher.admitted(100):  # everything released again
            pass
    finally:
        batcher.close()


def test_a_long_input_holds_a_bounded_backlog_and_cancelling_stops_its_feeder() -> None:
    gate = threading.Event()  # the model is slow: nothing completes until the gate opens
    infer = Recorder(gate)
    batcher = _batcher(infer, max_batch=8)
    fed: list[int] = []

    def endless() -> Iterator[np.ndarray]:
        for i in range(1000):
            fed.append(i)
            yield _examples(1.0, 8)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        job = batcher.open(loop)
        feeding = loop.run_in_executor(None, batcher.feed, job, endless())
        await asyncio.sleep(0.5)
        assert job.queued <= BACKLOG_BATCHES * 8  # the feeder waits instead of decoding ahead
        assert len(fed) <= BACKLOG_BATCHES + 2  # (one batch is in the model, one block in hand)
        batcher.cancel(job)
        with pytest.raises(CancelledError):
            await asyncio.wait_for(feeding, timeout=30)
        assert job.queued == 0 and batcher.pending_examples == 0

    try:
        asyncio.run(run())
    finally:
        gate.set()
        batcher.close()
    assert len(fed) < 10


def test_a_streaming_job_gets_each_model_calls_rows_before_it_completes() -> None:
    infer = Recorder()
    batcher = _batcher(infer, max_batch=4)

    async def run() -> list[np.ndarray]:
        job = batcher.open(asyncio.get_running_loop(), rows=True)
        assert job.deliveries is not None
        batcher.put(job, _examples(1.0, 3))
        first = await asyncio.wait_for(job.deliveries.get(), timeout=30)  # the job is still open
        assert not isinstance(first, BaseException) and not first.done and not job.future.done()
        batcher.put(job, _examples(2.0, 6))
        batcher.end(job)
        last = await asyncio.wait_for(batcher.result(job), timeout=30)
        rest = [job.deliveries.get_nowait() for _ in range(job.deliveries.qsize())]
        assert rest[-1] is last and last.done and len(last.embeddings) == 0  # its rows came before
        return [out.embeddings for out in [first, *rest[:-1]] if not isinstance(out, BaseException)]

    try:
        deliveries = asyncio.run(run())
    finally:
        batcher.close()
    assert [len(rows) for rows in deliveries] == infer.calls == [3, 4, 2]
    assert np.all(deliveries[0] == 1.0) and np.all(np.concatenate(deliveries[1:]) == 2.0)


def test_a_failed_model_call_reaches_a_streaming_jobs_queue() -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("the model fell over")

    batcher = Batcher(broken, max_batch=4, max_wait_s=0, max_queue=100, retry_after_s=1, metrics=Metrics())
    batcher.start()

    async def run() -> object:
        job = batcher.open(asyncio.get_running_loop(), rows=True)
        assert job.deliveries is not None
        batcher.put(job, _examples(1.0, 2))
        delivered = await asyncio.wait_for(job.deliveries.get(), timeout=30)
        with pytest.raises(RuntimeError, match="fell over"):
            await batcher.result(job)
        with pytest.raises(CancelledError):  # the failed job takes no more examples
            batcher.put(job, _examples(1.0, 1))
        return delivered

    try:
        delivered = asyncio.run(run())
    finally:
        batcher.close()
    assert isinstance(delivered, RuntimeError)


def test_a_backlog_gets_its_share_of_each_batch_not_the_queue() -> None:
    """A stream with 12 examples waiting and a request of 2 that comes after it: the request's
    examples go into the very next model call, beside 2 of the stream's, not after the stream's."""
    gate = threading.Event()
    calls: list[list[float]] = []

    def infer(batch: np.ndarray) -> np.ndarray:
        gate.wait(30)
        calls.append(batch[:, 0, 0].tolist())
        return np.repeat(batch[:, :1, 0], 128, axis=1).astype(np.float32)

    batcher = Batcher(infer, max_batch=4, max_wait_s=0, max_queue=100, retry_after_s=1, metrics=Metrics())
    batcher.start()

    async def run() -> np.ndarray:
        loop = asyncio.get_running_loop()
        stream = batcher.open(loop, rows=True)
        batcher.put(stream, _examples(1.0, 12))
        while batcher.pending_examples != 8:  # the first 4 are in the (held) model
            await asyncio.sleep(0.01)
        request = batcher.open(loop)
        await loop.run_in_executor(None, batcher.feed, request, iter([_examples(2.0, 2)]))
        batcher.end(stream)
        gate.set()
        return (await asyncio.wait_for(batcher.result(request), timeout=30)).embeddings

    try:
        out = asyncio.run(run())
    finally:
        gate.set()
        batcher.close()
    assert calls == [[1.0] * 4, [1.0, 1.0, 2.0, 2.0], [1.0] * 4, [1.0] * 2]
    assert np.all(out == 2.0) and out.shape == (2, 128)
