"""The one packer: examples of many inputs, arriving in chunks, cut into full batches and handed
back to each input in order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vggish import params
from vggish.pipeline.packer import Job, Packer


def per_example(batch: np.ndarray) -> np.ndarray:
    """A per-example function, like the model: row i -> 128 copies of example i's mean."""
    return np.repeat(np.asarray(batch).mean(axis=(1, 2))[:, None], params.EMBEDDING_SIZE, axis=1)


def _examples(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, params.NUM_FRAMES, params.NUM_BANDS)).astype(np.float32)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 64])
def test_full_batches_across_inputs_and_chunks(batch_size: int) -> None:
    rng = np.random.default_rng(batch_size)
    inputs = [_examples(rng, int(n)) for n in rng.integers(0, 12, size=20)]  # some with no example
    sizes: list[int] = []

    def infer(batch: np.ndarray) -> np.ndarray:
        sizes.append(batch.shape[0])
        return per_example(batch)

    packer = Packer(batch_size)
    jobs, done = [], []
    for i, examples in enumerate(inputs):
        job = Job(tag=i)
        jobs.append(job)
        for chunk in np.array_split(examples, 3):  # each input arrives in pieces, some empty
            packer.put(job, chunk)
            done += packer.run(infer)
        if packer.close(job):
            done.append(job)
    done += packer.run(infer, flush=True)
    assert sorted(job.tag for job in done) == list(range(len(inputs)))  # each input exactly once
    for job, examples in zip(jobs, inputs, strict=True):
        assert job.complete
        np.testing.assert_array_equal(job.embeddings()[:, 0], examples.mean(axis=(1, 2)))
    assert all(s == batch_size for s in sizes[:-1]) and sum(sizes) == sum(len(x) for x in inputs)


def test_take_respects_a_limit_and_keeps_order() -> None:
    rng = np.random.default_rng(0)
    a, b = Job("a"), Job("b")
    packer = Packer(8)
    xa, xb = _examples(rng, 5), _examples(rng, 6)
    packer.put(a, xa)
    packer.put(b, xb)
    first = packer.take(limit=3)
    assert first is not None and [(j.tag, n) for j, n in first.parts] == [("a", 3)]
    second = packer.take()
    assert second is not None and [(j.tag, n) for j, n in second.parts] == [("a", 2), ("b", 6)]
    np.testing.assert_array_equal(second.examples, np.concatenate([xa[3:], xb]))
    assert packer.take() is None and packer.pending == 0


def test_cancel_drops_waiting_examples_only() -> None:
    rng = np.random.default_rng(1)
    gone, kept = Job("gone"), Job("kept")
    packer = Packer(4)
    packer.put(gone, _examples(rng, 6))
    running = packer.take()  # 4 of "gone" are in the model already
    packer.put(kept, _examples(rng, 2))
    packer.cancel(gone)
    assert packer.pending == 2 and gone.queued == 0
    assert running is not None and packer.deliver(running, per_example(running.examples)) == []
    assert gone.delivered == 4 and not gone.complete  # never closed: its waiter went away
    packer.close(kept)
    (done,) = packer.run(per_example, flush=True)
    assert done is kept and kept.embeddings().shape == (2, 128)


def test_tensor_examples_are_packed_as_tensors() -> None:
    packer = Packer(5)
    job = Job()
    packer.put(job, torch.ones(3, params.NUM_FRAMES, params.NUM_BANDS))
    packer.put(job, torch.zeros(4, params.NUM_FRAMES, params.NUM_BANDS))
    packer.close(job)
    seen: list[object] = []

    def infer(batch: torch.Tensor) -> np.ndarray:
        seen.append(type(batch))
        return per_example(batch.numpy())

    assert packer.run(infer, flush=True) == [job]
    assert seen == [torch.Tensor, torch.Tensor]
    assert job.embeddings()[:, 0].tolist() == [1, 1, 1, 0, 0, 0, 0]


def test_misuse_is_refused() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        Packer(0)
    packer = Packer(2)
    job = Job()
    packer.close(job)
    with pytest.raises(RuntimeError, match="closed job"):
        packer.put(job, np.zeros((1, params.NUM_FRAMES, params.NUM_BANDS), np.float32))
    other = Job()
    packer.put(other, np.zeros((2, params.NUM_FRAMES, params.NUM_BANDS), np.float32))
    batch = packer.take()
    assert batch is not None
    with pytest.raises(ValueError, match="embeddings for a batch"):
        packer.deliver(batch, np.zeros((3, 128), np.float32))
