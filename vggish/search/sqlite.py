"""Collections in one SQLite file in a data directory (the embedded default), searched exactly
in memory.

The file (``search.sqlite3``, beside the heads' database) is the truth: each add or delete is one
transaction (WAL, ``synchronous=FULL``), so a crash at any moment loses nothing acknowledged and
leaves no item half-written. Each process keeps its own :class:`~vggish.search.exact.ExactIndex`
of the collections it searched, and brings it up to date before each search from the changes
committed since (by any process: every service worker, the CLI): each collection counts its
writes (``seq``); an item row carries the ``seq`` that wrote it and every item removed or
replaced leaves a row in ``removed``. One read transaction gives the collection's ``seq`` and
the rows past the index's, so the index always equals a committed state. A collection deleted
and made again gets a new ``uid``, and an index too far behind (its removals pruned) is rebuilt.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from vggish.errors import LimitExceededError
from vggish.heads import FeatureSpec
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
    Matches,
    Query,
    StoreLimits,
    check_features,
    unknown_warning,
    validate_collection_name,
    validate_item_id,
)
from vggish.search.exact import ExactIndex

DB_NAME = "search.sqlite3"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 30_000
KEEP_REMOVED = 100_000  # removal rows kept per collection; an index further behind is rebuilt
SCHEMA = (
    """
    CREATE TABLE collections (
        name TEXT PRIMARY KEY,
        uid TEXT NOT NULL,              -- new each time the name is made
        weights_sha256 TEXT, hop_seconds REAL, pad INTEGER, resampler TEXT,  -- NULL: unknown
        created_at TEXT NOT NULL,       -- ISO 8601, UTC
        seq INTEGER NOT NULL,           -- writes so far
        pruned_seq INTEGER NOT NULL,    -- removals up to this seq are forgotten
        items INTEGER NOT NULL,
        segments INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE items (
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        seq INTEGER NOT NULL,           -- the collection's write that stored it
        metadata TEXT,                  -- JSON object, or NULL
        segments INTEGER NOT NULL,
        clip BLOB NOT NULL,             -- (128,) float32 little-endian: the mean of the segments
        embeddings BLOB NOT NULL,       -- (segments, 128) float32 little-endian
        timestamps BLOB NOT NULL,       -- (segments, 2) float64 little-endian, seconds
        PRIMARY KEY (collection, id)
    )
    """,
    "CREATE INDEX items_by_seq ON items (collection, seq)",
    "CREATE TABLE removed (collection TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL)",
    "CREATE INDEX removed_by_seq ON removed (collection, seq)",
)
Rows = list[tuple[Any, ...]]
Ids = list[str]
_ITEM_COLUMNS = "id, metadata, embeddings, timestamps"
_INFO_COLUMNS = "name, weights_sha256, hop_seconds, pad, resampler, items, segments, created_at"


def info_of(row: tuple[Any, ...]) -> CollectionInfo:
    """A ``_INFO_COLUMNS`` row (as either database returns it) -> CollectionInfo."""
    name, sha, hop, pad, resampler, items, segments, created_at = row
    features = FeatureSpec(
        sha, None if hop is None else float(hop), None if pad is None else bool(pad), resampler
    )
    return CollectionInfo(str(name), features, int(items), int(segments), str(created_at))


def item_of(row: tuple[Any, ...]) -> Item:
    """An ``_ITEM_COLUMNS`` row -> Item (the bytes as stored: float32 and float64, little-endian)."""
    item_id, metadata, embeddings, timestamps = row
    x = np.frombuffer(embeddings, "<f4").reshape(-1, 128)
    return Item(str(item_id), x, np.frombuffer(timestamps, "<f8").reshape(-1, 2), _json(metadata))


def _json(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def item_values(item: Item) -> tuple[Any, ...]:
    """An item's stored values: metadata JSON, segment count, clip, embeddings and timestamps bytes."""
    metadata = None if item.metadata is None else json.dumps(item.metadata, separators=(",", ":"))
    return (
        metadata,
        len(item.embeddings),
        item.clip.astype("<f4").tobytes(),
        item.embeddings.astype("<f4").tobytes(),
        item.timestamps.astype("<f8").tobytes(),
    )


@dataclass
class _Cached:
    uid: str
    seq: int
    index: ExactIndex
    lock: threading.Lock


class SqliteCollectionStore(BaseCollectionStore):
    """The collections of one data directory, in SQLite, searched exactly in memory.

    Args:
        data_dir: the directory holding ``search.sqlite3``; created on the first write.
        limits: what the store holds at most and what a search may ask.
    """

    def __init__(self, data_dir: str | Path, limits: StoreLimits | None = None) -> None:
        self.path = Path(data_dir) / DB_NAME
        self.limits = limits or StoreLimits()
        self._ready = False
        self._lock = threading.Lock()
        self._cache: dict[str, _Cached] = {}

    @property
    def location(self) -> str:
        return str(self.path)

    @contextmanager
    def _connect(self, create: bool = True) -> Iterator[sqlite3.Connection | None]:
        """A fresh connection, the schema current (None when there is no file and ``create`` is false)."""
        if not create and not self.path.exists():
            yield None
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise RuntimeError(f"cannot open the search database {self.path}: {e}") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")
            self._prepare(conn)
            yield conn
        except sqlite3.Error as e:
            raise RuntimeError(f"search database {self.path}: {e}") from e
        finally:
            conn.close()

    def _prepare(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if self._ready:
                return
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            with _transaction(conn):
                version = int(conn.execute("PRAGMA user_version").fetchone()[0])
                if version > SCHEMA_VERSION:
                    raise RuntimeError(
                        f"the search database has schema {version}; this code knows {SCHEMA_VERSION}"
                    )
                if version == 0:
                    for statement in SCHEMA:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._ready = True

    def open(self) -> None:
        with self._connect():
            pass

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``ok`` when sound)."""
        with self._connect() as conn:
            assert conn is not None
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    # --- reading -------------------------------------------------------------------------

    def list(self) -> Infos:
        with self._connect(create=False) as conn:
            if conn is None:
                return []
            rows = conn.execute(f"SELECT {_INFO_COLUMNS} FROM collections ORDER BY name").fetchall()
        return [info_of(r) for r in rows]

    def get(self, name: str) -> CollectionInfo:
        validate_collection_name(name)
        with self._connect(create=False) as conn:
            row = (
                None
                if conn is None
                else conn.execute(
                    f"SELECT {_INFO_COLUMNS} FROM collections WHERE name = ?", (name,)
                ).fetchone()
            )
        if row is None:
            raise CollectionNotFoundError(f"no collection named {name!r}")
        return info_of(row)

    def get_item(self, name: str, item_id: str) -> Item:
        validate_collection_name(name)
        validate_item_id(item_id)
        with self._connect(create=False) as conn:
            found = (
                None
                if conn is None
                else conn.execute(
                    f"SELECT {_ITEM_COLUMNS} FROM items WHERE collection = ? AND id = ?", (name, item_id)
                ).fetchone()
            )
        if found is None:
            self.get(name)  # CollectionNotFoundError first
            raise ItemNotFoundError(f"collection {name!r} has no item {item_id!r}")
        return item_of(found)

    # --- writing -------------------------------------------------------------------------

    def _add(self, name: str, items: Items, features: FeatureSpec, force: bool) -> AddResult:
        rows = [item_values(item) for item in items]
        with self._connect() as conn:
            assert conn is not None
            with _transaction(conn):
                found = conn.execute(
                    f"SELECT {_INFO_COLUMNS}, seq FROM collections WHERE name = ?", (name,)
                ).fetchone()
                created = found is None
                if created:
                    count = int(conn.execute("SELECT count(*) FROM collections").fetchone()[0])
                    if count >= self.limits.collections:
                        raise LimitExceededError(
                            "search_max_collections",
                            f"{count} collections exist; at most {self.limits.collections}",
                        )
                    conn.execute(
                        "INSERT INTO collections VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0)",
                        (name, secrets.token_hex(8), features.weights_sha256, features.hop_seconds,
                         features.pad, features.resampler, now()),
                    )  # fmt: skip
                    warning = unknown_warning(name) if features.unknown else None
                    seq = 1
                else:
                    warning = check_features(info_of(found[:-1]).features, features, force, name)
                    seq = int(found[-1]) + 1
                replaced = self._write_items(conn, name, items, rows, seq)
        return AddResult(self.get(name), created, tuple(replaced), warning)

    def _write_items(
        self, conn: sqlite3.Connection, name: str, items: Items, rows: Rows, seq: int
    ) -> tuple[str, ...]:
        """Writes the items as the collection's write ``seq``; the ids that replaced an item."""
        replaced: Ids = []
        removed_segments = 0
        for item, values in zip(items, rows, strict=True):
            old = conn.execute(
                "SELECT segments FROM items WHERE collection = ? AND id = ?", (name, item.id)
            ).fetchone()
            if old is not None:
                replaced.append(item.id)
                removed_segments += int(old[0])
                conn.execute("DELETE FROM items WHERE collection = ? AND id = ?", (name, item.id))
                conn.execute("INSERT INTO removed VALUES (?, ?, ?)", (name, item.id, seq))
            conn.execute("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (name, item.id, seq, *values))
        added = sum(len(item.embeddings) for item in items) - removed_segments
        conn.execute(
            "UPDATE collections SET seq = ?, items = items + ?, segments = segments + ? WHERE name = ?",
            (seq, len(items) - len(replaced), added, name),
        )
        total = int(conn.execute("SELECT items FROM collections WHERE name = ?", (name,)).fetchone()[0])
        if total > self.limits.items:
            raise LimitExceededError(
                "search_max_items",
                f"collection {name!r} would hold {total} items; at most {self.limits.items}",
            )
        if replaced:
            _prune(conn, name)
        return tuple(replaced)

    def delete(self, name: str) -> None:
        validate_collection_name(name)
        with self._connect(create=False) as conn:
            deleted = conn is not None and self._delete_collection(conn, name)
        if not deleted:
            raise CollectionNotFoundError(f"no collection named {name!r}")
        self._cache.pop(name, None)

    @staticmethod
    def _delete_collection(conn: sqlite3.Connection, name: str) -> bool:
        with _transaction(conn):
            for table in ("items", "removed"):
                conn.execute(f"DELETE FROM {table} WHERE collection = ?", (name,))
            return conn.execute("DELETE FROM collections WHERE name = ?", (name,)).rowcount > 0

    def delete_item(self, name: str, item_id: str) -> None:
        validate_collection_name(name)
        validate_item_id(item_id)
        with self._connect(create=False) as conn:
            outcome = "no collection" if conn is None else self._delete_one(conn, name, item_id)
        if outcome == "no collection":
            raise CollectionNotFoundError(f"no collection named {name!r}")
        if outcome == "no item":
            raise ItemNotFoundError(f"collection {name!r} has no item {item_id!r}")

    @staticmethod
    def _delete_one(conn: sqlite3.Connection, name: str, item_id: str) -> str:
        with _transaction(conn):
            found = conn.execute("SELECT seq FROM collections WHERE name = ?", (name,)).fetchone()
            if found is None:
                return "no collection"
            old = conn.execute(
                "SELECT segments FROM items WHERE collection = ? AND id = ?", (name, item_id)
            ).fetchone()
            if old is None:
                return "no item"
            seq = int(found[0]) + 1
            conn.execute("DELETE FROM items WHERE collection = ? AND id = ?", (name, item_id))
            conn.execute("INSERT INTO removed VALUES (?, ?, ?)", (name, item_id, seq))
            conn.execute(
                "UPDATE collections SET seq = ?, items = items - 1, segments = segments - ? WHERE name = ?",
                (seq, int(old[0]), name),
            )
            _prune(conn, name)
        return "deleted"

    # --- searching -----------------------------------------------------------------------

    def _search(self, name: str, query: Query, k: int, level: Level) -> Matches:
        cached = self._synced(name)
        try:
            return (
                cached.index.search_clip(query, k)
                if level == "clip"
                else cached.index.search_segments(query, k)
            )
        finally:
            cached.lock.release()

    def _synced(self, name: str) -> _Cached:
        """The collection's index, brought up to the committed state, its lock held."""
        with self._lock:
            cached = self._cache.get(name)
            if cached is None:
                cached = self._cache[name] = _Cached("", 0, ExactIndex(), threading.Lock())
        cached.lock.acquire()
        try:
            self._catch_up(name, cached)
        except BaseException:
            cached.lock.release()
            raise
        return cached

    def _catch_up(self, name: str, cached: _Cached) -> None:
        with self._connect(create=False) as conn:
            if conn is None:
                raise CollectionNotFoundError(f"no collection named {name!r}")
            with _transaction(conn, "BEGIN"):  # one snapshot: the seq and the rows up to it
                found = conn.execute(
                    "SELECT uid, seq, pruned_seq FROM collections WHERE name = ?", (name,)
                ).fetchone()
                if found is None:
                    cached.uid, cached.seq, cached.index = "", 0, ExactIndex()
                    raise CollectionNotFoundError(f"no collection named {name!r}")
                uid, seq, pruned = str(found[0]), int(found[1]), int(found[2])
                if uid != cached.uid or cached.seq < pruned:
                    cached.uid, cached.seq, cached.index = uid, 0, ExactIndex()
                if cached.seq == seq:
                    return
                removed = conn.execute(
                    "SELECT id FROM removed WHERE collection = ? AND seq > ?", (name, cached.seq)
                ).fetchall()
                for (item_id,) in removed:
                    cached.index.remove(str(item_id))
                rows = conn.execute(
                    f"SELECT {_ITEM_COLUMNS} FROM items WHERE collection = ? AND seq > ? ORDER BY seq",
                    (name, cached.seq),
                )
                while batch := rows.fetchmany(4096):
                    cached.index.add([item_of(row) for row in batch])
                cached.seq = seq


def _prune(conn: sqlite3.Connection, name: str) -> None:
    """Forgets the oldest removal rows beyond :data:`KEEP_REMOVED` (indexes behind them rebuild)."""
    cut = conn.execute(
        "SELECT seq FROM removed WHERE collection = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
        (name, KEEP_REMOVED),
    ).fetchone()
    if cut is not None:
        conn.execute("DELETE FROM removed WHERE collection = ? AND seq <= ?", (name, int(cut[0])))
        conn.execute("UPDATE collections SET pruned_seq = ? WHERE name = ?", (int(cut[0]), name))


@contextmanager
def _transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    conn.execute(begin)
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
