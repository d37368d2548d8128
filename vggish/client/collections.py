"""The client's collections calls (find similar sounds): operations over :class:`~.core.Api`,
which :mod:`.transport` binds as ``Client`` and ``AsyncClient`` methods, and their answers' parsers.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from vggish import params
from vggish.audio.resample import ResamplerName
from vggish.client.core import COLLECTIONS, Api, Op, Request, audio_query, resource_path
from vggish.client.inputs import AudioInput, Body, audio_body, json_body, prepare
from vggish.heads import FeatureSpec
from vggish.search import AddResult, CollectionInfo, Item, Level, Match, Query, Segment


def add_items(
    api: Api,
    name: str,
    inputs: AudioInput | Sequence[AudioInput],
    *,
    ids: Sequence[str] | None = None,
    hop: float = params.EXAMPLE_HOP_SECONDS,
    pad: bool = True,
    resampler: ResamplerName = "reference",
    force: bool = False,
) -> Op[AddResult]:
    """Embeds clips and adds them to the collection ``name`` (made on the first add), one id per
    input (default: a path's file name); ``force``: even of other weights or settings."""
    parts = prepare(inputs)
    if ids is not None and len(ids) != len(parts):
        raise ValueError(f"{len(parts)} inputs but {len(ids)} ids: give one id per input")
    names = list(ids) if ids is not None else [p.name for p in parts]
    if any(not n for n in names):
        raise ValueError("bytes, file objects without a name and arrays need ids: pass ids=[...]")
    named = [replace(p, name=str(n)) for p, n in zip(parts, names, strict=True)]
    body = audio_body(named, {"id": [str(n) for n in names]})  # a form's files are named by its ids
    query = audio_query(hop, pad, resampler, force)
    request = Request("POST", resource_path(COLLECTIONS, name, "/items"), query, body)
    return (yield from api.parsed(request, add_result))


def add_embeddings(
    api: Api, name: str, items: Sequence[Item], *, features: FeatureSpec | None = None, force: bool = False
) -> Op[AddResult]:
    """Adds items of embeddings made elsewhere (``vggish.search.Item.of(id, embeddings, ...)``),
    with the ``features`` that made them when known."""
    payload: dict[str, object] = {
        "items": [
            {"id": i.id, "embeddings": i.embeddings.tolist(), "timestamps": i.timestamps.tolist()}
            | ({} if i.metadata is None else {"metadata": i.metadata})
            for i in items
        ]
    }
    if features is not None:
        payload["features"] = features.to_dict()
    query = {"force": "true"} if force else {}
    request = Request("POST", resource_path(COLLECTIONS, name, "/items"), query, json_body(payload))
    return (yield from api.parsed(request, add_result))


def search(
    api: Api,
    name: str,
    query: AudioInput | Query,
    *,
    k: int = 10,
    level: Level = "clip",
    hop: float = params.EXAMPLE_HOP_SECONDS,
    pad: bool = True,
    resampler: ResamplerName = "reference",
    force: bool = False,
) -> Op[list[Match]]:
    """The ``k`` items of ``name`` most similar (cosine) to one audio clip or a
    ``vggish.search.Query``, best first; ``level``: ``clip`` or ``segment``."""
    if isinstance(query, Query) and query.timestamps is None:
        body = json_body({"embedding": query.clip.tolist()})
    elif isinstance(query, Query):
        times = np.asarray(query.timestamps).tolist()
        body = json_body({"embeddings": query.vectors.tolist(), "timestamps": times})
    else:
        body = audio_body(prepare(query))
    return (yield from _search(api, name, body, k, level, audio_query(hop, pad, resampler, force)))


def search_item(api: Api, name: str, item_id: str, *, k: int = 10, level: Level = "clip") -> Op[list[Match]]:
    """The ``k`` items most similar to a stored item (itself left out), best first."""
    audio = audio_query(params.EXAMPLE_HOP_SECONDS, False, "reference")
    return (yield from _search(api, name, json_body({"id": item_id}), k, level, audio))


def _search(api: Api, name: str, body: Body, k: int, level: Level, query: dict[str, str]) -> Op[list[Match]]:
    query = query | {"k": str(k), "level": level}
    request = Request("POST", resource_path(COLLECTIONS, name, "/search"), query, body)
    return (yield from api.parsed(request, matches))


def list_collections(api: Api) -> Op[list[CollectionInfo]]:
    return (yield from api.parsed(Request("GET", "/v1/collections"), collection_infos))


def get_collection(api: Api, name: str) -> Op[CollectionInfo]:
    """One collection's counts and features (``NotFoundError`` when absent)."""
    return (yield from api.parsed(Request("GET", resource_path(COLLECTIONS, name)), collection_info))


def delete_collection(api: Api, name: str) -> Op[None]:
    yield from api.call(Request("DELETE", resource_path(COLLECTIONS, name)))


def delete_item(api: Api, name: str, item_id: str) -> Op[None]:
    path = resource_path(COLLECTIONS, name, "/items/" + urllib.parse.quote(item_id, safe=""))
    yield from api.call(Request("DELETE", path))


def collection_info(body: Any) -> CollectionInfo:
    return CollectionInfo(
        name=str(body["name"]),
        features=FeatureSpec.from_dict(body.get("features") or {}),
        items=int(body["items"]),
        segments=int(body["segments"]),
        created_at=str(body["created_at"]),
    )


def collection_infos(body: Any) -> list[CollectionInfo]:
    return [collection_info(item) for item in body["data"]]


def add_result(body: Any) -> AddResult:
    replaced = tuple(str(i["id"]) for i in body["items"] if i["replaced"])
    warning = "; ".join(body.get("warnings") or []) or None
    return AddResult(collection_info(body["collection"]), bool(body["created"]), replaced, warning)


def _segment(raw: Any) -> Segment | None:
    return None if raw is None else Segment(int(raw["index"]), float(raw["start"]), float(raw["end"]))


def matches(body: Any) -> list[Match]:
    return [
        Match(
            str(r["id"]),
            float(r["score"]),
            r.get("metadata"),
            _segment(r.get("segment")),
            _segment(r.get("query_segment")),
        )
        for r in body["results"]
    ]
