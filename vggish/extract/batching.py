"""Packs the examples of many inputs into full model batches and hands back each input whole.

Short files give a few examples each; running them one file at a time would leave most of every
model call empty. The packer queues decoded inputs in arrival order, cuts full batches across
file boundaries, and returns an input's embeddings once all of its examples have been through the
model. Each example's result does not depend on its batch-mates, so rows equal those of
:func:`vggish.pipeline.embed_source` on the same file.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vggish.extract.decode import Decoded


@dataclass(frozen=True)
class Embedded:
    """One input's results.

    Attributes:
        source: the decoded input (its examples are dropped: an empty (0, 96, 64) array).
        embeddings: (N, 128) float32 raw embeddings.
        postprocessed: (N, 128) uint8 AudioSet features, or None.
    """

    source: Decoded
    embeddings: np.ndarray
    postprocessed: np.ndarray | None


@dataclass
class _Pending:
    decoded: Decoded
    taken: int = 0  # examples already put in a batch
    outputs: list[np.ndarray] = field(default_factory=list)
    done: int = 0  # embeddings received

    @property
    def count(self) -> int:
        return int(self.decoded.examples.shape[0])


class BatchPacker:
    """Decoded inputs in, full batches through ``embed``, whole inputs' embeddings out.

    Args:
        embed: (B, 96, 64) float32 -> (B, 128) float32.
        postprocess: (N, 128) float32 -> (N, 128) uint8, or None to skip postprocessing.
        batch_size: examples per ``embed`` call (the last one may be shorter).
    """

    def __init__(
        self,
        embed: Callable[[np.ndarray], np.ndarray],
        postprocess: Callable[[np.ndarray], np.ndarray] | None,
        batch_size: int,
    ) -> None:
        self._embed, self._postprocess, self._batch_size = embed, postprocess, batch_size
        self._queue: deque[_Pending] = deque()
        self._waiting = 0  # examples queued but not yet in a batch

    @property
    def waiting(self) -> int:
        """Examples queued that have not been through the model yet."""
        return self._waiting

    def add(self, decoded: Decoded) -> list[Embedded]:
        """Queues an input; runs every full batch now possible and returns the inputs completed."""
        self._queue.append(_Pending(decoded))
        self._waiting += decoded.examples.shape[0]
        finished: list[Embedded] = []
        while self._waiting >= self._batch_size:
            finished += self._run_batch(self._batch_size)
        return finished

    def flush(self) -> list[Embedded]:
        """Runs what is left (in batches of at most ``batch_size``) and returns every input left."""
        finished: list[Embedded] = []
        while self._waiting:
            finished += self._run_batch(min(self._waiting, self._batch_size))
        return finished

    def _run_batch(self, size: int) -> list[Embedded]:
        parts: list[tuple[_Pending, int]] = []  # (input, how many of its examples) in batch order
        blocks: list[np.ndarray] = []
        needed = size
        for item in self._queue:
            if needed == 0:
                break
            take = min(item.count - item.taken, needed)
            if take:
                blocks.append(item.decoded.examples[item.taken : item.taken + take])
                parts.append((item, take))
                item.taken += take
                needed -= take
        self._waiting -= size
        out = self._embed(np.concatenate(blocks))
        offset = 0
        for item, take in parts:
            item.outputs.append(out[offset : offset + take])
            item.done += take
            offset += take
        return self._pop_finished()

    def _pop_finished(self) -> list[Embedded]:
        finished = []
        while self._queue and self._queue[0].done == self._queue[0].count:
            item = self._queue.popleft()
            embeddings = np.concatenate(item.outputs).astype(np.float32, copy=False)
            post = None if self._postprocess is None else self._postprocess(embeddings)
            decoded = item.decoded
            light = Decoded(decoded.path, decoded.examples[:0].copy(), *_info(decoded))  # frees the examples
            finished.append(Embedded(light, embeddings, post))
        return finished


def _info(decoded: Decoded) -> tuple[int, int, int]:
    return decoded.sample_rate, decoded.channels, decoded.num_samples
