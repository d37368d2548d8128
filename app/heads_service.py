"""Classifier heads as a service: train from audio or embeddings, classify, import, export.

Audio goes through the embedding service; a clip's embedding is the mean of its examples'. A head
records the weights that made its embeddings (:class:`vggish.heads.FeatureSpec`) and is refused
(409) on other weights unless forced.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from starlette.requests import Request

from vggish import heads, params
from vggish.errors import CancelledError, InvalidInputError, LimitExceededError, plural
from vggish.features.logmel import example_timestamps
from vggish.heads import FeatureSpec, clip_mean
from vggish.heads.store import BaseHeadStore, HeadRecord
from vggish.pipeline.driver import EmbeddingResult
from vggish.pipeline.options import EmbedOptions

from .errors import NotReadyError
from .heads_json import read_train_body
from .ingest import Upload
from .metrics import Metrics
from .responses import short_clip_warning
from .schemas import (
    DEFAULT_FRAME_TOP_K,
    Classification,
    ClassifyResponse,
    Features,
    FrameLabels,
    HeadInfo,
    HeadList,
    HeadMetricsOut,
    LabelScore,
    TrainForm,
    TrainOptions,
)
from .service import Disconnected, EmbeddingService, Timings


def head_info(record: HeadRecord, warnings: Sequence[str | None] = ()) -> HeadInfo:
    """A stored head as its schema, with what to warn of (first: that it does not record its weights)."""
    metrics = None if record.metrics is None else HeadMetricsOut(**record.metrics.__dict__)
    said = [w for w in warnings if w]
    if record.features.weights_sha256 is None:
        said.insert(
            0,
            f"head {record.name!r} does not record the weights it was trained on (stored before heads "
            "did, or trained on embeddings sent without `features.weights_sha256`): it is never "
            "refused, and its scores mean nothing on embeddings of other weights",
        )
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
    """Head trainings on a pool of ``threads`` threads of their own (more wait their turn)."""

    def __init__(self, threads: int, metrics: Metrics) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="vggish-train")
        self.metrics = metrics
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Stops every training at its next step; safe from a signal handler."""
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
        """Trains a head on a training thread (NotReadyError when the server stops, 503;
        CancelledError when ``cancel`` is set; InvalidInputError for a bad training set)."""

        def cancelled() -> bool:
            self.metrics.training_steps.inc()
            return cancel.is_set() or self.stopping.is_set()

        def run() -> heads.Head:
            if cancelled():  # it waited its turn: its request may be gone already
                raise CancelledError("the training was cancelled before it started")
            with self.metrics.trainings_running.track_inprogress():
                return heads.train(x, list(labels), kind, features=features, cancelled=cancelled)[0]

        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, run)
        except (CancelledError, RuntimeError) as e:  # RuntimeError: the pool is shut down
            if self.stopping.is_set():
                raise NotReadyError(
                    "the server is shutting down: send the training again", headers={"Retry-After": "1"}
                ) from e
            raise


