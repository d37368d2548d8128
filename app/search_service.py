"""Collections as a service: add clips (audio or embeddings), search them, list and delete them.

Audio goes through the embedding service (the one source of examples and the shared batcher):
each clip keeps its segment embeddings with their times, and its clip embedding (their mean).
A collection records what made its embeddings (:class:`vggish.heads.FeatureSpec`) and refuses
(409) audio embedded otherwise, and embeddings that declare other ``features``, unless forced;
that is checked before any audio is embedded, and again when the items are written. The store is
SQLite in the data directory (searched exactly in memory, each worker catching up with the
others' writes before it searches) or PostgreSQL with pgvector when ``VGGISH_DATABASE_URL`` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from starlette.requests import Request
from starlette.types import Message, Receive

from vggish import params
from vggish.errors import InvalidInputError
from vggish.heads import FeatureSpec
from vggish.pipeline.driver import EmbeddingResult
from vggish.pipeline.options import EmbedOptions
from vggish.search import (
    AddResult,
    BaseCollectionStore,
    CollectionInfo,
    CollectionNotFoundError,
    Item,
    Level,
    Match,
    Query,
    SqliteCollectionStore,
    StoreLimits,
    open_collections,
    validate_collection_name,
    validate_item_id,
)
from vggish.search.base import check_features, unknown_warning

from .config import Settings
from .errors import BusyError, InvalidParameterError
from .ingest import JSON_HINT, JSON_THREAD, PENDING_JSON, PENDING_JSON_BODIES, BodyLimit, Upload, body_chunks
from .schemas import Features
from .search_json import PEEK_BYTES, EmbeddingsBody, first_key
from .search_schemas import (
    AddedItem,
    AddItemsResponse,
    CollectionInfoOut,
    SearchResponse,
    SearchResult,
    SegmentOut,
)
from .service import Disconnected, EmbeddingService, Timings

INLINE_BYTES = 1 << 16  # body pieces up to this size are parsed on the event loop


def store_of(settings: Settings) -> BaseCollectionStore:
    """The collections store the settings name (nothing is connected yet)."""
    limits = StoreLimits(
        collections=settings.search_max_collections,
        items=settings.search_max_items,
        segments=settings.search_max_segments,
        k=settings.search_max_k,
        query_segments=settings.search_max_query_segments,
    )
    return open_collections(settings.heads_location, limits, ef_search=settings.search_ef_search)


async def open_store(store: BaseCollectionStore) -> None:
    """Upgrades an existing SQLite schema now. A new SQLite database is made on the first write,
    and PostgreSQL's schema on the first use (the heads store has checked the URL already; a
    server without pgvector fails the collection routes alone, saying so, not the whole service)."""
    if isinstance(store, SqliteCollectionStore) and store.path.exists():
        await asyncio.to_thread(store.open)


def collection_out(info: CollectionInfo, warnings: Sequence[str | None] = ()) -> CollectionInfoOut:
    said = [unknown_warning(info.name)] if info.features.unknown else []
    said += [w for w in warnings if w]
    return CollectionInfoOut(
        name=info.name,
        items=info.items,
        segments=info.segments,
        features=Features(**info.features.to_dict()),
        created_at=info.created_at,
        warnings=said or None,
    )


def _segment(segment: object) -> SegmentOut | None:
    return None if segment is None else SegmentOut(**segment.__dict__)


def search_response(name: str, level: Level, matches: list[Match], warning: str | None) -> SearchResponse:
    results = [
        SearchResult(
            id=m.id,
            score=m.score,
            metadata=m.metadata,
            segment=_segment(m.segment),
            query_segment=_segment(m.query_segment),
        )
        for m in matches
    ]
    return SearchResponse(
        collection=name, level=level, results=results, warnings=[warning] if warning else None
    )


def _added(result: AddResult, items: list[Item]) -> AddItemsResponse:
    replaced = set(result.replaced)
    return AddItemsResponse(
        collection=collection_out(result.collection),
        created=result.created,
        items=[AddedItem(id=i.id, segments=len(i.embeddings), replaced=i.id in replaced) for i in items],
        warnings=[result.warning] if result.warning else None,
    )


def json_limit(settings: Settings) -> BodyLimit:
    """What a JSON body may hold (``max_json_bytes``, as every JSON body of the service)."""
    return BodyLimit(settings.max_json_bytes, "max_json_bytes", JSON_HINT)


async def peek_json(request: Request) -> tuple[str, Request]:
    """A JSON body's first key, and a request that reads the whole body again from the start
    (the bytes read to find the key first, then the rest as it arrives).

    Raises:
        LimitExceededError: over ``max_json_bytes`` (413).
        BodyTimeoutError, ClientDisconnectedError: as :func:`app.ingest.body_chunks`.
    """
    stream = body_chunks(request, json_limit(request.app.state.settings))
    head = b""
    key: str | None = None
    async for chunk in stream:
        head += chunk
        key = first_key(head[:PEEK_BYTES])
        if key is not None or len(head) >= PEEK_BYTES:
            break
    return key or "", Request(request.scope, _replay(head, stream, request.receive))


def _replay(head: bytes, rest: AsyncIterator[bytes], receive: Receive) -> Receive:
    """An ASGI ``receive`` that gives ``head``, then the rest of the body, then what ``receive``
    gives (the client's disconnection)."""
    state = {"head": True, "ended": False}

    async def replayed() -> Message:
        if state["head"]:
            state["head"] = False
            return {"type": "http.request", "body": head, "more_body": True}
        if state["ended"]:
            return await receive()
        async for chunk in rest:
            return {"type": "http.request", "body": chunk, "more_body": True}
        state["ended"] = True
        return {"type": "http.request", "body": b"", "more_body": False}

    return replayed


async def read_embeddings(
    request: Request, form: str, max_items: int, max_rows: int, rows_limit: str
) -> EmbeddingsBody:
    """An embeddings JSON body, parsed as it arrives (a query's few kB on the event loop, larger
    pieces on the service's JSON thread), within the budget of JSON bodies arriving at once.

    Raises:
        BusyError: the JSON bodies arriving at once already hold what the server takes (503).
    """
    s: Settings = request.app.state.settings
    parser = EmbeddingsBody(form, max_items, max_rows, rows_limit)
    most = PENDING_JSON_BODIES * s.max_json_bytes
    loop = asyncio.get_running_loop()
    taken = 0
    try:
        async for chunk in body_chunks(request, json_limit(s)):
            if not PENDING_JSON.reserve(len(chunk), most):
                raise BusyError(
                    f"JSON bodies arriving at once hold {most} bytes, the most this server takes: "
                    "retry later",
                    headers={"Retry-After": str(s.retry_after_s)},
                )
            taken += len(chunk)
            if len(chunk) <= INLINE_BYTES:  # no hop to a thread and back
                parser.feed(chunk)
            else:
                await loop.run_in_executor(JSON_THREAD, parser.feed, chunk)
        parser.finish()
    finally:
        PENDING_JSON.release(taken)
    return parser


class SearchService:
    """The collections of one store, filled and searched with one embedding service.

    Args:
        store: where collections live.
        settings: the limits.
        embedding: the embedding service (None until the model is loaded: audio then waits).
    """

    def __init__(
        self, store: BaseCollectionStore, settings: Settings, embedding: EmbeddingService | None
    ) -> None:
        self.store = store
        self.settings = settings
        self.embedding = embedding

    def used_features(self, options: EmbedOptions) -> FeatureSpec:
        assert self.embedding is not None
        return FeatureSpec.for_model(self.embedding.model, options)

    async def check(self, name: str, used: FeatureSpec, force: bool, must_exist: bool) -> str | None:
        """Refuses features unlike the collection's before any work (409); the warning to give.

        Raises:
            CollectionNotFoundError: ``must_exist`` and no such collection (404).
        """
        validate_collection_name(name)
        try:
            info = await asyncio.to_thread(self.store.get, name)
        except CollectionNotFoundError:
            if must_exist:
                raise
            return None
        return check_features(info.features, used, force, name)

    async def add_audio(
        self,
        name: str,
        inputs: list[Upload],
        ids: list[str] | None,
        options: EmbedOptions,
        force: bool,
        timings: Timings,
        disconnected: Disconnected,
    ) -> AddItemsResponse:
        """Embeds each clip and adds it (id: its ``ids`` entry, else its file name).

        Raises:
            InvalidInputError: ids that do not pair up with the files, a clip without an example.
            FeaturesMismatchError: other weights or options than the collection's (before embedding).
        """
        if ids is not None and len(ids) != len(inputs):
            raise InvalidParameterError(
                f"{len(inputs)} `file` parts but {len(ids)} `id` fields: one id per file, or none"
            )
        given: list[str | None] = list(ids) if ids is not None else [u.name for u in inputs]
        named = [str(n or "") for n in given]
        if not all(named):
            raise InvalidParameterError(
                "an input has no name to be its id: send `id` fields (multipart) or ?id="
            )
        used = self.used_features(options)
        await self.check(name, used, force, must_exist=False)
        for item_id in named:  # the ids' checks, before embedding
            validate_item_id(item_id)
        assert self.embedding is not None
        embedded = await self.embedding.embed(inputs, options, timings, disconnected)
        items = [Item.of(str(i), *_segments(e)) for i, e in zip(named, embedded, strict=True)]
        result = await asyncio.to_thread(self.store.add, name, items, used, force)
        return _added(result, items)

    async def add_embeddings(self, name: str, body: EmbeddingsBody, force: bool) -> AddItemsResponse:
        """Adds items sent as numbers, with the ``features`` the body declares (unknown: none)."""
        features = body.feature_spec()
        hop = features.hop_seconds or params.EXAMPLE_HOP_SECONDS
        if not body.items:
            raise InvalidParameterError("items is empty: send at least one item")
        items = []
        for n, raw in enumerate(body.items):
            if raw.embeddings is None:
                raise InvalidParameterError(f"items[{n}] has no embeddings")
            times = None if raw.timestamps is None else raw.timestamps.array()
            try:
                items.append(Item.of(raw.id, raw.embeddings.array(), times, raw.metadata, hop))
            except InvalidInputError as e:
                raise InvalidParameterError(f"items[{n}]: {e}") from None
        result = await asyncio.to_thread(self.store.add, name, items, features, force)
        return _added(result, items)

    async def search(
        self, name: str, query: Query | str, k: int, level: Level, used: FeatureSpec, force: bool
    ) -> SearchResponse:
        """The ``k`` best matches of a query (a :class:`Query`, or a stored item's id)."""
        warning = await self.check(name, used, force, must_exist=True) if not used.unknown else None
        matches = await asyncio.to_thread(self.store.search, name, query, k, level)
        return search_response(name, level, matches, warning)

    async def search_audio(
        self,
        name: str,
        inputs: list[Upload],
        options: EmbedOptions,
        k: int,
        level: Level,
        force: bool,
        timings: Timings,
        disconnected: Disconnected,
    ) -> SearchResponse:
        """Embeds one query clip and searches with its segments (clip level: their mean)."""
        if len(inputs) != 1:
            raise InvalidParameterError(f"a search takes one audio clip; got {len(inputs)}")
        used = self.used_features(options)
        warning = await self.check(name, used, force, must_exist=True)
        self.store.limits.check_search(level, k)  # before any audio is embedded
        assert self.embedding is not None
        (embedded,) = await self.embedding.embed(inputs, options, timings, disconnected)
        query = Query.segments(*_segments(embedded))
        matches = await asyncio.to_thread(self.store.search, name, query, k, level)
        return search_response(name, level, matches, warning)


def _segments(e: EmbeddingResult) -> tuple[object, object]:
    """A clip's embeddings and timestamps (a clip without an example is refused, named)."""
    if e.embeddings.shape[0] == 0:
        raise InvalidInputError(
            f"{e.name or 'a clip'} ({e.duration:.3f} s) is shorter than one example "
            f"({params.EXAMPLE_SPAN_SECONDS} s) and has none: send pad=true (the default) to zero-pad it"
        )
    return e.embeddings, e.timestamps
