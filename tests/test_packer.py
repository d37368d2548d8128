"""The one packer and the driver that runs it: examples of many inputs, arriving in chunks, cut
into full batches (first in, first out, or shared fairly) and handed back to each input in order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vggish import params
from vggish.pipeline.driver import Driver
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

    jobs = [Job(tag=i) for i in range(len(inputs))]
    # each input arrives in pieces, some empty
    pieces = [(job, np.array_split(examples, 3)) for job, examples in zip(jobs, inputs, strict=True)]
    done = [job for job, _ in Driver(infer, batch_size).drive(pieces)]
    assert sorted(job.tag for job in done) == list(range(len(inputs)))  # each input exactly once
    for job, examples in zip(jobs, inputs, strict=True):
        assert job.complete
        np.testing.assert_array_equal(job.embeddings()[:, 0], examples.mean(axis=(1, 2)))
    assert all(s == batch_size for s in sizes[:-1]) and sum(sizes) == sum(len(x) for x in inputs)


def test_take_keeps_order() -> None:
    rng = np.random.default_rng(0)
    a, b = Job("a"), Job("b")
    packer = Packer(8)
    xa, xb = _examples(rng, 11), _examples(rng, 6)
    packer.put(a, xa)
    packer.put(b, xb)
    first = packer.take()
    assert first is not None and [(j.tag, n) for j, n in first.parts] == [("a", 8)]
    second = packer.take()
    assert second is not None and [(j.tag, n) for j, n in second.parts] == [("a", 3), ("b", 5)]
    np.testing.assert_array_equal(second.examples, np.concatenate([xa[8:], xb[:5]]))
    third = packer.take()
    assert third is not None and [(j.tag, n) for j, n in third.parts] == [("b", 1)]
    assert packer.take() is None and packer.pending == 0


def test_fair_batches_share_the_model_among_the_jobs_waiting() -> None:
    """A job with a long backlog (a stream) gets an equal share of each batch, not the queue; a
    job that needs less than its share gets all it has, its unused share going to the others."""
    rng = np.random.default_rng(5)
    packer = Packer(8, fair=True)
    backlog, small, late = Job("backlog"), Job("small"), Job("late")
    xs = {"backlog": _examples(rng, 40), "small": _examples(rng, 2), "late": _examples(rng, 9)}
    packer.put(backlog, xs["backlog"])
    packer.put(small, xs["small"])
    cut: list[list[tuple[str, int]]] = []
    seen: dict[str, list[np.ndarray]] = {"backlog": [], "small": [], "late": []}

    def take() -> None:
        batch = packer.take()
        assert batch is not None
        cut.append([(job.tag, n) for job, n in batch.parts])
        offset = 0
        for job, n in batch.parts:
            seen[job.tag].append(np.asarray(batch.examples[offset : offset + n]))
            offset += n

    take()
    packer.put(late, xs["late"])
    while packer.pending:
        take()
    assert cut[0] == [("backlog", 6), ("small", 2)]
    assert cut[1] == [("backlog", 4), ("late", 4)]  # equal shares, the late job at once
    assert cut[2] == [("backlog", 4), ("late", 4)]
    assert cut[3] == [("backlog", 7), ("late", 1)]
    assert all(sum(n for _, n in parts) == 8 for parts in cut[:-1])
    for tag, examples in xs.items():  # each job's examples in order, each once
        np.testing.assert_array_equal(np.concatenate(seen[tag]), examples)


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
    last = packer.take()
    assert last is not None and packer.deliver(last, per_example(last.examples)) == [kept]
    assert kept.embeddings().shape == (2, 128)


def test_tensor_examples_are_packed_as_tensors() -> None:
    seen: list[object] = []

    def infer(batch: torch.Tensor) -> np.ndarray:
        seen.append(type(batch))
        return per_example(batch.numpy())

    job = Job()
    blocks = [
        torch.ones(3, params.NUM_FRAMES, params.NUM_BANDS),
        torch.zeros(4, params.NUM_FRAMES, params.NUM_BANDS),
    ]
    assert [j for j, _ in Driver(infer, 5).drive([(job, blocks)])] == [job]
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


def test_the_driver_hands_a_rows_job_each_model_calls_rows_postprocessed() -> None:
    """A live stream's job gets each model call's rows as they come (and its 8-bit features, by
    the postprocess function given); a whole job gets all of its rows once complete."""
    rng = np.random.default_rng(2)
    driver = Driver(per_example, 4, postprocess=lambda e: torch.from_numpy((e[:, :1] > 0).astype(np.uint8)))
    live, whole = Job("live", rows=True, postprocess=True), Job("whole")
    xl, xw = _examples(rng, 6), _examples(rng, 3)
    driver.packer.put(live, xl)
    driver.packer.put(whole, xw)
    driver.close(whole)
    outputs = driver.run()  # the full batches: 4 of live; 2 of live and 2 of whole
    assert [(o.job.tag, len(o.embeddings), o.done) for o in outputs] == [
        ("live", 4, False),
        ("live", 2, False),
    ]
    outputs += driver.close(live)  # all of its rows are back: complete
    outputs += driver.run(flush=True)  # the last of whole
    assert [(o.job.tag, len(o.embeddings), o.done) for o in outputs[2:]] == [
        ("live", 0, True),
        ("whole", 3, True),
    ]
    rows = np.concatenate([o.embeddings for o in outputs[:2]])
    np.testing.assert_array_equal(rows[:, 0], xl.mean(axis=(1, 2)))
    features = np.concatenate([o.postprocessed for o in outputs[:2] if o.postprocessed is not None])
    np.testing.assert_array_equal(features[:, 0], xl.mean(axis=(1, 2)) > 0)
    np.testing.assert_array_equal(outputs[3].embeddings[:, 0], xw.mean(axis=(1, 2)))
    assert outputs[3].postprocessed is None and live.embeddings().shape == (0, 128)  # rows not kept
