"""Classifier heads as a service: train from audio or embeddings, classify, import, export.

Audio goes through the embedding service (the one source of examples and the shared batcher);
a clip's embedding is the mean of its examples' embeddings. Store calls and training run in
worker threads so that the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from vggish import heads, params
from vggish.errors import InvalidInputError, LimitExceededError
from vggish.features import example_timestamps
from vggish.heads_store import HeadExistsError, HeadNotFoundError, HeadRecord, HeadStore
from vggish.options import EmbedOptions
from vggish.pipeline import EmbeddingResult

from .ingest import Upload
from .responses import clip_mean
from .schemas import (
    Classification,
    ClassifyResponse,
    FrameLabels,
    HeadInfo,
    HeadMetricsOut,
    LabelScore,
    TrainForm,
    TrainRequest,
)
from .service import Disconnected, EmbeddingService, Timings


def head_info(record: HeadRecord) -> HeadInfo:
    """A stored head as its schema."""
    metrics = None if record.metrics is None else HeadMetricsOut(**record.metrics.__dict__)
    return HeadInfo(**{**record.__dict__, "classes": list(record.classes), "metrics": metrics})


class HeadsService:
    """The heads of one store, trained and applied with one embedding service.

    Args:
        store: where heads live.
        embedding: the embedding service (model, decode pool, batcher, metrics).
    """

    def __init__(self, store: HeadStore, embedding: EmbeddingService) -> None:
        self.store = store
        self.embedding = embedding

    async def check_free(self, name: str, replace: bool) -> None:
        """Refuses a taken name before any audio is embedded (saving checks again, atomically)."""
        if replace:
            return
        try:
            await asyncio.to_thread(self.store.get, name)
        except HeadNotFoundError:
            return
        raise HeadExistsError(f"a head named {name!r} exists; replace it with replace=true")

    async def train_on_audio(
        self,
        form: TrainForm,
        inputs: list[Upload],
        options: EmbedOptions,
        timings: Timings,
        disconnected: Disconnected,
    ) -> HeadRecord:
        """Embeds each clip of a training form, trains on the clip means, stores the head.

        Raises:
            LimitExceededError: more clips than ``max_train_inputs``.
            InvalidInputError: not one label per clip; a clip without an example.
            HeadExistsError: the name is taken and ``replace`` is false.
        """
        limit = self.embedding.settings.max_train_inputs
        if len(inputs) > limit:
            raise LimitExceededError("max_train_inputs", f"{len(inputs)} files sent; at most {limit}")
        if len(form.label) != len(inputs):
            raise InvalidInputError(
                f"{len(inputs)} `file` parts but {len(form.label)} `label` fields: send one label per file"
            )
        await self.check_free(form.name, form.replace)
        embedded = await self.embedding.embed(inputs, options, timings, disconnected)
        x = np.stack([_clip(e) for e in embedded])
        record = await self.train(form.name, x, form.label, form.kind, form.replace)
        self.embedding.metrics.heads_trained.labels(source="audio").inc()
        return record

    async def train_on_embeddings(self, body: TrainRequest) -> HeadRecord:
        """Trains on clip-level embeddings sent as numbers and stores the head.

        Raises:
            InvalidInputError: rows of other lengths than 128, or a bad training set.
        """
        sizes = {len(row) for row in body.embeddings}
        if sizes != {params.EMBEDDING_SIZE}:
            raise InvalidInputError(f"embeddings must all have 128 numbers; got lengths {sorted(sizes)}")
        x = np.asarray(body.embeddings, dtype=np.float32)
        record = await self.train(body.name, x, body.labels, body.kind, body.replace)
        self.embedding.metrics.heads_trained.labels(source="embeddings").inc()
        return record

    async def train(
        self, name: str, x: np.ndarray, labels: Sequence[str], kind: heads.HeadKind, replace: bool
    ) -> HeadRecord:
        head, _ = await asyncio.to_thread(heads.train, x, list(labels), kind)
        return await asyncio.to_thread(self.store.save, name, head, replace)

    async def import_head(self, name: str, data: bytes) -> HeadRecord:
        """Validates a head file (never unpickled) and stores it under ``name``, replacing."""
        head = heads.from_safetensors(data)
        record = await asyncio.to_thread(self.store.save, name, head, True)
        self.embedding.metrics.heads_trained.labels(source="import").inc()
        return record

    async def classify(
        self,
        name: str,
        inputs: list[Upload],
        options: EmbedOptions,
        top_k: int | None,
        timings: Timings,
        disconnected: Disconnected,
    ) -> ClassifyResponse:
        """Labels for each input (the head on the clip's mean embedding) and each of its examples."""
        _, head = await asyncio.to_thread(self.store.load, name)
        embedded = await self.embedding.embed(inputs, options, timings, disconnected)
        self.embedding.metrics.classifications.inc(len(embedded))
        data = [_classification(i, e, head, options, top_k) for i, e in enumerate(embedded)]
        return ClassifyResponse(head=name, weights=self.embedding.weights_id, data=data)


def _clip(e: EmbeddingResult) -> np.ndarray:
    """A clip's training embedding: the mean of its examples'."""
    if e.embeddings.shape[0] == 0:
        raise InvalidInputError(
            f"{e.name or 'a clip'} is shorter than 0.975 s, so it has no example; send pad=true"
        )
    return clip_mean(e.embeddings)


def _ranked(scores: np.ndarray, classes: tuple[str, ...], top_k: int | None) -> list[LabelScore]:
    order = sorted(range(len(classes)), key=lambda c: (-scores[c], c))[:top_k]
    return [LabelScore(label=classes[c], score=float(scores[c])) for c in order]


def _classification(
    index: int, e: EmbeddingResult, head: heads.Head, options: EmbedOptions, top_k: int | None
) -> Classification:
    count = e.embeddings.shape[0]
    labels: list[LabelScore] = []
    frames: list[FrameLabels] = []
    if count:
        labels = _ranked(head.scores(clip_mean(e.embeddings)[None])[0], head.classes, top_k)
        spans = example_timestamps(count, options.hop_seconds)
        per_example = head.scores(e.embeddings)
        frames = [
            FrameLabels(start=float(a), end=float(b), labels=_ranked(row, head.classes, top_k))
            for (a, b), row in zip(spans, per_example, strict=True)
        ]
    return Classification(index=index, name=e.name, duration=e.duration, labels=labels, frames=frames)
