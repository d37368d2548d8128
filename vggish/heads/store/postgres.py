"""Heads in a PostgreSQL database shared by every replica (psycopg 3: ``vggish[postgres]``): one
upsert per head assigns its version; schema upgrades run under an advisory lock, once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from vggish.errors import InvalidInputError
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

CONNECT_TIMEOUT_S = 10  # an unreachable server fails an operation after this long
PROBE_TIMEOUT_S = 2  # a readiness probe waits this long (libpq's shortest)
# Serialises schema upgrades across every process using the database (any fixed 64-bit key).
SCHEMA_LOCK_KEY = int.from_bytes(b"vggishHd", "big") >> 1
COUNT_LOCK_KEY = SCHEMA_LOCK_KEY + 1  # serialises counting and inserting heads under max_heads
MIGRATIONS = migrations(postgres=True)
_VERSION_TABLE = """
    CREATE TABLE IF NOT EXISTS heads_schema (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        version integer NOT NULL
    )
"""
_COLUMNS = ", ".join(COLUMNS)
_MARKS = ", ".join(["%s"] * (len(COLUMNS) + 1))
_UPDATES = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*COLUMNS, "tensors") if c not in ("name", "version"))


def _read_version(conn: psycopg.Connection[Any]) -> int:
    if conn.execute("SELECT to_regclass('heads_schema')").fetchone() == (None,):
        return 0
    row = conn.execute("SELECT version FROM heads_schema").fetchone()
    return 0 if row is None else int(row[0])


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Brings the schema to :data:`SCHEMA_VERSION` in one transaction; returns the old version."""
    current = _read_version(conn)
    if current == SCHEMA_VERSION:
        return current
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
        conn.execute(_VERSION_TABLE)
        current = _read_version(conn)
        if current > SCHEMA_VERSION:
            raise RuntimeError(f"the heads database has schema {current}; this code knows {SCHEMA_VERSION}")
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(
            "INSERT INTO heads_schema (only_row, version) VALUES (true, %s) "
            "ON CONFLICT (only_row) DO UPDATE SET version = EXCLUDED.version",
            (SCHEMA_VERSION,),
        )
    return current


def redact(url: str) -> str:
    """``url`` as ``postgresql://user@host:port/dbname``, without its password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error as e:
        raise InvalidInputError(f"malformed PostgreSQL URL ({_scrub(str(e), url)})") from e
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host') or ''}{port}/{info.get('dbname') or ''}"


def _scrub(text: str, url: str) -> str:
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    for secret in {str(password or ""), url.partition("://")[2].partition("@")[0].partition(":")[2]}:
        if secret:
            text = text.replace(secret, "***")
    return text


class PostgresHeadStore(BaseHeadStore):
    """The heads of one PostgreSQL database at libpq's ``url`` (the role creates the tables on
    first use, or an administrator runs :meth:`open` once)."""

    MARK = "%s"

    def __init__(self, url: str) -> None:
        self._url = url
        self._shown = redact(url)
        self._migrated = False
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return self._shown

    @contextmanager
    def _connect(self, create: bool = False, timeout: int | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A connection; ``create`` changes nothing (the database exists, or nothing can be done)."""
        try:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=timeout or CONNECT_TIMEOUT_S)
        except psycopg.Error as e:
            raise StoreUnavailableError(
                f"cannot reach the heads database {self._shown}: {_scrub(str(e).strip(), self._url)}; "
                "check that the server is up and that the URL (VGGISH_DATABASE_URL) names it"
            ) from e
        try:
            with conn:
                self._prepare(conn)
                yield conn
        except psycopg.Error as e:
            raise self._failed(e) from e

    def _failed(self, e: psycopg.Error) -> RuntimeError:
        """No room (SQLSTATE class 53), the server gone, or anything else."""
        message = f"heads database {self._shown}: {_scrub(str(e).strip(), self._url)}"
        if (e.sqlstate or "").startswith("53"):
            return StoreFullError(f"{message}; give the database server more room or delete heads")
        if isinstance(e, psycopg.OperationalError):
            return StoreUnavailableError(f"{message}; check that the server is up")
        return RuntimeError(message)

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if not self._migrated:
                migrate(conn)
                self._migrated = True

    def check_readable(self) -> None:
        with self._connect(timeout=PROBE_TIMEOUT_S) as conn:
            conn.execute("SELECT 1 FROM heads LIMIT 1").fetchall()

    def check_writable(self) -> None:
        """A standby server, or a role that may not write the heads, cannot be written."""
        with self._connect(timeout=PROBE_TIMEOUT_S) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), has_table_privilege('heads', 'INSERT, UPDATE, DELETE')"
            ).fetchone()
        where = f"the heads database {self._shown}"
        if row is not None and row[0]:
            raise StoreUnavailableError(
                f"{where} is a read-only standby: point VGGISH_DATABASE_URL at the primary"
            )
        if row is not None and not row[1]:
            raise StoreUnavailableError(f"{where} does not let this role write the heads table: grant it")

    def _insert(self, row: Row, replace: bool, max_heads: int | None) -> int | None:
        conflict = f"DO UPDATE SET {_UPDATES}, version = heads.version + 1" if replace else "DO NOTHING"
        query = (
            f"INSERT INTO heads ({_COLUMNS}, tensors) VALUES ({_MARKS}) "
            f"ON CONFLICT (name) {conflict} RETURNING version"
        )
        with self._connect() as conn, conn.transaction():
            if max_heads is not None:  # counted and written under one lock: replicas take turns
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (COUNT_LOCK_KEY,))
                new = conn.execute("SELECT 1 FROM heads WHERE name = %s", (row.name,)).fetchone() is None
                count = conn.execute("SELECT count(*) FROM heads").fetchone()
                if new and count is not None and count[0] >= max_heads:
                    raise TooManyHeadsError(max_heads)
            found = conn.execute(query, row.values(1)).fetchone()  # type: ignore[arg-type]
        return None if found is None else int(found[0])

    def _select_all(self, after: str | None, limit: int | None) -> Sequence[tuple[Any, ...]]:
        query = f'SELECT {_COLUMNS} FROM heads WHERE name COLLATE "C" > %s ORDER BY name COLLATE "C" LIMIT %s'
        with self._connect() as conn:
            return conn.execute(query, (after or "", limit)).fetchall()
