"""Where classifier heads live: one SQLite database file in a data directory.

Each head is one row: its metadata beside its safetensors bytes (a BLOB), written in one
transaction, so a crash at any moment leaves a head fully present or absent. The database runs
in WAL mode with ``synchronous=FULL``; every operation opens its own connection (safe across
threads and processes; ``busy_timeout`` makes concurrent writers wait, not fail). The schema is
versioned with ``PRAGMA user_version`` and upgraded by :data:`MIGRATIONS` on first use.

The service (``app/``) and the CLI (``vggish heads``) share this module.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vggish.errors import ConflictError, NotFoundError
from vggish.heads import Head, HeadMetrics, from_safetensors, to_safetensors, validate_name

DB_NAME = "heads.sqlite3"
BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another writer's transaction
# MIGRATIONS[i] takes the schema from user_version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
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
)
SCHEMA_VERSION = len(MIGRATIONS)
_COLUMNS = "name, kind, classes, num_examples, metrics, created_at, version"


class HeadNotFoundError(NotFoundError):
    """No head has this name."""


class HeadExistsError(ConflictError):
    """A head already has this name (and replacing was not asked for)."""


@dataclass(frozen=True)
class HeadRecord:
    """A stored head's metadata (its tensors stay in the database until loaded)."""

    name: str
    kind: str
    classes: tuple[str, ...]
    num_examples: int
    metrics: HeadMetrics | None
    created_at: str
    version: int


def _record(row: tuple[object, ...]) -> HeadRecord:
    name, kind, classes, num_examples, metrics, created_at, version = row
    raw = json.loads(str(metrics))
    parsed = None if raw is None else HeadMetrics(raw["cv_accuracy"], raw["train_accuracy"], raw["folds"])
    return HeadRecord(
        str(name),
        str(kind),
        tuple(json.loads(str(classes))),
        int(str(num_examples)),
        parsed,
        str(created_at),
        int(str(version)),
    )


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
        for script in MIGRATIONS[current:]:
            conn.execute(script)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return current


class HeadStore:
    """The heads of one data directory.

    Args:
        data_dir: the directory holding ``heads.sqlite3``; created on the first write.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / DB_NAME
        self._migrated = False
        self._lock = threading.Lock()

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
        """Creates or upgrades the database now (otherwise done on first use)."""
        with self._connect(create=True):
            pass

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` answer (``ok`` when sound)."""
        with self._connect(create=True) as conn:
            assert conn is not None
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    def save(self, name: str, head: Head, replace: bool = False) -> HeadRecord:
        """Stores ``head`` under ``name`` in one transaction.

        Raises:
            ValueError: a bad name.
            HeadExistsError: the name is taken and ``replace`` is false.
        """
        validate_name(name)
        blob = to_safetensors(head)
        metrics = json.dumps(None if head.metrics is None else head.metrics.__dict__)
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._connect(create=True) as conn:
            assert conn is not None
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT version FROM heads WHERE name = ?", (name,)).fetchone()
                if row is not None and not replace:
                    raise HeadExistsError(f"a head named {name!r} exists; replace it with replace=true")
                version = 1 if row is None else int(row[0]) + 1
                values = (name, head.kind, json.dumps(list(head.classes)), head.num_examples, metrics)
                conn.execute(
                    f"INSERT OR REPLACE INTO heads ({_COLUMNS}, tensors) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, created, version, sqlite3.Binary(blob)),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return HeadRecord(name, head.kind, head.classes, head.num_examples, head.metrics, created, version)

    def list(self) -> list[HeadRecord]:
        """Every head's metadata, by name."""
        with self._connect(create=False) as conn:
            if conn is None:
                return []
            rows = conn.execute(f"SELECT {_COLUMNS} FROM heads ORDER BY name").fetchall()
        return [_record(row) for row in rows]

    def get(self, name: str) -> HeadRecord:
        """One head's metadata.

        Raises:
            HeadNotFoundError: no such head.
        """
        return self._fetch(name)[0]

    def export(self, name: str) -> bytes:
        """One head's safetensors bytes.

        Raises:
            HeadNotFoundError: no such head.
        """
        return self._fetch(name)[1]

    def load(self, name: str) -> tuple[HeadRecord, Head]:
        """One head's metadata and the head itself, ready to score.

        Raises:
            HeadNotFoundError: no such head.
        """
        record, blob = self._fetch(name)
        return record, from_safetensors(blob)

    def _fetch(self, name: str) -> tuple[HeadRecord, bytes]:
        validate_name(name)
        with self._connect(create=False) as conn:
            row = None
            if conn is not None:
                query = f"SELECT {_COLUMNS}, tensors FROM heads WHERE name = ?"
                row = conn.execute(query, (name,)).fetchone()
        if row is None:
            raise HeadNotFoundError(f"no head named {name!r}")
        return _record(row[:-1]), bytes(row[-1])

    def delete(self, name: str) -> None:
        """Deletes one head.

        Raises:
            HeadNotFoundError: no such head.
        """
        validate_name(name)
        with self._connect(create=False) as conn:
            deleted = 0
            if conn is not None:
                deleted = conn.execute("DELETE FROM heads WHERE name = ?", (name,)).rowcount
        if deleted == 0:
            raise HeadNotFoundError(f"no head named {name!r}")
