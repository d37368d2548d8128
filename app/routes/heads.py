"""``/v1/heads``: train, list, export, import, delete and apply classifier heads."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import TypeAdapter

from ..deps import HeadsDep, StoreDep, TimingsDep, require_api_key
from ..errors import MissingAudioError, UnsupportedMediaTypeError
from ..heads_service import head_info
from ..ingest import check_content_length, media_type, read_body, read_form, read_inputs
from ..openapi_docs import CLASSIFY_BODY, IMPORT_BODY, PROBLEM_RESPONSES, TRAIN_BODY
from ..schemas import (
    HEAD_NAME_PATTERN,
    AudioOptions,
    ClassifyQuery,
    ClassifyResponse,
    HeadInfo,
    HeadList,
    TrainForm,
    TrainRequest,
)
from .embeddings import wait_for_disconnect

router = APIRouter(prefix="/v1/heads", tags=["heads"], dependencies=[Depends(require_api_key)])
_TRAIN_ADAPTER = TypeAdapter(TrainRequest)
NameDep = Annotated[str, PathParam(pattern=HEAD_NAME_PATTERN, description="the head's name")]


@router.post(
    "",
    status_code=201,
    response_model=HeadInfo,
    summary="Train a head",
    openapi_extra=TRAIN_BODY,
    responses=PROBLEM_RESPONSES,
)
async def train_head(
    request: Request, query: Annotated[AudioOptions, Query()], heads: HeadsDep, timings: TimingsDep
) -> Any:
    """Trains a classifier head on labelled clips and stores it.

    Multipart: `name`, repeated `file` parts and one `label` field per file (same order), optional
    `kind` and `replace`; each clip's embedding is the mean of its examples' embeddings (the query
    options say how audio becomes examples). JSON: `name`, clip-level `embeddings` and `labels`.
    """
    limit = heads.embedding.settings.max_upload_bytes
    kind = media_type(request)
    if kind == "multipart/form-data":
        check_content_length(request, limit)
        inputs, fields = await read_form(request, limit)
        form = TrainForm.model_validate(
            {k: v if k == "label" or len(v) != 1 else v[0] for k, v in fields.items()}
        )
        options = heads.embedding.options(query.hop, query.pad, query.resampler)
        record = await heads.train_on_audio(
            form, inputs, options, timings, lambda: wait_for_disconnect(request)
        )
    elif kind == "application/json":
        body = _TRAIN_ADAPTER.validate_json(await read_body(request, limit))
        record = await heads.train_on_embeddings(body)
    else:
        raise UnsupportedMediaTypeError(
            f"media type {kind or '(none)'!r} is not accepted: send multipart/form-data "
            "(audio files and labels) or application/json (embeddings and labels)"
        )
    return head_info(record)


@router.get("", response_model=HeadList, summary="List heads", responses=PROBLEM_RESPONSES)
async def list_heads(store: StoreDep) -> Any:
    """Every stored head, by name."""
    return HeadList(data=[head_info(r) for r in await asyncio.to_thread(store.list)])


@router.get("/{name}", response_model=HeadInfo, summary="Describe a head", responses=PROBLEM_RESPONSES)
async def get_head(name: NameDep, store: StoreDep) -> Any:
    """One head's classes, kind, metrics and version."""
    return head_info(await asyncio.to_thread(store.get, name))


@router.delete("/{name}", status_code=204, summary="Delete a head", responses=PROBLEM_RESPONSES)
async def delete_head(name: NameDep, store: StoreDep) -> Response:
    """Deletes one head."""
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
async def import_head(name: NameDep, request: Request, response: Response, heads: HeadsDep) -> Any:
    """Stores a safetensors file made by `GET /v1/heads/{name}/export` (validated; never
    unpickled) under `name`: 201 when new, 200 when it replaces a head."""
    limit = heads.embedding.settings.max_upload_bytes
    check_content_length(request, limit)
    data = await read_body(request, limit)
    if not data:
        raise MissingAudioError("the request body is empty: send a head's .safetensors bytes")
    record = await heads.import_head(name, data)
    response.status_code = 201 if record.version == 1 else 200
    return head_info(record)


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
    heads: HeadsDep,
    timings: TimingsDep,
) -> Any:
    """Labels for each input (the head applied to the clip's mean embedding) and for each of its
    examples (`frames`). The audio forms and options are those of `POST /v1/embeddings`."""
    s = heads.embedding.settings
    inputs = await read_inputs(request, s.max_upload_bytes, s.max_inputs)
    options = heads.embedding.options(query.hop, query.pad, query.resampler)
    return await heads.classify(
        name, inputs, options, query.top_k, timings, lambda: wait_for_disconnect(request)
    )
