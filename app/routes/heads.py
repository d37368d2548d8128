"""``/v1/heads``: train, list, export, import, delete and apply classifier heads."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam

from ..deps import HeadsDep, StoreDep, TimingsDep, require_api_key
from ..errors import MissingAudioError, UnsupportedMediaTypeError
from ..heads_service import head_info, head_list
from ..ingest import media_type, read_body, read_form, read_inputs
from ..openapi_docs import EMBEDDINGS_BODY, IMPORT_BODY, PROBLEM_RESPONSES, TRAIN_BODY
from ..schemas import (
    HEAD_NAME_PATTERN,
    ClassifyQuery,
    ClassifyResponse,
    HeadAudioOptions,
    HeadInfo,
    HeadList,
    HeadListQuery,
    ImportQuery,
)
from .embeddings import wait_for_disconnect

router = APIRouter(prefix="/v1/heads", tags=["heads"], dependencies=[Depends(require_api_key)])
NameDep = Annotated[str, PathParam(pattern=HEAD_NAME_PATTERN, description="the head's name")]
_CONFLICT = {
    **PROBLEM_RESPONSES[422],  # the problem+json body
    "description": "A head of that name exists (`head-exists`), or it was trained on other weights "
    "(`weights-mismatch`; `force=true` overrides)",
}
_FULL = {
    **PROBLEM_RESPONSES[422],
    "description": "The heads store's volume is full (`store-full`), or it holds `VGGISH_MAX_HEADS` "
    "heads (`too-many-heads`)",
}
_STORE = {
    **PROBLEM_RESPONSES[422],
    "description": "The model is not loaded yet, or the heads store cannot be reached or written "
    "(`store-unavailable`: the detail names the cause and the fix)",
}
_RESPONSES: dict[int | str, dict[str, Any]] = {**PROBLEM_RESPONSES, 409: _CONFLICT, 503: _STORE}
_SAVING: dict[int | str, dict[str, Any]] = {**_RESPONSES, 507: _FULL}
_REPLACED: dict[int | str, dict[str, Any]] = {
    200: {"description": "Replaced a head of that name (its `version` is one more)"}
}


def _created_or_replaced(response: Response, info: HeadInfo) -> HeadInfo:
    """201 with a Location for a new head, 200 when it replaced one (POST and PUT alike)."""
    response.status_code = 201 if info.version == 1 else 200
    response.headers["Location"] = f"/v1/heads/{info.name}"
    return info


@router.post(
    "",
    status_code=201,
    response_model=HeadInfo,
    summary="Train a head",
    openapi_extra=TRAIN_BODY,
    responses={**_REPLACED, **_SAVING},
)
async def train_head(
    request: Request,
    response: Response,
    query: Annotated[HeadAudioOptions, Query()],
    heads: HeadsDep,
    timings: TimingsDep,
) -> Any:
    """Trains a classifier head on labelled clips and stores it: 201 when new, 200 when it
    replaced one (`replace=true`).

    Multipart: `name`, repeated `file` parts and one `label` field per file (same order), optional
    `kind` and `replace`; each clip's embedding is the mean of its examples' embeddings (the query
    options say how audio becomes examples; short clips are padded by default) and the head records
    the server's weights and those options. JSON: `name`, clip-level `embeddings` and `labels`, and
    optionally the `features` that made them (else the head's identity is unknown), within
    `VGGISH_MAX_JSON_BYTES`.
    """
    limit = heads.embedding.settings.max_upload_bytes
    kind = media_type(request)
    disconnected = lambda: wait_for_disconnect(request)  # noqa: E731
    if kind == "multipart/form-data":
        inputs, fields = await read_form(request, limit)
        form = heads.read_form(fields)
        options = heads.embedding.options(query.hop, query.pad, query.resampler)
        info = await heads.train_on_audio(form, inputs, options, timings, disconnected)
    elif kind == "application/json":
        info = await heads.train_on_embeddings(request, disconnected)
    else:
        raise UnsupportedMediaTypeError(
            f"media type {kind or '(none)'!r} is not accepted: send multipart/form-data "
            "(audio files and labels) or application/json (embeddings and labels)"
        )
    return _created_or_replaced(response, info)


@router.get("", response_model=HeadList, summary="List heads", responses=_RESPONSES)
async def list_heads(store: StoreDep, query: Annotated[HeadListQuery, Query()]) -> Response:
    """The stored heads by name, a page at a time (`limit`, 20 by default), with what each was
    trained on; `next` is the next page's URL (null on the last)."""
    return Response(await head_list(store, query.limit, query.cursor), media_type="application/json")


@router.get("/{name}", response_model=HeadInfo, summary="Describe a head", responses=_RESPONSES)
async def get_head(name: NameDep, store: StoreDep) -> Any:
    """One head's classes, kind, metrics and version."""
    return head_info(await asyncio.to_thread(store.get, name))


@router.delete("/{name}", status_code=204, summary="Delete a head", responses=_RESPONSES)
async def delete_head(name: NameDep, store: StoreDep) -> Response:
    """Deletes one head (also when the store's volume is full)."""
    await asyncio.to_thread(store.delete, name)
    return Response(status_code=204)


@router.get(
    "/{name}/export",
    response_class=Response,
    summary="Export a head",
    responses={200: {"content": {"application/octet-stream": {}}}, **_RESPONSES},
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
    responses={**_REPLACED, **_SAVING},
)
async def import_head(
    name: NameDep,
    request: Request,
    response: Response,
    query: Annotated[ImportQuery, Query()],
    heads: HeadsDep,
) -> Any:
    """Stores a safetensors file made by `GET /v1/heads/{name}/export` (validated; never
    unpickled) under `name`: 201 when new, 200 when it replaces a head. A head that records other
    weights than the server's is refused (409) unless `force=true`; past `VGGISH_MAX_HEADS` heads,
    a new name is refused (507)."""
    limit = heads.embedding.settings.max_upload_bytes
    data = await read_body(request, limit)
    if not data:
        raise MissingAudioError("the request body is empty: send a head's .safetensors bytes")
    return _created_or_replaced(response, await heads.import_head(name, data, query.force))


@router.post(
    "/{name}/classify",
    response_model=ClassifyResponse,
    response_model_exclude_none=True,
    summary="Classify audio with a head",
    openapi_extra=EMBEDDINGS_BODY,  # the same three audio forms
    responses=_RESPONSES,
)
async def classify(
    name: NameDep,
    request: Request,
    query: Annotated[ClassifyQuery, Query()],
    heads: HeadsDep,
    timings: TimingsDep,
) -> Response:
    """Labels for each input (the head applied to the clip's mean embedding) and for each of its
    examples (`frames`). The audio forms and options are those of `POST /v1/embeddings`, but short
    clips are padded by default. A head trained with another resampler is used, with a warning; hop
    and pad are yours to choose. An answer of more than `VGGISH_MAX_ANSWER_LABELS` labels is refused
    (413)."""
    s = heads.embedding.settings
    inputs = await read_inputs(request, s.max_upload_bytes, s.max_inputs)
    options = heads.embedding.options(query.hop, query.pad, query.resampler)
    disconnected = lambda: wait_for_disconnect(request)  # noqa: E731
    answer = await heads.classify(name, inputs, options, query.top_k, query.force, timings, disconnected)
    return Response(answer, media_type="application/json")
