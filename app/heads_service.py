"""Classifier heads as a service: train from audio or embeddings, classify, import, export.

Audio goes through the embedding service (the one source of examples and the shared batcher);
a clip's embedding is the mean of its examples' embeddings. Each head records what made its
features (the weights' SHA-256, hop, pad, resampler: :class:`vggish.heads.FeatureSpec`), and is
refused (409) on other ones unless forced.

Trainings run on threads of their own (:class:`Trainings`), so that store reads keep the default
pool however many trainings wait; a training stops between optimiser steps when its client goes
away, its request times out, or the server stops. Limits on clips and classes are checked while
the body is validated, before any training.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pydantic import TypeAdapter

from vggish import heads, params
from vggish.errors import CancelledError, InvalidInputError, LimitExceededError
from vggish.features.logmel import example_timestamps
from vggish.heads import FeatureSpec
from vggish.heads.store import BaseHeadStore, HeadExistsError, HeadNotFoundError, HeadRecord
from vggish.pipeline.driver import EmbeddingResult
from vggish.pipeline.options import EmbedOptions

from .errors import NotReadyError
from .ingest import Upload
from .metrics import Metrics
from .responses import clip_mean, short_clip_warning
from .schemas import (
    Classification,
    ClassifyResponse,
    Features,
    FrameLabels,
    HeadInfo,
    HeadMetricsOut,
    LabelScore,
    TrainForm,
    TrainingLimitError,
    TrainingLimits,
    TrainRequest,
)
from .service import Disconnected, EmbeddingService, Timings

_TRAIN_ADAPTER = TypeAdapter(TrainRequest)
_FIELD_NAMES = {"weights_sha256": "weights", "hop_seconds": "hop", "pad": "pad", "resampler": "resampler"}


def identity_warnings(record: HeadRecord) -> list[str]:
    """What a head's listing says when it does not record what made its features."""
    missing = [label for key, label in _FIELD_NAMES.items() if getattr(record.features, key) is None]
    if not missing:
        return []
    if len(missing) == len(_FIELD_NAMES):
        return [
            f"head {record.name!r} does not record the weights and settings it was trained on "
            "(stored before heads did, or trained on embeddings sent without `features`): it is "
            "never refused, and its scores mean nothing on features of other weights"
        ]
    return [f"head {record.name!r} does not record its {', '.join(missing)}: those are never checked"]


def head_info(record: HeadRecord, warnings: Sequence[str | None] = ()) -> HeadInfo:
    """A stored head as its schema, with what to warn of (its own identity's gaps first)."""
    metrics = None if record.metrics is None else HeadMetricsOut(**record.metrics.__dict__)
    said = [*identity_warnings(record), *(w for w in warnings if w)]
    return HeadInfo(
        **{
            **record.__dict__,
            "classes": list(record.classes),
            "metrics": metrics,
            "features": Features(**record.features.to_dict()),
            "warnings": said or None,
        }
    )


