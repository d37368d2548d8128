"""Collections in PostgreSQL with pgvector: one store shared by every replica of the service.

Items and their segments are rows (``search_items``, ``search_segments``) with ``vector(128)``
columns; each add or delete is one transaction, so a crash leaves every item whole or absent.
Search orders by pgvector's cosine distance (``<=>``) through one HNSW index per table (cosine
ops) for all collections together, filtered by collection:

* a collection of at most ``exact_max`` vectors is searched exactly (the index is turned off for
  the query, which then reads the collection's rows through a B-tree and sorts them): a small
  collection in a large table would otherwise leave the graph search too few rows that pass
  the filter;
* a larger one goes through HNSW with pgvector 0.8's iterative scans (``strict_order``), which
  keep walking the graph until ``LIMIT`` rows of that collection are found, instead of filtering
  the first ``ef_search`` candidates after the fact.

One index per table rather than a partial index per collection: collections are made by adds at
any time, and building an index there would be DDL in the request path, one more index per
collection to plan around, and a long lock on the table when a large collection is added.

Operations take connections from a small pool (psycopg_pool, psycopg's own: opening one costs a
TCP handshake and SCRAM authentication, most of a search's time otherwise), one pool per process
(a forked child makes its own); the first operation connects directly, so that a wrong URL or
password fails at once with the server's reason. The schema
is versioned in ``search_schema`` and made under an advisory lock (its statements idempotent
too), so replicas that start together make it once; the role needs to create the ``vector``
extension on first use (or an administrator runs ``CREATE EXTENSION vector`` once). Needs
``pip install 'vggish[postgres]'``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg

from vggish.errors import LimitExceededError
from vggish.heads import FeatureSpec
from vggish.heads.store.postgres import CONNECT_TIMEOUT_S, _scrub, redact
from vggish.search.base import (
    AddResult,
    BaseCollectionStore,
    CollectionInfo,
    CollectionNotFoundError,
    Infos,
    Item,
    ItemNotFoundError,
    Items,
    Level,
    Match,
    Matches,
    Query,
    Segment,
    StoreLimits,
    check_features,
    cosine,
    segment_of,
    unknown_warning,
    validate_collection_name,
    validate_item_id,
)
from vggish.search.sqlite import info_of, now

SCHEMA_VERSION = 1
SCHEMA_LOCK_KEY = int.from_bytes(b"vggishSr", "big") >> 1
EF_SEARCH = 200  # HNSW candidates per query (pgvector's default is 40)
EXACT_MAX = 10_000  # vectors of a collection searched without the index
POOL_SIZE = 4  # connections a process keeps open at most
CANDIDATES_PER_K = 4  # segment level: candidate segments per result and query segment, at first
SCHEMA = (
    "CREATE EXTENSION IF NOT EXISTS vector",
    """
    CREATE TABLE IF NOT EXISTS search_collections (
        key bigserial PRIMARY KEY,
        name text NOT NULL UNIQUE,
        weights_sha256 text, hop_seconds double precision, pad boolean, resampler text,  -- NULL: unknown
        created_at text NOT NULL,           -- ISO 8601, UTC
        items bigint NOT NULL DEFAULT 0,
        segments bigint NOT NULL DEFAULT 0
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS search_items (
        key bigserial PRIMARY KEY,
        collection bigint NOT NULL REFERENCES search_collections (key) ON DELETE CASCADE,
        id text NOT NULL,
        metadata text,                      -- JSON object, or NULL
        segments integer NOT NULL,
        clip vector(128) NOT NULL,          -- the mean of the segments
        UNIQUE (collection, id)
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS search_segments (
        item bigint NOT NULL REFERENCES search_items (key) ON DELETE CASCADE,
        collection bigint NOT NULL,
        idx integer NOT NULL,
        start_s double precision NOT NULL,
        end_s double precision NOT NULL,
        v vector(128) NOT NULL,
        PRIMARY KEY (item, idx)
    )
    """,
    "CREATE INDEX IF NOT EXISTS search_segments_by_collection ON search_segments (collection)",
    "CREATE INDEX IF NOT EXISTS search_items_clip ON search_items "
    "USING hnsw (clip vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
    "CREATE INDEX IF NOT EXISTS search_segments_v ON search_segments "
    "USING hnsw (v vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
    """
    CREATE TABLE IF NOT EXISTS search_schema (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        version integer NOT NULL
    )
    """,
)
_INFO = "name, weights_sha256, hop_seconds, pad, resampler, items, segments, created_at"


class PostgresCollectionStore(BaseCollectionStore):
    """The collections of one PostgreSQL database (with pgvector 0.8 or later).

    Args:
        url: ``postgresql://user:password@host:port/dbname``.
        limits: what the store holds at most and what a search may ask.
        ef_search: HNSW candidates per query (more: better recall, slower).
        exact_max: collections of at most this many vectors (items at clip level, segments at
            segment level) are searched exactly.
        connect_timeout: seconds to wait for the server before an operation fails.
    """

    def __init__(
        self,
        url: str,
        limits: StoreLimits | None = None,
        ef_search: int = EF_SEARCH,
        exact_max: int = EXACT_MAX,
        connect_timeout: int = CONNECT_TIMEOUT_S,
    ) -> None:
        self._url, self._shown = url, redact(url)
        self.limits = limits or StoreLimits()
        self.ef_search, self.exact_max = ef_search, exact_max
        self._connect_timeout = connect_timeout
        self._ready = False
        self._lock = threading.Lock()
        self._pool: Any = None  # psycopg_pool.ConnectionPool, made on first use
        self._pool_pid = 0

    @property
    def location(self) -> str:
        return self._shown

    @contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection, the schema made; psycopg errors -> RuntimeError."""
        if not self._ready:
            self._first_connection()
        from psycopg_pool import PoolTimeout

        try:
            with self._connections().connection() as conn:
                yield conn
        except PoolTimeout as e:
            raise RuntimeError(
                f"cannot reach the search database {self._shown}: no connection within "
                f"{self._connect_timeout} s ({_scrub(str(e).strip(), self._url)})"
            ) from e
        except psycopg.Error as e:
            raise RuntimeError(f"search database {self._shown}: {_scrub(str(e).strip(), self._url)}") from e

    def _first_connection(self) -> None:
        """Connects directly once (a wrong URL fails now, with the server's reason) and makes the schema."""
        try:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=self._connect_timeout)
        except psycopg.Error as e:
            raise RuntimeError(
                f"cannot reach the search database {self._shown}: {_scrub(str(e).strip(), self._url)}"
            ) from e
        try:
            with conn:
                self._prepare(conn)
        except psycopg.Error as e:
            raise RuntimeError(f"search database {self._shown}: {_scrub(str(e).strip(), self._url)}") from e

    def _connections(self) -> Any:
        """This process's pool (made on first use; a forked child makes its own)."""
        try:
            from pgvector.psycopg import register_vector
            from psycopg_pool import ConnectionPool
        except ImportError as e:
            raise RuntimeError(
                "collections in PostgreSQL need pgvector and psycopg-pool: "
                f"pip install 'vggish[postgres]' ({e})"
            ) from e
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ConnectionPool(
                    self._url,
                    min_size=0,
                    max_size=POOL_SIZE,
                    kwargs={"autocommit": True, "connect_timeout": self._connect_timeout},
                    configure=register_vector,
                    check=ConnectionPool.check_connection,
                    timeout=self._connect_timeout,
                    open=True,
                )
                self._pool_pid = os.getpid()
            return self._pool

    def close(self) -> None:
        """Closes this process's pooled connections (the store opens new ones if used again)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.close()

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if self._ready:
                return
            if _version(conn) != SCHEMA_VERSION:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                    version = _version(conn)
                    if version > SCHEMA_VERSION:
                        raise RuntimeError(
                            f"the search database has schema {version}; this code knows {SCHEMA_VERSION}"
                        )
                    if version == 0:
                        _create_extension(conn, self._shown)
                        for statement in SCHEMA[1:]:
                            conn.execute(statement)
                        conn.execute(
                            "INSERT INTO search_schema VALUES (true, %s) ON CONFLICT DO NOTHING",
                            (SCHEMA_VERSION,),
                        )
            self._ready = True

    def open(self) -> None:
        with self._connect():
            pass

    # --- reading -------------------------------------------------------------------------

    def list(self) -> Infos:
        with self._connect() as conn:
            rows = conn.execute(
                f'SELECT {_INFO} FROM search_collections ORDER BY name COLLATE "C"'
            ).fetchall()
        return [info_of(r) for r in rows]

    def get(self, name: str) -> CollectionInfo:
        validate_collection_name(name)
        with self._connect() as conn:
            row = conn.execute(f"SELECT {_INFO} FROM search_collections WHERE name = %s", (name,)).fetchone()
        if row is None:
            raise CollectionNotFoundError(f"no collection named {name!r}")
        return info_of(row)

    def get_item(self, name: str, item_id: str) -> Item:
        validate_collection_name(name)
        validate_item_id(item_id)
        with self._connect() as conn:
            key = _collection_key(conn, name)
            found = conn.execute(
                "SELECT key, metadata FROM search_items WHERE collection = %s AND id = %s", (key, item_id)
            ).fetchone()
            if found is None:
                raise ItemNotFoundError(f"collection {name!r} has no item {item_id!r}")
            rows = conn.execute(
                "SELECT start_s, end_s, v FROM search_segments WHERE item = %s ORDER BY idx", (found[0],)
            ).fetchall()
        x = np.stack([np.asarray(r[2].to_numpy(), np.float32) for r in rows])
        times = np.array([(r[0], r[1]) for r in rows], np.float64)
        return Item(item_id, x, times, None if found[1] is None else _json(found[1]))

    # --- writing -------------------------------------------------------------------------

    def _add(self, name: str, items: Items, features: FeatureSpec, force: bool) -> AddResult:
        from vggish.search.sqlite import item_values

        metadata = [item_values(item)[0] for item in items]
        with self._connect() as conn, conn.transaction():
            key, created, warning = self._lock_collection(conn, name, features, force)
            replaced, removed_segments, keys = [], 0, []
            for item, meta in zip(items, metadata, strict=True):
                old = conn.execute(
                    "DELETE FROM search_items WHERE collection = %s AND id = %s RETURNING segments",
                    (key, item.id),
                ).fetchone()
                if old is not None:
                    replaced.append(item.id)
                    removed_segments += int(old[0])
                item_key = conn.execute(
                    "INSERT INTO search_items (collection, id, metadata, segments, clip) "
                    "VALUES (%s, %s, %s, %s, %s) RETURNING key",
                    (key, item.id, meta, len(item.embeddings), item.clip),
                ).fetchone()
                assert item_key is not None
                keys.append(int(item_key[0]))
            _copy_segments(conn, key, keys, items)
            added = sum(len(item.embeddings) for item in items) - removed_segments
            total = conn.execute(
                "UPDATE search_collections SET items = items + %s, segments = segments + %s WHERE key = %s "
                "RETURNING items",
                (len(items) - len(replaced), added, key),
            ).fetchone()
            assert total is not None
            if int(total[0]) > self.limits.items:
                raise LimitExceededError(
                    "search_max_items",
                    f"collection {name!r} would hold {total[0]} items; at most {self.limits.items}",
                )
        return AddResult(self.get(name), created, tuple(replaced), warning)

    def _lock_collection(
        self, conn: psycopg.Connection[Any], name: str, features: FeatureSpec, force: bool
    ) -> tuple[int, bool, str | None]:
        """The collection's key, locked for this transaction (made when absent); whether it was
        made; the features warning."""
        found = conn.execute(
            f"SELECT key, {_INFO} FROM search_collections WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
        if found is not None:
            return int(found[0]), False, check_features(info_of(found[1:]).features, features, force, name)
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY + 1,))  # one creation at a time
        found = conn.execute(
            f"SELECT key, {_INFO} FROM search_collections WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
        if found is not None:  # made by another transaction while this one waited
            return int(found[0]), False, check_features(info_of(found[1:]).features, features, force, name)
        count_row = conn.execute("SELECT count(*) FROM search_collections").fetchone()
        count = 0 if count_row is None else int(count_row[0])
        if count >= self.limits.collections:
            raise LimitExceededError(
                "search_max_collections", f"{count} collections exist; at most {self.limits.collections}"
            )
        made = conn.execute(
            "INSERT INTO search_collections (name, weights_sha256, hop_seconds, pad, resampler, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) RETURNING key",
            (name, features.weights_sha256, features.hop_seconds, features.pad, features.resampler, now()),
        ).fetchone()
        assert made is not None
        return int(made[0]), True, unknown_warning(name) if features.unknown else None

    def delete(self, name: str) -> None:
        validate_collection_name(name)
        with self._connect() as conn:
            if conn.execute("DELETE FROM search_collections WHERE name = %s", (name,)).rowcount == 0:
                raise CollectionNotFoundError(f"no collection named {name!r}")

    def delete_item(self, name: str, item_id: str) -> None:
        validate_collection_name(name)
        validate_item_id(item_id)
        with self._connect() as conn, conn.transaction():
            key = _collection_key(conn, name, lock=True)
            old = conn.execute(
                "DELETE FROM search_items WHERE collection = %s AND id = %s RETURNING segments",
                (key, item_id),
            ).fetchone()
            if old is None:
                raise ItemNotFoundError(f"collection {name!r} has no item {item_id!r}")
            conn.execute(
                "UPDATE search_collections SET items = items - 1, segments = segments - %s WHERE key = %s",
                (int(old[0]), key),
            )

    # --- searching -----------------------------------------------------------------------

    def _search(self, name: str, query: Query, k: int, level: Level) -> Matches:
        with self._connect() as conn, conn.transaction():
            found = conn.execute(
                "SELECT key, items, segments FROM search_collections WHERE name = %s", (name,)
            ).fetchone()
            if found is None:
                raise CollectionNotFoundError(f"no collection named {name!r}")
            key, items, segments = (int(v) for v in found)
            exact = (items if level == "clip" else segments) <= self.exact_max
            self._plan(conn, exact)
            if level == "clip":
                return self._search_clip(conn, key, query, k)
            return self._search_segments(conn, key, query, k, segments)

    def _plan(self, conn: psycopg.Connection[Any], exact: bool) -> None:
        """This transaction's search settings: exact (no index scans), or HNSW iterative scans."""
        if exact:
            conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
            return
        conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(self.ef_search),))
        conn.execute("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")

    @staticmethod
    def _search_clip(conn: psycopg.Connection[Any], key: int, query: Query, k: int) -> Matches:
        q = query.clip
        rows = conn.execute(
            "SELECT id, metadata, clip <=> %s AS d FROM search_items "
            "WHERE collection = %s AND id IS DISTINCT FROM %s ORDER BY clip <=> %s LIMIT %s",
            (q, key, query.exclude, q, k),
        ).fetchall()
        return [Match(str(r[0]), cosine(1.0 - float(r[2])), _json(r[1])) for r in rows]

    def _search_segments(
        self, conn: psycopg.Connection[Any], key: int, query: Query, k: int, segments: int
    ) -> Matches:
        """Each query segment's nearest segments, the best pair kept per item; more candidates
        are fetched while fewer than ``k`` items came out of lists that were full."""
        limit = max(k * CANDIDATES_PER_K, 10)
        while True:
            rows = conn.execute(
                "SELECT q.i, s.item, s.idx, s.start_s, s.end_s, s.d "
                "FROM unnest(%s::int[], %s::vector[]) AS q (i, v) CROSS JOIN LATERAL "
                "(SELECT item, idx, start_s, end_s, v <=> q.v AS d FROM search_segments "
                "WHERE collection = %s ORDER BY v <=> q.v LIMIT %s) AS s",
                (list(range(len(query.vectors))), list(query.vectors), key, limit),
            ).fetchall()
            best: dict[int, tuple[float, int, int, float, float]] = {}
            for i, item, idx, start, end, d in rows:
                if item not in best or d < best[item][0]:
                    best[item] = (float(d), int(i), int(idx), float(start), float(end))
            names = _items(conn, list(best))
            kept = sorted(
                (
                    (d, names[item][0], item)
                    for item, (d, *_rest) in best.items()
                    if names[item][0] != query.exclude
                )
            )
            if len(kept) >= k or limit >= segments or len(rows) < limit * len(query.vectors):
                break
            limit *= 4
        matches = []
        for d, item_id, item in kept[:k]:
            _, i, idx, start, end = best[item]
            matches.append(
                Match(
                    item_id,
                    cosine(1.0 - d),
                    names[item][1],
                    Segment(idx, start, end),
                    segment_of(query.timestamps, i),
                )
            )
        return matches


