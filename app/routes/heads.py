"""``/v1/heads``: train, list, export, import, delete and apply classifier heads.

A head is trained on clip-level embeddings: sent as JSON, or computed here from audio files,
each clip's embedding being the mean of its examples' embeddings (through the service's decode
pool and batcher, as ``/v1/embeddings``). Classifying applies the head to the same mean for the
clip's labels, and to each example's embedding for its frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import TypeAdapter

from app.deps import ServiceDep, SettingsDep, TimingsDep, require_api_key
from app.errors import (
    HeadExistsError,
    HeadNotFoundError,
    InvalidParameterError,
    MissingAudioError,
    UnsupportedMediaTypeError,
)
from app.ingest import check_content_length, read_body, read_form, read_inputs
from app.openapi_docs import CLASSIFY_BODY, IMPORT_BODY, PROBLEM_RESPONSES, TRAIN_BODY
from app.routes.embeddings import wait_for_disconnect
from app.schemas import (
    HEAD_NAME_PATTERN,
    AudioOptions,
    Classification,
    ClassifyQuery,
    ClassifyResponse,
    FrameLabels,
    HeadInfo,
    HeadList,
    HeadMetricsOut,
    LabelScore,
    TrainForm,
    TrainRequest,
)
from app.service import Embedded
from vggish import heads, heads_store
from vggish.features import example_timestamps
from vggish.heads_store import HeadRecord, HeadStore

router = APIRouter(prefix="/v1/heads", tags=["heads"], dependencies=[Depends(require_api_key)])
_TRAIN_ADAPTER = TypeAdapter(TrainRequest)


def get_store(request: Request) -> HeadStore:
    """The app's head store (``VGGISH_DATA_DIR/heads.sqlite3``)."""
    store: HeadStore = request.app.state.heads
    return store


StoreDep = Annotated[HeadStore, Depends(get_store)]
NameDep = Annotated[str, PathParam(pattern=HEAD_NAME_PATTERN, description="the head's name")]


@contextmanager
def _domain_errors() -> Iterator[None]:
    """The library's head errors -> problem+json (404 unknown, 422 taken or invalid)."""
    try:
        yield
    except heads_store.HeadNotFoundError as e:
        raise HeadNotFoundError(str(e)) from e
    except heads_store.HeadExistsError as e:
        raise HeadExistsError(str(e)) from e
    except ValueError as e:
        raise InvalidParameterError(str(e)) from e


def _info(record: HeadRecord) -> HeadInfo:
    metrics = None if record.metrics is None else HeadMetricsOut(**record.metrics.__dict__)
    return HeadInfo(**{**record.__dict__, "classes": list(record.classes), "metrics": metrics})


@router.post(
    "",
    status_code=201,
    response_model=HeadInfo,
    summary="Train a head",
    openapi_extra=TRAIN_BODY,
    responses=PROBLEM_RESPONSES,
)
async def train_head(
    request: Request,
    query: Annotated[AudioOptions, Query()],
    service: ServiceDep,
    store: StoreDep,
    timings: TimingsDep,
) -> Any:
    """Trains a classifier head on labelled clips and stores it.

    Multipart: `name`, repeated `file` parts and one `label` field per file (same order), optional
    `kind` and `replace`; each clip's embedding is the mean of its examples' embeddings (the query
    options say how audio becomes examples). JSON: `name`, clip-level `embeddings` and `labels`.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        x, labels, form = await _clips_from_audio(request, query, service, timings)
        source, name, kind, replace = "audio", form.name, form.kind, form.replace
    elif media_type == "application/json":
        body = _TRAIN_ADAPTER.validate_json(await read_body(request, service.settings.max_upload_bytes))
        x, labels = _as_matrix(body.embeddings), body.labels
        source, name, kind, replace = "embeddings", body.name, body.kind, body.replace
    else:
        raise UnsupportedMediaTypeError(
            f"media type {media_type or '(none)'!r} is not accepted: send multipart/form-data "
            "(audio files and labels) or application/json (embeddings and labels)"
        )
    with _domain_errors():
        head, _ = await asyncio.to_thread(heads.train, x, labels, kind)
        record = await asyncio.to_thread(store.save, name, head, replace)
    service.metrics.heads_trained.labels(source=source).inc()
    return _info(record)


def _as_matrix(rows: list[list[float]]) -> np.ndarray:
    sizes = {len(row) for row in rows}
    if len(sizes) != 1:
        raise InvalidParameterError(f"embeddings must all have 128 numbers; got lengths {sorted(sizes)}")
    return np.asarray(rows, dtype=np.float32)


async def _clips_from_audio(
    request: Request, query: AudioOptions, service: ServiceDep, timings: TimingsDep
) -> tuple[np.ndarray, list[str], TrainForm]:
    """Reads the form, checks it, and embeds each file: (N, 128) clip means, N labels, the form."""
    s = service.settings
    check_content_length(request, s.max_upload_bytes)
    inputs, fields = await read_form(request, s.max_upload_bytes)
    form = TrainForm.model_validate(
        {k: v if k == "label" or len(v) != 1 else v[0] for k, v in fields.items()}
    )
    if len(form.label) != len(inputs):
        raise InvalidParameterError(
            f"{len(inputs)} `file` parts but {len(form.label)} `label` fields: send one label per file"
        )
    if len(inputs) > s.max_train_inputs:
        limit = s.max_train_inputs
        raise InvalidParameterError(f"{len(inputs)} files sent; at most max_train_inputs={limit}")
    await _check_free(request.app.state.heads, form.name, form.replace)
    embedded = await service.embed_arrays(
        inputs, query.embed_query(), timings, lambda: wait_for_disconnect(request)
    )
    return np.stack([_clip_mean(e) for e in embedded]), form.label, form


async def _check_free(store: HeadStore, name: str, replace: bool) -> None:
    """Refuses a taken name before any audio is embedded (saving checks again, atomically)."""
    if replace:
        return
    try:
        await asyncio.to_thread(store.get, name)
    except heads_store.HeadNotFoundError:
        return
    raise HeadExistsError(f"a head named {name!r} exists; replace it with replace=true")


def _clip_mean(e: Embedded) -> np.ndarray:
    """A clip's embedding: the mean of its examples' (float64 sum, float32 result)."""
    if e.embeddings.shape[0] == 0:
        raise InvalidParameterError(
            f"{e.name or 'a clip'} is shorter than 0.975 s, so it has no example; send pad=true"
        )
    mean: np.ndarray = e.embeddings.mean(axis=0, dtype=np.float64).astype(np.float32)
    return mean


@router.get("", response_model=HeadList, summary="List heads", responses=PROBLEM_RESPONSES)
async def list_heads(store: StoreDep) -> Any:
    """Every stored head, by name."""
    records = await asyncio.to_thread(store.list)
    return HeadList(data=[_info(r) for r in records])


@router.get("/{name}", response_model=HeadInfo, summary="Describe a head", responses=PROBLEM_RESPONSES)
async def get_head(name: NameDep, store: StoreDep) -> Any:
    """One head's classes, kind, metrics and version."""
    with _domain_errors():
        return _info(await asyncio.to_thread(store.get, name))


