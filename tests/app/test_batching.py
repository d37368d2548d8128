"""The cross-request batcher on its own: when it waits for a batch to fill, and when it does not."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from app.batching import Batcher
from app.metrics import Metrics

LONG_WAIT_S = 120.0  # far beyond the tests' own timeout: a batcher that waited would fail them


class Recorder:
    """A fake model that records the batch sizes it was called with."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls.append(batch.shape[0])
        return np.repeat(batch.reshape(batch.shape[0], -1)[:, :1], 128, axis=1).astype(np.float32)


def _batcher(infer: Recorder) -> Batcher:
    batcher = Batcher(
        infer, max_batch=64, max_wait_s=LONG_WAIT_S, max_queue=1000, retry_after_s=1, metrics=Metrics()
    )
    batcher.start()
    return batcher


def _examples(value: float, count: int) -> np.ndarray:
    return np.full((count, 96, 64), value, dtype=np.float32)


def test_a_lone_request_runs_without_waiting_for_the_batch_to_fill() -> None:
    infer = Recorder()
    batcher = _batcher(infer)

    async def run() -> np.ndarray:
        out = await asyncio.wait_for(batcher.embed(_examples(3.0, 5)), timeout=30)
        return out.embeddings

    try:
        embeddings = asyncio.run(run())
    finally:
        batcher.close()
    assert infer.calls == [5]
    assert np.all(embeddings == 3.0)


def test_waits_for_inputs_still_decoding_and_merges_them() -> None:
    infer = Recorder()
    batcher = _batcher(infer)

    async def run() -> tuple[np.ndarray, np.ndarray]:
        with batcher.expecting():  # a second input is being decoded
            first = asyncio.ensure_future(batcher.embed(_examples(1.0, 4)))
            await asyncio.sleep(0.2)
            assert not first.done()  # held back: more examples are on their way
            second = asyncio.ensure_future(batcher.embed(_examples(2.0, 6)))
            await asyncio.sleep(0)
        # Leaving the block (decode done) releases the batch without waiting out max_wait_s.
        a, b = await asyncio.wait_for(asyncio.gather(first, second), timeout=30)
        return a.embeddings, b.embeddings

    try:
        a, b = asyncio.run(run())
    finally:
        batcher.close()
    assert infer.calls == [10]  # one model call for both requests
    assert np.all(a == 1.0) and a.shape == (4, 128)
    assert np.all(b == 2.0) and b.shape == (6, 128)


def test_expecting_is_released_when_the_decode_fails() -> None:
    infer = Recorder()
    batcher = _batcher(infer)

    async def run() -> None:
        with pytest.raises(ValueError, match="undecodable"), batcher.expecting():
            raise ValueError("undecodable")
        await asyncio.wait_for(batcher.embed(_examples(1.0, 2)), timeout=30)

    try:
        asyncio.run(run())
    finally:
        batcher.close()
    assert infer.calls == [2]