def _copy_segments(conn: psycopg.Connection[Any], collection: int, keys: list[int], items: Items) -> None:
    """Every item's segments, in one binary COPY."""
    columns = "(item, collection, idx, start_s, end_s, v)"
    with conn.cursor().copy(f"COPY search_segments {columns} FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "int8", "int4", "float8", "float8", "vector"])
        for item_key, item in zip(keys, items, strict=True):
            for idx, (v, (start, end)) in enumerate(zip(item.embeddings, item.timestamps, strict=True)):
                copy.write_row((item_key, collection, idx, float(start), float(end), v))


def _create_extension(conn: psycopg.Connection[Any], shown: str) -> None:
    """``CREATE EXTENSION vector``, or a RuntimeError that says what the server lacks."""
    try:
        with conn.transaction():  # a savepoint: the error is reported, not the aborted transaction
            conn.execute(SCHEMA[0])
    except psycopg.Error as e:
        raise RuntimeError(
            f"the search database {shown} has no pgvector extension ({' '.join(str(e).split())}): install "
            "pgvector on the server, or have an administrator run CREATE EXTENSION vector there"
        ) from None


def _items(conn: psycopg.Connection[Any], keys: list[int]) -> dict[int, tuple[str, dict[str, Any] | None]]:
    rows = conn.execute("SELECT key, id, metadata FROM search_items WHERE key = ANY(%s)", (keys,)).fetchall()
    return {int(r[0]): (str(r[1]), _json(r[2])) for r in rows}


def _collection_key(conn: psycopg.Connection[Any], name: str, lock: bool = False) -> int:
    found = conn.execute(
        "SELECT key FROM search_collections WHERE name = %s" + (" FOR UPDATE" if lock else ""), (name,)
    ).fetchone()
    if found is None:
        raise CollectionNotFoundError(f"no collection named {name!r}")
    return int(found[0])


def _version(conn: psycopg.Connection[Any]) -> int:
    if conn.execute("SELECT to_regclass('search_schema')").fetchone() == (None,):
        return 0
    row = conn.execute("SELECT version FROM search_schema").fetchone()
    return 0 if row is None else int(row[0])


def _json(text: str | None) -> dict[str, Any] | None:
    import json

    return None if text is None else dict(json.loads(text))
