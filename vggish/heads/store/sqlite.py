"""Heads in one SQLite file in a data directory (WAL, ``synchronous=FULL``, a connection per
operation, schema in ``PRAGMA user_version``). A read-only folder is still read; a full volume
still deletes: every write keeps a reserve file (:data:`RESERVE_BYTES`) that a deletion gives up.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vggish.heads.store.base import (
    COLUMNS,
    SCHEMA_VERSION,
    BaseHeadStore,
    Row,
    StoreFullError,
    StoreUnavailableError,
    TooManyHeadsError,
    migrations,
)

DB_NAME = "heads.sqlite3"
RESERVE_NAME = DB_NAME + "-reserve"
RESERVE_BYTES = 1 << 20  # room kept on the volume for deletions (a few pages of log each)
MIN_ROOM_BYTES = 64 << 10  # below this (beside the reserve) a volume is reported full
BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another writer's transaction
MIGRATIONS = migrations(postgres=False)
_COLUMNS = ", ".join(COLUMNS)


def migrate(conn: sqlite3.Connection) -> int:
    """Brings the schema to :data:`SCHEMA_VERSION` in one transaction; returns the old version."""
    if int(conn.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION:
        return SCHEMA_VERSION  # current: nothing written (a full or read-only volume reads on)
    with _write_transaction(conn):
        current = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"the heads database has schema {current}; this code knows {SCHEMA_VERSION}")
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return current


@contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class HeadStore(BaseHeadStore):
    """The heads of one data directory (``heads.sqlite3``, created on the first write)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / DB_NAME
        self.reserve = self.path.with_name(RESERVE_NAME)
        self._migrated = False
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return str(self.path)

    def writable(self) -> bool:
        """Whether this process may create files in the data directory or its nearest existing parent."""
        folder = self.path.parent
        while not folder.exists() and folder.parent != folder:
            folder = folder.parent
        return os.access(folder, os.W_OK)

    @contextmanager
    def _connect(self, create: bool = False) -> Iterator[sqlite3.Connection | None]:
        """A fresh connection (None when there is no database and ``create`` is false); read-only
        when the folder cannot be written and nothing is to be created."""
        if not create and not self.path.exists():
            yield None
            return
        read_only = not create and not self.writable()
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._open(read_only)
        except (OSError, sqlite3.Error) as e:
            raise self._unavailable(e) from e
        try:
            conn.execute("PRAGMA synchronous = FULL")
            self._prepare(conn, read_only)
            yield conn
        except sqlite3.Error as e:
            if isinstance(e, sqlite3.OperationalError) or type(e) is sqlite3.DatabaseError:
                raise self._unavailable(e) from e  # locked, full, read-only, I/O, corrupt
            raise RuntimeError(f"heads database {self.path}: {e}") from e
        finally:
            conn.close()

    def _open(self, read_only: bool) -> sqlite3.Connection:
        timeout = BUSY_TIMEOUT_MS / 1000  # sqlite3's busy timeout (PRAGMA busy_timeout reads 30000)
        if not read_only:
            return sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        immutable = "" if self.path.with_name(DB_NAME + "-wal").exists() else "&immutable=1"
        uri = f"{self.path.resolve().as_uri()}?mode=ro{immutable}"
        return sqlite3.connect(uri, timeout=timeout, isolation_level=None, uri=True)

    def _unavailable(self, e: BaseException) -> StoreUnavailableError:
        full = getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
        if full or getattr(e, "errno", 0) == errno.ENOSPC:
            return self._full()
        if not self.writable():
            return self._read_only()
        return StoreUnavailableError(f"the heads database {self.path} cannot be used: {e}")

    def _full(self) -> StoreFullError:
        return StoreFullError(
            f"the volume of {self.path.parent} is full: no head can be saved until it has more room "
            "(heads can still be read and deleted; deleting frees room inside the database only)"
        )

    def _read_only(self) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"{self.path.parent} is not writable by uid {os.getuid()}: heads can be read but not "
            "saved or deleted; mount a writable volume there or choose another data directory "
            "(VGGISH_DATA_DIR, --data-dir)"
        )

    def _prepare(self, conn: sqlite3.Connection, read_only: bool) -> None:
        with self._lock:
            if self._migrated:
                return
            if not read_only and conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn)
            self._migrated = not read_only

    def check_readable(self) -> None:
        with self._connect() as conn:
            if conn is not None:  # no database yet: nothing to read, nothing wrong
                conn.execute("SELECT 1 FROM heads LIMIT 1").fetchall()

    def check_writable(self) -> None:
        if not self.writable():
            raise self._read_only()
        if self.path.parent.exists():
            stat = os.statvfs(self.path.parent)
            room = stat.f_bavail * stat.f_frsize - (0 if self.reserve.exists() else RESERVE_BYTES)
            if room < MIN_ROOM_BYTES:
                raise self._full()

    def _keep_reserve(self) -> None:
        """Makes sure the reserve file holds its room before a write (else StoreFullError)."""
        if self.reserve.exists() and self.reserve.stat().st_size >= RESERVE_BYTES:
            return
        try:
            with open(self.reserve, "wb") as f:
                if hasattr(os, "posix_fallocate"):  # the blocks themselves, not a sparse file
                    os.posix_fallocate(f.fileno(), 0, RESERVE_BYTES)
                else:
                    f.write(bytes(RESERVE_BYTES))
                os.fsync(f.fileno())
        except OSError as e:
            self.reserve.unlink(missing_ok=True)
            raise self._unavailable(e) from e

    def _insert(self, row: Row, replace: bool, max_heads: int | None) -> int | None:
        with self._connect(create=True) as conn:
            assert conn is not None
            self._keep_reserve()
            with _write_transaction(conn):
                found = conn.execute("SELECT version FROM heads WHERE name = ?", (row.name,)).fetchone()
                if found is not None and not replace:
                    return None  # nothing written: the commit ends a read
                count = conn.execute("SELECT count(*) FROM heads").fetchone()[0] if found is None else 0
                if max_heads is not None and count >= max_heads:
                    raise TooManyHeadsError(max_heads)
                version = 1 if found is None else int(found[0]) + 1
                values = row.values(version)
                marks = ", ".join("?" * len(values))
                conn.execute(f"INSERT OR REPLACE INTO heads ({_COLUMNS}, tensors) VALUES ({marks})", values)
        return version

    def _select_all(self, after: str | None, limit: int | None) -> Sequence[tuple[Any, ...]]:
        with self._connect(create=False) as conn:
            if conn is None:
                return []
            query = f"SELECT {_COLUMNS} FROM heads WHERE name > ? ORDER BY name LIMIT ?"
            return conn.execute(query, (after or "", -1 if limit is None else limit)).fetchall()

    def _delete(self, name: str) -> bool:
        try:
            return super()._delete(name)
        except StoreFullError:
            self.reserve.unlink(missing_ok=True)  # the room kept for this: the next write remakes it
            return super()._delete(name)


SqliteHeadStore = HeadStore
