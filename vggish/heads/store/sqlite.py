"""Heads in one SQLite database file in a data directory: the embedded default.

Each head is one row written in one transaction. The database runs in WAL mode with
``synchronous=FULL``; every operation opens its own connection (safe across threads and
processes; ``busy_timeout`` makes concurrent writers wait, not fail). The schema is versioned
with ``PRAGMA user_version`` and upgraded by :data:`MIGRATIONS` on first use.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vggish.heads.store.base import COLUMNS, SCHEMA_VERSION, BaseHeadStore, Row

DB_NAME = "heads.sqlite3"
BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another writer's transaction
# MIGRATIONS[i] takes the schema from user_version i to i + 1 (statements run in one transaction).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE heads (
            name TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            classes TEXT NOT NULL,          -- JSON list of labels, in score order
            num_examples INTEGER NOT NULL,
            metrics TEXT NOT NULL,          -- JSON: cv_accuracy, train_accuracy, folds (or null)
            created_at TEXT NOT NULL,       -- ISO 8601, UTC
            version INTEGER NOT NULL,       -- 1, then +1 each time the name is replaced
            tensors BLOB NOT NULL           -- the head as safetensors bytes
        )
        """,
    ),
    (  # the head's FeatureSpec; NULL (as in rows stored before) means unknown
        "ALTER TABLE heads ADD COLUMN weights_sha256 TEXT",  # 64 hex digits, or 'random'
        "ALTER TABLE heads ADD COLUMN hop_seconds REAL",
        "ALTER TABLE heads ADD COLUMN pad INTEGER",  # 0 or 1
        "ALTER TABLE heads ADD COLUMN resampler TEXT",
    ),
)
assert len(MIGRATIONS) == SCHEMA_VERSION
_COLUMNS = ", ".join(COLUMNS)


def migrate(conn: sqlite3.Connection) -> int:
    """Brings the schema to :data:`SCHEMA_VERSION` in one transaction; returns the old version.

    Raises:
        RuntimeError: the database is newer than this code.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"the heads database has schema {current}; this code knows {SCHEMA_VERSION}")
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current


class HeadStore(BaseHeadStore):
    """The heads of one data directory, in SQLite (the embedded default; also ``SqliteHeadStore``).

    Args:
        data_dir: the directory holding ``heads.sqlite3``; created on the first write.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / DB_NAME
        self._migrated = False
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return str(self.path)

    @contextmanager
    def _connect(self, create: bool) -> Iterator[sqlite3.Connection | None]:
        """A fresh connection (None when the database does not exist and ``create`` is false)."""
        if not create and not self.path.exists():
            yield None
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise RuntimeError(f"cannot open the heads database {self.path}: {e}") from e
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA synchronous = FULL")
            self._prepare(conn)
            yield conn
        except sqlite3.Error as e:
            raise RuntimeError(f"heads database {self.path}: {e}") from e
        finally:
            conn.close()

    def _prepare(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if self._migrated:
                return
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn)
            self._migrated = True

    def open(self) -> None:
        with self._connect(create=True):
            pass

    def schema_version(self) -> int:
        if not self.path.exists():
            return 0
        try:
            with sqlite3.connect(self.path) as conn:
                return int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as e:
            raise RuntimeError(f"heads database {self.path}: {e}") from e

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``ok`` when sound)."""
        with self._connect(create=True) as conn:
            assert conn is not None
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    def _insert(self, row: Row, replace: bool) -> int | None:
        with self._connect(create=True) as conn:
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                found = conn.execute("SELECT version FROM heads WHERE name = ?", (row.name,)).fetchone()
                if found is not None and not replace:
                    conn.execute("ROLLBACK")
                    return None
                version = 1 if found is None else int(found[0]) + 1
                values = row.values(version)
                marks = ", ".join("?" * len(values))
                conn.execute(f"INSERT OR REPLACE INTO heads ({_COLUMNS}, tensors) VALUES ({marks})", values)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return version

    def _select_all(self) -> Sequence[tuple[Any, ...]]:
        with self._connect(create=False) as conn:
            if conn is None:
                return []
            return conn.execute(f"SELECT {_COLUMNS} FROM heads ORDER BY name").fetchall()

    def _select(self, name: str) -> tuple[Any, ...] | None:
        with self._connect(create=False) as conn:
            if conn is None:
                return None
            row: tuple[Any, ...] | None = conn.execute(
                f"SELECT {_COLUMNS}, tensors FROM heads WHERE name = ?", (name,)
            ).fetchone()
            return row

    def _delete(self, name: str) -> bool:
        with self._connect(create=False) as conn:
            if conn is None:
                return False
            return conn.execute("DELETE FROM heads WHERE name = ?", (name,)).rowcount > 0


SqliteHeadStore = HeadStore
