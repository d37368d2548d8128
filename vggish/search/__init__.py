"""Find similar sounds: collections of clips searched by cosine similarity of their embeddings.

>>> store = open_collections("data")                                   # data/search.sqlite3
>>> store = open_collections("postgresql://vggish:pw@db:5432/vggish")  # pgvector, shared by replicas
>>> store.add("sounds", [Item.of("dog.wav", embeddings, timestamps)], features)
>>> store.search("sounds", Query.segments(query_embeddings, query_times), k=10, level="segment")

An item keeps its segment embeddings (one per 0.96 s example) with their times, and its clip
embedding (their mean). ``clip`` level compares clip embeddings; ``segment`` level scores an item
by its best pair of segments and says which pair matched. The embedded store (SQLite in the data
directory) searches exactly in memory; the PostgreSQL one uses pgvector's HNSW index. Both have
the API of :class:`BaseCollectionStore`, and a collection refuses embeddings of other weights or
settings than its own (:class:`FeaturesMismatchError`) unless forced.
"""

from __future__ import annotations

from pathlib import Path

from vggish.errors import InvalidInputError
from vggish.heads.store.location import is_postgres_url
from vggish.search.base import (
    LEVELS,
    AddResult,
    BaseCollectionStore,
    CollectionInfo,
    CollectionNotFoundError,
    FeaturesMismatchError,
    Item,
    ItemNotFoundError,
    Level,
    Match,
    Query,
    Segment,
    StoreLimits,
    validate_collection_name,
    validate_item_id,
)
from vggish.search.sqlite import SqliteCollectionStore

__all__ = [
    "LEVELS",
    "AddResult",
    "BaseCollectionStore",
    "CollectionInfo",
    "CollectionNotFoundError",
    "FeaturesMismatchError",
    "Item",
    "ItemNotFoundError",
    "Level",
    "Match",
    "Query",
    "Segment",
    "SqliteCollectionStore",
    "StoreLimits",
    "open_collections",
    "validate_collection_name",
    "validate_item_id",
]


def open_collections(
    location: str | Path, limits: StoreLimits | None = None, ef_search: int | None = None
) -> BaseCollectionStore:
    """The collections at ``location``: a ``postgresql://`` URL (pgvector), or a data directory
    (SQLite, ``search.sqlite3`` inside, created on the first write). Nothing is connected until
    the first operation.

    Args:
        location: the URL or the directory.
        limits: what the store holds at most and what a search may ask (default: StoreLimits()).
        ef_search: PostgreSQL's HNSW candidates per query (default: the store's).

    Raises:
        InvalidInputError: a URL of another scheme.
        RuntimeError: a PostgreSQL URL without psycopg and pgvector (``pip install 'vggish[postgres]'``).
    """
    if is_postgres_url(location):
        try:
            from vggish.search.postgres import PostgresCollectionStore
        except ImportError as e:
            raise RuntimeError(
                f"collections in PostgreSQL need psycopg and pgvector: pip install 'vggish[postgres]' ({e})"
            ) from e
        if ef_search is None:
            return PostgresCollectionStore(str(location), limits)
        return PostgresCollectionStore(str(location), limits, ef_search=ef_search)
    if isinstance(location, str) and "://" in location:
        scheme = location.split("://", 1)[0]
        raise InvalidInputError(
            f"database URL scheme {scheme!r} is not supported: give postgresql://... or a directory"
        )
    return SqliteCollectionStore(location, limits)