class Trainings:
    """Head trainings on a bounded pool of their own threads; each one stoppable.

    Args:
        threads: trainings that run at once (each uses one core); more wait their turn.
        metrics: where running trainings and optimiser steps are counted.
    """

    def __init__(self, threads: int, metrics: Metrics) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="vggish-train")
        self.metrics = metrics
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Stops every training at its next step (the server is stopping); safe from a signal handler."""
        self.stopping.set()

    def close(self) -> None:
        """Stops the trainings, drops the waiting ones and joins the threads."""
        self.stop()
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def train(
        self,
        x: np.ndarray,
        labels: Sequence[str],
        kind: heads.HeadKind,
        features: FeatureSpec,
        cancel: threading.Event,
    ) -> heads.Head:
        """Trains a head on a training thread (waiting for one when all are busy).

        Raises:
            NotReadyError: the server is stopping (503).
            CancelledError: ``cancel`` was set (the request is gone).
            InvalidInputError: a bad training set.
        """
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.pool, self._train, x, labels, kind, features, cancel)
        except (CancelledError, RuntimeError) as e:  # RuntimeError: the pool is shut down
            if self.stopping.is_set():
                raise NotReadyError(
                    "the server is shutting down: send the training again", headers={"Retry-After": "1"}
                ) from e
            raise

    def _train(
        self,
        x: np.ndarray,
        labels: Sequence[str],
        kind: heads.HeadKind,
        features: FeatureSpec,
        cancel: threading.Event,
    ) -> heads.Head:
        def cancelled() -> bool:
            self.metrics.training_steps.inc()
            return cancel.is_set() or self.stopping.is_set()

        if cancelled():  # it waited its turn: its request may be gone already
            raise CancelledError("the training was cancelled before it started")
        with self.metrics.trainings_running.track_inprogress():
            head, _ = heads.train(x, list(labels), kind, features=features, cancelled=cancelled)
        return head


class HeadsService:
    """The heads of one store, trained and applied with one embedding service.

    Args:
        store: where heads live (SQLite or PostgreSQL).
        embedding: the embedding service (model, decode pool, batcher, metrics).
        trainings: the training threads.
    """

    def __init__(self, store: BaseHeadStore, embedding: EmbeddingService, trainings: Trainings) -> None:
        self.store = store
        self.embedding = embedding
        self.trainings = trainings

    @property
    def limits(self) -> TrainingLimits:
        """The counts a training may hold."""
        s = self.embedding.settings
        return TrainingLimits(s.max_train_examples, s.max_train_classes)

    def weights_sha256(self) -> str | None:
        """The server's weights' SHA-256 (``random`` for the demo weights), when known."""
        sha = self.embedding.model.weights_info.get("sha256")
        return sha or None

    def read_form(self, fields: dict[str, list[str]]) -> TrainForm:
        """A training form's text fields, counted against the limits as they are validated.

        Raises:
            LimitExceededError: more labels than ``max_train_examples``, or classes than
                ``max_train_classes`` (413).
            pydantic.ValidationError: a malformed field (422).
        """
        raw = {k: v if k == "label" or len(v) != 1 else v[0] for k, v in fields.items()}
        try:
            return TrainForm.model_validate(raw, context={"limits": self.limits})
        except TrainingLimitError as e:
            raise LimitExceededError(e.limit, e.detail) from None

    async def read_request(self, body: bytes) -> TrainRequest:
        """A JSON training body, its rows and classes counted before their numbers are validated.

        Raises:
            LimitExceededError: over ``max_train_examples`` or ``max_train_classes`` (413).
            pydantic.ValidationError: malformed JSON or fields (422).
        """
        try:
            return await asyncio.to_thread(
                _TRAIN_ADAPTER.validate_json, body, context={"limits": self.limits}
            )
        except TrainingLimitError as e:
            raise LimitExceededError(e.limit, e.detail) from None

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
    ) -> HeadInfo:
        """Embeds each clip of a training form, trains on the clip means, stores the head (which
        records the server's weights and ``options``).

        Raises:
            LimitExceededError: more clips than ``max_train_inputs`` or ``max_train_examples``.
            InvalidInputError: not one label per clip; a clip without an example (``pad=false``).
            HeadExistsError: the name is taken and ``replace`` is false.
        """
        s = self.embedding.settings
        for limit, most in (
            ("max_train_inputs", s.max_train_inputs),
            ("max_train_examples", s.max_train_examples),
        ):
            if len(inputs) > most:
                raise LimitExceededError(limit, f"{len(inputs)} files sent; at most {most} per training")
        if len(form.label) != len(inputs):
            raise InvalidInputError(
                f"{len(inputs)} `file` parts but {len(form.label)} `label` fields: send one label per file"
            )
        await self.check_free(form.name, form.replace)
        embedded = await self.embedding.embed(inputs, options, timings, disconnected)
        x = _clip_means(embedded)
        features = FeatureSpec.for_model(self.embedding.model, options)
        record = await self.train(form.name, x, form.label, form.kind, form.replace, features, disconnected)
        self.embedding.metrics.heads_trained.labels(source="audio").inc()
        return head_info(record)

    async def train_on_embeddings(self, body: TrainRequest, disconnected: Disconnected) -> HeadInfo:
        """Trains on clip-level embeddings sent as numbers and stores the head, recording the
        ``features`` the body declares (unknown when it declares none).

        Raises:
            InvalidInputError: rows of other lengths than 128, bad ``features``, or a bad training set.
            HeadExistsError: the name is taken and ``replace`` is false (before training).
        """
        sizes = {len(row) for row in body.embeddings}
        if sizes != {params.EMBEDDING_SIZE}:
            raise InvalidInputError(f"embeddings must all have 128 numbers; got lengths {sorted(sizes)}")
        declared = {} if body.features is None else body.features.model_dump(exclude_none=True)
        features = FeatureSpec.from_dict(declared)
        await self.check_free(body.name, body.replace)
        x = np.asarray(body.embeddings, dtype=np.float32)
        record = await self.train(body.name, x, body.labels, body.kind, body.replace, features, disconnected)
        self.embedding.metrics.heads_trained.labels(source="embeddings").inc()
        return head_info(record)

    async def train(
        self,
        name: str,
        x: np.ndarray,
        labels: Sequence[str],
        kind: heads.HeadKind,
        replace: bool,
        features: FeatureSpec,
        disconnected: Disconnected,
    ) -> HeadRecord:
        """Trains on a training thread (within the request timeout, while the client waits), then saves."""
        head: heads.Head = await self.embedding.bounded(
            lambda cancel: self.trainings.train(x, labels, kind, features, cancel), disconnected
        )
        return await asyncio.to_thread(self.store.save, name, head, replace)

    async def import_head(self, name: str, data: bytes, force: bool) -> HeadInfo:
        """Validates a head file (never unpickled) and stores it under ``name``, replacing.

        Raises:
            InvalidInputError: not a valid head file (422).
            WeightsMismatchError: the head records other weights than the server's and ``force``
                is false (409); hop, pad and resampler are checked when it classifies.
        """
        head = heads.from_safetensors(data)
        warning = heads.check_compatible(
            head.features, FeatureSpec(weights_sha256=self.weights_sha256()), force, name
        )
        record = await asyncio.to_thread(self.store.save, name, head, True)
        self.embedding.metrics.heads_trained.labels(source="import").inc()
        forced = warning if head.features.weights_sha256 is not None else None  # else: in its listing
        return head_info(record, [forced])

    async def classify(
        self,
        name: str,
        inputs: list[Upload],
        options: EmbedOptions,
        top_k: int | None,
        force: bool,
        timings: Timings,
        disconnected: Disconnected,
    ) -> ClassifyResponse:
        """Labels for each input (the head on the clip's mean embedding) and each of its examples.

        Raises:
            HeadNotFoundError: no such head (404).
            WeightsMismatchError: the head was trained on other weights or settings than the
                server's and ``options`` and ``force`` is false (409), before any audio is embedded.
        """
        record, head = await asyncio.to_thread(self.store.load, name)
        used = FeatureSpec.for_model(self.embedding.model, options)
        warning = heads.check_compatible(record.features, used, force, name)
        embedded = await self.embedding.embed(inputs, options, timings, disconnected)
        self.embedding.metrics.classifications.inc(len(embedded))
        data = [_classification(i, e, head, options, top_k) for i, e in enumerate(embedded)]
        return ClassifyResponse(
            head=name, weights=self.embedding.weights_id, data=data, warnings=[warning] if warning else None
        )


def _clip_means(embedded: list[EmbeddingResult]) -> np.ndarray:
    """(N, 128): each clip's training embedding, the mean of its examples'.

    Raises:
        InvalidInputError: clips without an example (shorter than 0.975 s with ``pad=false``),
            all named.
    """
    short = [e for e in embedded if e.embeddings.shape[0] == 0]
    if short:
        names = ", ".join(f"{e.name or 'a clip'} ({e.duration:.3f} s)" for e in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise InvalidInputError(
            f"{len(short)} clip(s) shorter than {params.EXAMPLE_SPAN_SECONDS} s have no example: "
            f"{names}{more}; send pad=true (the default for heads) to zero-pad them"
        )
    return np.stack([clip_mean(e.embeddings) for e in embedded])


def ranked_labels(scores: np.ndarray, classes: tuple[str, ...], top_k: int | None) -> list[LabelScore]:
    order = sorted(range(len(classes)), key=lambda c: (-scores[c], c))[:top_k]
    return [LabelScore(label=classes[c], score=float(scores[c])) for c in order]


def _classification(
    index: int, e: EmbeddingResult, head: heads.Head, options: EmbedOptions, top_k: int | None
) -> Classification:
    count = e.embeddings.shape[0]
    if not count:
        return Classification(
            index=index,
            name=e.name,
            duration=e.duration,
            labels=[],
            frames=[],
            warnings=[short_clip_warning(e.duration, "labels")],
        )
    labels = ranked_labels(head.scores(clip_mean(e.embeddings)[None])[0], head.classes, top_k)
    spans = example_timestamps(count, options.hop_seconds)
    per_example = head.scores(e.embeddings)
    frames = [
        FrameLabels(start=float(a), end=float(b), labels=ranked_labels(row, head.classes, top_k))
        for (a, b), row in zip(spans, per_example, strict=True)
    ]
    return Classification(
        index=index, name=e.name, duration=e.duration, labels=labels, frames=frames, warnings=None
    )
