"""Exact cosine search in memory: one collection's unit vectors as float32 matrices, scored by a
matrix product (NumPy's BLAS) and ranked with ``argpartition``.

Rows are appended as items arrive and marked dead when an item is removed or replaced; the
matrices are compacted when dead rows outnumber live ones. An item's segments are contiguous
rows, so its best segment score is one ``maximum.reduceat``. Scoring runs in blocks of
:data:`BLOCK_ROWS` segments, so a query of Q segments needs a (block, Q) scratch matrix, not (M, Q).
Not thread-safe: the store serialises access per collection.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vggish import params
from vggish.search.base import Item, Match, Query, Segment, cosine, segment_of

BLOCK_ROWS = 1 << 16  # segments scored at a time
_D = params.EMBEDDING_SIZE


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32; rows are non-zero, as the stores check)."""
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    unit: np.ndarray = (x / norms).astype(np.float32)
    return unit


class _Grow:
    """A float array of rows that grows by doubling."""

    def __init__(self, width: tuple[int, ...], dtype: Any) -> None:
        self.data = np.empty((16, *width), dtype)
        self.size = 0

    def extend(self, rows: np.ndarray) -> None:
        need = self.size + len(rows)
        if need > len(self.data):
            grown = np.empty((max(need, 2 * len(self.data)), *self.data.shape[1:]), self.data.dtype)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : need] = rows
        self.size = need

    @property
    def view(self) -> np.ndarray:
        return self.data[: self.size]

    def keep(self, mask: np.ndarray) -> None:
        kept = self.view[mask]
        self.size = 0
        self.extend(kept)


class ExactIndex:
    """One collection's items, searchable exactly."""

    def __init__(self) -> None:
        self.ids: list[str] = []  # per item row
        self.metadata: list[dict[str, Any] | None] = []
        self.row_of: dict[str, int] = {}  # live items only
        self.alive = _Grow((), np.bool_)
        self.clips = _Grow((_D,), np.float32)
        self.starts = _Grow((), np.int64)  # each item row's first segment row
        self.segments = _Grow((_D,), np.float32)
        self.times = _Grow((2,), np.float64)
        self.dead = 0

    def __len__(self) -> int:
        return len(self.row_of)

    def add(self, items: list[Item]) -> None:
        """Adds (or replaces) items, in one extension of each matrix."""
        if not items:
            return
        for item in items:
            self.remove(item.id)
        first_row, first_segment = len(self.ids), self.segments.size
        counts = np.array([len(item.embeddings) for item in items], np.int64)
        for offset, item in enumerate(items):
            self.row_of[item.id] = first_row + offset
            self.ids.append(item.id)
            self.metadata.append(item.metadata)
        self.alive.extend(np.ones(len(items), np.bool_))
        self.clips.extend(unit_rows(np.stack([item.clip for item in items])))
        self.starts.extend(first_segment + np.concatenate([[0], np.cumsum(counts)[:-1]]))
        self.segments.extend(unit_rows(np.concatenate([item.embeddings for item in items])))
        self.times.extend(np.concatenate([item.timestamps for item in items]))

    def remove(self, item_id: str) -> None:
        """Removes an item (nothing when absent)."""
        row = self.row_of.pop(item_id, None)
        if row is None:
            return
        self.alive.data[row] = False
        self.dead += 1
        if self.dead > max(1024, len(self.row_of)):
            self._compact()

    def _compact(self) -> None:
        alive = self.alive.view.copy()
        counts = np.diff(np.append(self.starts.view, self.segments.size))
        seg_alive = np.repeat(alive, counts)
        self.segments.keep(seg_alive)
        self.times.keep(seg_alive)
        self.clips.keep(alive)
        kept_counts = counts[alive]
        self.starts.size = 0
        self.starts.extend(np.concatenate([[0], np.cumsum(kept_counts)[:-1]]).astype(np.int64))
        self.ids = [i for i, a in zip(self.ids, alive, strict=True) if a]
        self.metadata = [m for m, a in zip(self.metadata, alive, strict=True) if a]
        self.alive.size = 0
        self.alive.extend(np.ones(len(self.ids), np.bool_))
        self.row_of = {item_id: row for row, item_id in enumerate(self.ids)}
        self.dead = 0

    def _mask(self, scores: np.ndarray, exclude: str | None) -> np.ndarray:
        scores[~self.alive.view] = -np.inf
        if exclude is not None and exclude in self.row_of:
            scores[self.row_of[exclude]] = -np.inf
        return scores

    def _top(self, scores: np.ndarray, k: int) -> np.ndarray:
        """Rows of the ``k`` best finite scores, best first (ties: the earlier row)."""
        finite = int(np.isfinite(scores).sum())
        k = min(k, finite)
        if k == 0:
            return np.empty(0, np.int64)
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        return top[np.lexsort((top, -scores[top]))]

    def search_clip(self, query: Query, k: int) -> list[Match]:
        """The ``k`` items whose clip embedding is nearest the query's (cosine)."""
        if not self.ids:
            return []
        q = unit_rows(query.clip[None])[0]
        scores = self._mask((self.clips.view @ q).astype(np.float32), query.exclude)
        return [Match(self.ids[r], cosine(scores[r]), self.metadata[r]) for r in self._top(scores, k)]

    def search_segments(self, query: Query, k: int) -> list[Match]:
        """The ``k`` items with the best (item segment, query segment) cosine, each with that pair."""
        if not self.ids:
            return []
        q = unit_rows(query.vectors)
        if len(q) == 1:  # one vector: a matrix-vector product, every segment against it
            best = self.segments.view @ q[0]
            which = np.zeros(self.segments.size, np.int64)
        else:
            best = np.empty(self.segments.size, np.float32)
            which = np.empty(self.segments.size, np.int64)
            for start in range(0, self.segments.size, BLOCK_ROWS):
                block = self.segments.view[start : start + BLOCK_ROWS] @ q.T
                which[start : start + len(block)] = block.argmax(axis=1)
                best[start : start + len(block)] = block.max(axis=1)
        per_item = self._mask(np.maximum.reduceat(best, self.starts.view), query.exclude)
        ends = np.append(self.starts.view[1:], self.segments.size)
        matches = []
        for row in self._top(per_item, k):
            first = int(self.starts.view[row])
            seg = first + int(np.argmax(best[first : ends[row]]))
            matches.append(
                Match(
                    self.ids[row],
                    cosine(per_item[row]),
                    self.metadata[row],
                    Segment(seg - first, float(self.times.view[seg, 0]), float(self.times.view[seg, 1])),
                    segment_of(query.timestamps, int(which[seg])),
                )
            )
        return matches
