"""The one packer: each input's waiting examples in a :class:`Job`, cut into batches of up to
``batch_size`` across inputs (first in, first out, or max-min fair with ``fair=True``); every job
gets its rows of the model's output back, and is complete once closed with all of them back."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from vggish import params
from vggish.pipeline.source import concat_examples


class Job:
    """One input's examples on their way through a :class:`Packer`; ``tag``: anything to find it
    by; ``rows``: the driver hands back each model call's rows as they come, not kept for the end."""

    def __init__(self, tag: Any = None, *, postprocess: bool = False, rows: bool = False) -> None:
        self.tag = tag
        self.postprocess = postprocess
        self.rows = rows
        self.queued = 0  # examples waiting for a batch
        self.taken = 0  # examples put into batches
        self.delivered = 0  # embeddings received
        self.closed = False  # no more examples will come
        self._blocks: deque[Any] = deque()
        self._outputs: list[np.ndarray] = []

    @property
    def complete(self) -> bool:
        """Closed, and every example it was given has its embedding."""
        return self.closed and self.queued == 0 and self.delivered == self.taken

    def embeddings(self) -> np.ndarray:
        """(N, 128) float32: the embeddings kept so far (none for ``rows``), in example order."""
        if not self._outputs:
            return np.empty((0, params.EMBEDDING_SIZE), dtype=np.float32)
        return np.concatenate(self._outputs).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Batch:
    """One model call's (B, 96, 64) examples and whose they are: ``parts``, (job, rows) in order."""

    examples: Any
    parts: tuple[tuple[Job, int], ...]

    def __len__(self) -> int:
        return int(self.examples.shape[0])

    def split(self, embeddings: np.ndarray) -> list[tuple[Job, np.ndarray]]:
        """Each part's job and its rows of ``embeddings``, the model's output for this batch."""
        ends = np.cumsum([n for _, n in self.parts])
        return [(job, embeddings[end - n : end]) for (job, n), end in zip(self.parts, ends, strict=True)]


class Packer:
    """Queues examples of many jobs and cuts them into batches (not thread-safe by itself)."""

    def __init__(self, batch_size: int, *, fair: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.batch_size = batch_size
        self.fair = fair
        self.pending = 0  # examples waiting for a batch, all jobs together
        self._queue: deque[Job] = deque()  # jobs with waiting examples, in turn

    def put(self, job: Job, examples: Any) -> None:
        """Adds (m, 96, 64) examples to ``job`` (which must not be closed)."""
        if job.closed:
            raise RuntimeError("cannot add examples to a closed job")
        count = int(examples.shape[0])
        if count == 0:
            return
        if job.queued == 0:
            self._queue.append(job)
        job._blocks.append(examples)
        job.queued += count
        self.pending += count

    def close(self, job: Job) -> bool:
        """Marks that ``job`` gets no more examples; returns whether it is complete already."""
        job.closed = True
        return job.complete

    def take(self) -> Batch | None:
        """Cuts the next batch of up to ``batch_size`` waiting examples (None: nothing waits)."""
        shares = self._fair_shares(self.batch_size) if self.fair else self._fifo_shares(self.batch_size)
        if not shares:
            return None
        blocks: list[Any] = []
        for job, rows in shares:
            blocks += _cut(job, rows)
            job.queued -= rows
            job.taken += rows
            self.pending -= rows
            self._queue.remove(job)
            if job.queued and self.fair:  # its turn is over: behind the others
                self._queue.append(job)
            elif job.queued:  # first in, first out: still first
                self._queue.appendleft(job)
        return Batch(concat_examples(blocks), tuple(shares))

    def _fifo_shares(self, room: int) -> list[tuple[Job, int]]:
        shares = []
        for job in self._queue:
            if room == 0:
                break
            shares.append((job, min(room, job.queued)))
            room -= shares[-1][1]
        return shares

    def _fair_shares(self, room: int) -> list[tuple[Job, int]]:
        """Max-min fair (water-filling) shares of ``room``."""
        share: dict[Job, int] = {}
        left, count = room, len(self._queue)
        for job in sorted(self._queue, key=lambda j: j.queued):
            share[job] = min(job.queued, left // count)
            left, count = left - share[job], count - 1
        return [(job, share[job]) for job in self._queue if share[job]]

    def deliver(self, batch: Batch, embeddings: np.ndarray) -> list[Job]:
        """Hands each job of ``batch`` its rows of ``embeddings``; returns the jobs this completed."""
        if embeddings.shape[0] != len(batch):
            raise ValueError(f"{embeddings.shape[0]} embeddings for a batch of {len(batch)} examples")
        done: list[Job] = []
        for job, rows in batch.split(embeddings):
            if not job.rows:
                job._outputs.append(rows)
            job.delivered += len(rows)
            if job.complete:
                done.append(job)
        return done

    def cancel(self, job: Job) -> None:
        """Drops ``job``'s waiting examples (a batch already cut still delivers to it)."""
        if job.queued:
            self._queue.remove(job)
            self.pending -= job.queued
            job.queued = 0
            job._blocks.clear()


def _cut(job: Job, rows: int) -> list[Any]:
    out = []
    while rows:
        block = job._blocks[0]
        n = min(rows, int(block.shape[0]))
        out.append(block[:n])
        if n == block.shape[0]:
            job._blocks.popleft()
        else:
            job._blocks[0] = block[n:]
        rows -= n
    return out