@router.delete("/{name}", status_code=204, summary="Delete a head", responses=PROBLEM_RESPONSES)
async def delete_head(name: NameDep, store: StoreDep) -> Response:
    """Deletes one head."""
    with _domain_errors():
        await asyncio.to_thread(store.delete, name)
    return Response(status_code=204)


@router.get(
    "/{name}/export",
    response_class=Response,
    summary="Export a head",
    responses={200: {"content": {"application/octet-stream": {}}}, **PROBLEM_RESPONSES},
)
async def export_head(name: NameDep, store: StoreDep) -> Response:
    """The head as a safetensors file: its tensors, and metadata (format, version, kind, classes,
    feature normalisation as the `norm.mean` / `norm.std` tensors)."""
    with _domain_errors():
        data = await asyncio.to_thread(store.export, name)
    disposition = f'attachment; filename="{name}.safetensors"'
    return Response(data, media_type="application/octet-stream", headers={"Content-Disposition": disposition})


@router.put(
    "/{name}",
    response_model=HeadInfo,
    status_code=201,
    summary="Import a head",
    openapi_extra=IMPORT_BODY,
    responses={200: {"description": "Replaced a head of that name"}, **PROBLEM_RESPONSES},
)
async def import_head(
    name: NameDep, request: Request, response: Response, store: StoreDep, settings: SettingsDep
) -> Any:
    """Stores a safetensors file made by `GET /v1/heads/{name}/export` (validated; never
    unpickled) under `name`: 201 when new, 200 when it replaces a head."""
    check_content_length(request, settings.max_upload_bytes)
    data = await read_body(request, settings.max_upload_bytes)
    if not data:
        raise MissingAudioError("the request body is empty: send a head's .safetensors bytes")
    with _domain_errors():
        head = heads.from_safetensors(data)
        record = await asyncio.to_thread(store.save, name, head, True)
    request.app.state.metrics.heads_trained.labels(source="import").inc()
    response.status_code = 201 if record.version == 1 else 200
    return _info(record)


@router.post(
    "/{name}/classify",
    response_model=ClassifyResponse,
    summary="Classify audio with a head",
    openapi_extra=CLASSIFY_BODY,
    responses=PROBLEM_RESPONSES,
)
async def classify(
    name: NameDep,
    request: Request,
    query: Annotated[ClassifyQuery, Query()],
    service: ServiceDep,
    store: StoreDep,
    timings: TimingsDep,
) -> Any:
    """Labels for each input (the head applied to the clip's mean embedding) and for each of its
    examples (`frames`). The audio forms and options are those of `POST /v1/embeddings`."""
    with _domain_errors():
        _, head = await asyncio.to_thread(store.load, name)
    s = service.settings
    inputs = await read_inputs(request, s.max_upload_bytes, s.max_inputs)
    embedded = await service.embed_arrays(
        inputs, query.embed_query(), timings, lambda: wait_for_disconnect(request)
    )
    service.metrics.classifications.inc(len(embedded))
    data = [_classification(i, e, head, query) for i, e in enumerate(embedded)]
    return ClassifyResponse(head=name, weights=service.weights_id, data=data)


def _ranked(scores: np.ndarray, classes: tuple[str, ...], top_k: int | None) -> list[LabelScore]:
    order = sorted(range(len(classes)), key=lambda c: (-scores[c], c))[:top_k]
    return [LabelScore(label=classes[c], score=float(scores[c])) for c in order]


def _classification(index: int, e: Embedded, head: heads.Head, query: ClassifyQuery) -> Classification:
    count = e.embeddings.shape[0]
    labels: list[LabelScore] = []
    frames: list[FrameLabels] = []
    if count:
        labels = _ranked(head.scores(_clip_mean(e)[None])[0], head.classes, query.top_k)
        spans = example_timestamps(count, query.hop)
        per_example = head.scores(e.embeddings)
        frames = [
            FrameLabels(start=float(a), end=float(b), labels=_ranked(row, head.classes, query.top_k))
            for (a, b), row in zip(spans, per_example, strict=True)
        ]
    duration = e.num_samples / e.probed.sample_rate
    return Classification(index=index, name=e.name, duration=duration, labels=labels, frames=frames)