class HeadsService:
    """The heads of one store, trained and applied with one embedding service."""

    def __init__(self, store: BaseHeadStore, embedding: EmbeddingService, trainings: Trainings) -> None:
        self.store = store
        self.embedding = embedding
        self.trainings = trainings

    def read_form(self, fields: dict[str, list[str]]) -> TrainForm:
        """A training form's text fields, counted against the training limits (LimitExceededError,
        413) as they are validated (pydantic.ValidationError, 422)."""
        labels, limits = fields.get("label", []), self.embedding.settings
        for limit, count, what in (
            ("max_train_examples", len(labels), "clips"),
            ("max_train_classes", len(set(labels)), "classes"),
        ):
            if count > (most := getattr(limits, limit)):
                raise LimitExceededError(limit, f"{count} {what} sent; at most {most} per training")
        return TrainForm.model_validate(
            {k: v if k == "label" or len(v) != 1 else v[0] for k, v in fields.items()}
        )

    async def check_can_save(self, name: str, replace: bool) -> None:
        """Refuses, before any audio is embedded or any training, a head that could not be saved:
        a store that cannot be written now (503, 507), a taken name (409). Saving checks again."""
        await asyncio.to_thread(self.store.check_writable)
        if not replace:
            await asyncio.to_thread(self.store.check_free, name)

    async def train_on_audio(
        self,
        form: TrainForm,
        inputs: list[Upload],
        options: EmbedOptions,
        timings: Timings,
        disconnected: Disconnected,
    ) -> HeadInfo:
        """Embeds each clip of a training form, trains on the clip means, stores the head (which
        records the server's weights and ``options``); what can be refused is, before embedding."""
        for limit in ("max_train_inputs", "max_train_examples"):
            if len(inputs) > (most := getattr(self.embedding.settings, limit)):
                sent = plural(len(inputs), "file")
                raise LimitExceededError(limit, f"{sent} sent; at most {most} per training")
        if len(form.label) != len(inputs):
            raise InvalidInputError(
                f"{len(inputs)} `file` parts but {len(form.label)} `label` fields: send one label per file"
            )
        await self.check_can_save(form.name, form.replace)
        embedded = await self.embedding.embed(inputs, options, timings, disconnected)
        features = FeatureSpec.for_model(self.embedding.model, options)
        return await self.train(form, _clip_means(embedded), form.label, features, disconnected, "audio")

    async def train_on_embeddings(self, request: Request, disconnected: Disconnected) -> HeadInfo:
        """Trains on a JSON body's clip-level embeddings (read as it arrives) and stores the head,
        recording the ``features`` the body declares (unknown when it declares none)."""
        body = await read_train_body(request, self.embedding.settings)
        o = body.options
        features = FeatureSpec.from_dict(
            {} if o.features is None else o.features.model_dump(exclude_none=True)
        )
        await self.check_can_save(o.name, o.replace)
        return await self.train(o, body.embeddings, body.labels, features, disconnected, "embeddings")

    async def train(
        self,
        o: TrainForm | TrainOptions,
        x: np.ndarray,
        labels: Sequence[str],
        features: FeatureSpec,
        disconnected: Disconnected,
        source: str,
    ) -> HeadInfo:
        """Trains head ``o.name`` on a training thread (within the request timeout, while the client
        waits), then saves it."""
        head = await self.embedding.bounded(
            lambda cancel: self.trainings.train(x, labels, o.kind, features, cancel), disconnected
        )
        max_heads = self.embedding.settings.max_heads
        record = await asyncio.to_thread(self.store.save, o.name, head, o.replace, max_heads)
        self.embedding.metrics.heads_trained.labels(source=source).inc()
        return head_info(record)

    async def import_head(self, name: str, data: bytes, force: bool) -> HeadInfo:
        """Validates a head file (never unpickled) and stores it under ``name``, replacing; one
        that records other weights than the server's is refused unless ``force``."""
        head = await asyncio.to_thread(heads.from_safetensors, data)
        server = FeatureSpec(weights_sha256=self.embedding.model.weights_info.get("sha256") or None)
        warning = heads.check_compatible(head.features, server, force, name)
        record = await asyncio.to_thread(self.store.save, name, head, True, self.embedding.settings.max_heads)
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
    ) -> bytes:
        """Labels for each input (the head on the clip's mean embedding) and each of its examples,
        as the JSON of a :class:`ClassifyResponse` (built on a worker thread). Other weights
        (unless ``force``) and answers over ``max_answer_labels`` are refused before the work."""
        record, head = await asyncio.to_thread(self.store.load, name)
        used = FeatureSpec.for_model(self.embedding.model, options)
        warning = heads.check_compatible(record.features, used, force, name)
        self._check_answer(len(head.classes), top_k, [0] * len(inputs))
        embedded = await self.embedding.embed(inputs, options, timings, disconnected)
        self._check_answer(len(head.classes), top_k, [e.embeddings.shape[0] for e in embedded])
        self.embedding.metrics.classifications.inc(len(embedded))

        def answer() -> bytes:
            data = [_classification(i, e, head, options, top_k) for i, e in enumerate(embedded)]
            said = [warning] if warning else None
            response = ClassifyResponse(
                head=name, weights=self.embedding.weights_id, data=data, warnings=said
            )
            return response.model_dump_json(exclude_none=True).encode()

        return await asyncio.to_thread(answer)

    def _check_answer(self, classes: int, top_k: int | None, frames: list[int]) -> None:
        """Refuses an answer of more labels than ``max_answer_labels`` (413)."""
        most = self.embedding.settings.max_answer_labels
        clip, frame = min(top_k or classes, classes), min(top_k or DEFAULT_FRAME_TOP_K, classes)
        total = sum(clip + n * frame for n in frames)
        if total > most:
            raise LimitExceededError(
                "max_answer_labels",
                f"the answer would hold {total} labels ({plural(len(frames), 'clip')} x {clip} and "
                f"{plural(sum(frames), 'frame')} x {frame}); at most {most}: ask for fewer with top_k, "
                "use a larger hop, send shorter or fewer inputs, or raise VGGISH_MAX_ANSWER_LABELS",
            )


async def head_list(store: BaseHeadStore, limit: int, cursor: str | None) -> bytes:
    """A page of ``GET /v1/heads`` as JSON: ``limit`` heads after ``cursor`` by name."""

    def page() -> bytes:
        records = store.list(cursor, limit + 1)
        shown = records[:limit]
        more = f"/v1/heads?limit={limit}&cursor={shown[-1].name}" if len(records) > limit else None
        return HeadList(data=[head_info(r) for r in shown], next=more).model_dump_json().encode()

    return await asyncio.to_thread(page)


def _clip_means(embedded: list[EmbeddingResult]) -> np.ndarray:
    """(N, 128): each clip's mean embedding (InvalidInputError naming the clips without an example)."""
    short = [e for e in embedded if e.embeddings.shape[0] == 0]
    if short:
        names = ", ".join(f"{e.name or 'a clip'} ({e.duration:.3f} s)" for e in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise InvalidInputError(
            f"{len(short)} clip(s) shorter than {params.EXAMPLE_SPAN_SECONDS} s have no example: "
            f"{names}{more}; send pad=true (the default for heads) to zero-pad them"
        )
    return np.stack([clip_mean(e.embeddings) for e in embedded])


def _classification(
    index: int, e: EmbeddingResult, head: heads.Head, options: EmbedOptions, top_k: int | None
) -> Classification:
    count = e.embeddings.shape[0]
    clip: dict[str, Any] = {"index": index, "name": e.name, "duration": e.duration}
    if not count:
        return Classification(
            **clip, labels=[], frames=[], warnings=[short_clip_warning(e.duration, "labels")]
        )
    labels = [LabelScore(**x) for x in head.top_labels(clip_mean(e.embeddings)[None], top_k)[0]]
    spans = example_timestamps(count, options.hop_seconds)
    per_frame = head.top_labels(e.embeddings, top_k or DEFAULT_FRAME_TOP_K)
    frames = [
        FrameLabels(start=float(a), end=float(b), labels=[LabelScore(**x) for x in row])
        for (a, b), row in zip(spans, per_frame, strict=True)
    ]
    return Classification(**clip, labels=labels, frames=frames, warnings=None)
