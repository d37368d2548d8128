"""``/v1/collections``: find similar sounds. Add clips (audio, or embeddings made elsewhere),
search them by audio, by embedding or by a stored item, list and delete them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam

from vggish.errors import LimitExceededError
from vggish.heads import FeatureSpec
from vggish.search import Query as SearchVector

from ..deps import SettingsDep, TimingsDep, get_service, require_api_key
from ..errors import InvalidParameterError
from ..ingest import media_type, read_form, read_inputs
from ..openapi_docs import PROBLEM_RESPONSES
from ..search_schemas import (
    COLLECTION_NAME_PATTERN,
    AddItemsQuery,
    AddItemsResponse,
    CollectionInfoOut,
    CollectionList,
    SearchQuery,
    SearchResponse,
)
from ..search_service import SearchService, collection_out, peek_json, read_embeddings
from .embeddings import wait_for_disconnect

router = APIRouter(prefix="/v1/collections", tags=["collections"], dependencies=[Depends(require_api_key)])
NameDep = Annotated[str, PathParam(pattern=COLLECTION_NAME_PATTERN, description="the collection's name")]
ItemDep = Annotated[str, PathParam(min_length=1, max_length=256, description="the item's id")]
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES,
    404: {**PROBLEM_RESPONSES[404], "description": "No collection (or item) of that name"},
    409: {
        **PROBLEM_RESPONSES[409],
        "description": "The collection was made with other weights or settings (`force=true` overrides)",
    },
}
_ROW = {"type": "array", "items": {"type": "number"}, "minItems": 128, "maxItems": 128}
_SPANS = {
    "type": "array",
    "items": {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 2, "maxItems": 2},
    "description": "[start, end] seconds of each segment (default: k * hop, k * hop + 0.975)",
}
_FEATURES = {"$ref": "#/components/schemas/Features"}
_AUDIO = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {
                "file": {
                    "type": "array",
                    "items": {"type": "string", "format": "binary", "minLength": 1},
                    "minItems": 1,
                },
                "id": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1, "maxLength": 256},
                    "description": "one per `file`, same order (default: the file names)",
                },
            },
            "required": ["file"],
        }
    },
    "audio/*": {"schema": {"type": "string", "format": "binary", "minLength": 1}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}},
}
_ITEMS = {
    "type": "object",
    "properties": {
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "minLength": 1, "maxLength": 256},
                    "embeddings": {"type": "array", "items": _ROW, "minItems": 1},
                    "timestamps": _SPANS,
                    "metadata": {"type": "object", "description": "kept and returned with matches (4 KB)"},
                },
                "required": ["id", "embeddings"],
                "additionalProperties": False,
            },
        },
        "features": _FEATURES,
    },
    "required": ["items"],
    "additionalProperties": False,
}
_AUDIO_JSON = {"$ref": "#/components/schemas/EmbeddingsRequest"}
ITEMS_BODY = {
    "requestBody": {
        "required": True,
        "content": {**_AUDIO, "application/json": {"schema": {"anyOf": [_AUDIO_JSON, _ITEMS]}}},
    }
}
_QUERY = {
    "anyOf": [
        _AUDIO_JSON,
        {
            "type": "object",
            "properties": {"embedding": _ROW, "features": _FEATURES},
            "required": ["embedding"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "embeddings": {"type": "array", "items": _ROW, "minItems": 1},
                "timestamps": _SPANS,
                "features": _FEATURES,
            },
            "required": ["embeddings"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 256}},
            "required": ["id"],
            "additionalProperties": False,
        },
    ]
}
SEARCH_BODY = {
    "requestBody": {"required": True, "content": {**_AUDIO, "application/json": {"schema": _QUERY}}}
}


def get_search(request: Request) -> SearchService:
    """The collections service (audio waits for the model: 503 until it is loaded)."""
    service = request.app.state.service
    return SearchService(request.app.state.collections, request.app.state.settings, service)


SearchDep = Annotated[SearchService, Depends(get_search)]


@router.post(
    "/{name}/items",
    response_model=AddItemsResponse,
    response_model_exclude_none=True,
    summary="Add items",
    openapi_extra=ITEMS_BODY,
    responses=_RESPONSES,
)
async def add_items(
    name: NameDep,
    request: Request,
    query: Annotated[AddItemsQuery, Query()],
    search: SearchDep,
    settings: SettingsDep,
    timings: TimingsDep,
) -> Any:
    """Adds clips to the collection `name`, which the first add makes; an item whose id exists is
    replaced. Audio (the forms of `POST /v1/embeddings`; multipart `id` fields name the files in
    order, `?id=` a raw body, and a JSON input's `name` its item) is embedded with the query options
    and the server's weights, which the collection records. Or JSON `items` of segment
    `embeddings` made elsewhere (e.g. by `vggish extract`), with `timestamps`, `metadata`, and the
    `features` that made them."""
    kind = media_type(request)
    if kind == "application/json":
        key, request = await peek_json(request)
        if key != "inputs":
            body = await read_embeddings(
                request,
                "items",
                settings.search_max_items_per_request,
                settings.search_max_segments,
                "search_max_segments",
            )
            return await search.add_embeddings(name, body, query.force)
    search.embedding = get_service(request)
    ids: list[str] | None = None
    if kind == "multipart/form-data":
        inputs, fields = await read_form(request, settings.max_upload_bytes)
        ids = fields.get("id")
        if len(inputs) > settings.max_inputs:
            raise LimitExceededError(
                "max_inputs", f"{len(inputs)} files sent; at most {settings.max_inputs} per request"
            )
    else:
        inputs = await read_inputs(request, settings.max_upload_bytes, settings.max_inputs)
        if query.id is not None:
            ids = [query.id]
    options = search.embedding.options(query.hop, query.pad, query.resampler)
    disconnected = lambda: wait_for_disconnect(request)  # noqa: E731
    return await search.add_audio(name, inputs, ids, options, query.force, timings, disconnected)


@router.post(
    "/{name}/search",
    response_model=SearchResponse,
    response_model_exclude_none=True,
    summary="Search a collection",
    openapi_extra=SEARCH_BODY,
    responses=_RESPONSES,
)
async def search_collection(
    name: NameDep,
    request: Request,
    query: Annotated[SearchQuery, Query()],
    search: SearchDep,
    settings: SettingsDep,
    timings: TimingsDep,
) -> Any:
    """The `k` items most like the query, best first; `score` is the cosine similarity. The query
    is audio (one clip, the forms of `POST /v1/embeddings`), JSON `embedding` (one 128-d vector),
    `embeddings` (a clip's segments, with `timestamps`), or `id` (a stored item, left out of the
    results). At `segment` level each result names its segment that matched and, for a query of
    segments, the query's segment."""
    if media_type(request) == "application/json":
        key, request = await peek_json(request)
        if key != "inputs":
            body = await read_embeddings(
                request, "query", 1, settings.search_max_query_segments, "search_max_query_segments"
            )
            target = _query_of(body)
            used = FeatureSpec() if isinstance(target, str) else body.feature_spec()
            return await search.search(name, target, query.k, query.level, used, query.force)
    search.embedding = get_service(request)
    inputs = await read_inputs(request, settings.max_upload_bytes, settings.max_inputs)
    options = search.embedding.options(query.hop, query.pad, query.resampler)
    disconnected = lambda: wait_for_disconnect(request)  # noqa: E731
    return await search.search_audio(
        name, inputs, options, query.k, query.level, query.force, timings, disconnected
    )


def _query_of(body: Any) -> SearchVector | str:
    """The query a JSON body holds: exactly one of ``embedding``, ``embeddings`` or ``id``."""
    raw = body.query
    given = [key for key in ("embedding", "embeddings", "id") if key in body.keys]
    if len(given) != 1:
        raise InvalidParameterError("send exactly one of `embedding`, `embeddings` (+ `timestamps`) or `id`")
    if given[0] == "id":
        if not isinstance(raw.id, str):
            raise InvalidParameterError("id must be a string")
        return raw.id
    if raw.embeddings is None:
        raise InvalidParameterError(f"{given[0]} holds no vector")
    if given[0] == "embedding":
        return SearchVector.embedding(raw.embeddings.array()[0])
    times = None if raw.timestamps is None else raw.timestamps.array()
    return SearchVector.segments(raw.embeddings.array(), times)


@router.get("", response_model=CollectionList, response_model_exclude_none=True, summary="List collections")
async def list_collections(search: SearchDep) -> Any:
    """Every collection, by name, with its counts and the features of its embeddings."""
    return CollectionList(data=[collection_out(i) for i in await asyncio.to_thread(search.store.list)])


@router.get(
    "/{name}",
    response_model=CollectionInfoOut,
    response_model_exclude_none=True,
    summary="Describe a collection",
    responses=_RESPONSES,
)
async def get_collection(name: NameDep, search: SearchDep) -> Any:
    """One collection's counts and features."""
    return collection_out(await asyncio.to_thread(search.store.get, name))


@router.delete("/{name}", status_code=204, summary="Delete a collection", responses=_RESPONSES)
async def delete_collection(name: NameDep, search: SearchDep) -> Response:
    """Deletes a collection and all its items."""
    await asyncio.to_thread(search.store.delete, name)
    return Response(status_code=204)


@router.delete(
    "/{name}/items/{item_id:path}", status_code=204, summary="Delete an item", responses=_RESPONSES
)
async def delete_item(name: NameDep, item_id: ItemDep, search: SearchDep) -> Response:
    """Deletes one item of a collection."""
    await asyncio.to_thread(search.store.delete_item, name, item_id)
    return Response(status_code=204)
