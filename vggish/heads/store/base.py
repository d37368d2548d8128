"""What every heads store shares: the record, the errors, the API, and the rows (metadata in
columns beside the safetensors bytes, written in one transaction). Backends supply only their
connections and SQL."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import astuple, dataclass
from datetime import datetime, timezone
from typing import Any

from vggish.errors import ConflictError, InvalidInputError, NotFoundError, plural
from vggish.heads import (
    MAX_NUM_EXAMPLES,
    UNKNOWN_FEATURES,
    FeatureSpec,
    Head,
    HeadMetrics,
    from_safetensors,
    to_safetensors,
    validate_name,
)

POSTGRES_SCHEMES = ("postgresql", "postgres")
# The columns each schema version added, with their SQLite and PostgreSQL types; both backends
# reach SCHEMA_VERSION through the MIGRATIONS that :func:`migrations` makes of this table.
SCHEMA: tuple[tuple[tuple[str, str, str], ...], ...] = (
    (
        ("name", "TEXT PRIMARY KEY", "text PRIMARY KEY"),
        ("kind", "TEXT NOT NULL", "text NOT NULL"),
        ("classes", "TEXT NOT NULL", "text NOT NULL"),  # JSON list of labels, in score order
        ("num_examples", "INTEGER NOT NULL", "bigint NOT NULL"),
        ("metrics", "TEXT NOT NULL", "text NOT NULL"),  # JSON: cv_accuracy, train_accuracy, folds (or null)
        ("created_at", "TEXT NOT NULL", "text NOT NULL"),  # ISO 8601, UTC
        ("version", "INTEGER NOT NULL", "integer NOT NULL"),  # 1, then +1 each time the name is replaced
        ("tensors", "BLOB NOT NULL", "bytea NOT NULL"),  # the head as safetensors bytes
    ),
    (  # the head's FeatureSpec; NULL (as in rows stored before) means unknown
        ("weights_sha256", "TEXT", "text"),  # 64 hex digits, or 'random'
        ("hop_seconds", "REAL", "double precision"),
        ("pad", "INTEGER", "boolean"),  # SQLite: 0 or 1
        ("resampler", "TEXT", "text"),
    ),
)
SCHEMA_VERSION = len(SCHEMA)
# Columns in the order rows are read and written (``tensors`` follows when it is read).
COLUMNS = tuple(column for added in SCHEMA for column, _, _ in added if column != "tensors")


def migrations(postgres: bool) -> tuple[tuple[str, ...], ...]:
    """``MIGRATIONS[i]``: the statements (run in one transaction) that take the schema from version
    i to i + 1, in PostgreSQL's types or SQLite's."""
    added = [[f"{name} {pg if postgres else sqlite}" for name, sqlite, pg in columns] for columns in SCHEMA]
    create = "CREATE TABLE heads (" + ", ".join(added[0]) + ")"
    return ((create,), *(tuple(f"ALTER TABLE heads ADD COLUMN {c}" for c in later) for later in added[1:]))


class HeadNotFoundError(NotFoundError):
    """No head has this name."""


class HeadExistsError(ConflictError):
    """A head already has this name (and replacing was not asked for)."""


class StoreUnavailableError(RuntimeError):
    """The store cannot be reached, opened or written now; the message names the cause and the fix."""


class StoreFullError(StoreUnavailableError):
    """The store's disk (or database) is full; deleting heads still works."""


class TooManyHeadsError(Exception):
    """A new head would pass the number of heads the store may hold (``max_heads``)."""

    def __init__(self, max_heads: int) -> None:
        super().__init__(
            f"the store holds {plural(max_heads, 'head')}, the most it may (max_heads): delete heads you no "
            "longer need, or replace one (same name, replace=true)"
        )
        self.max_heads = max_heads


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
    features: FeatureSpec = UNKNOWN_FEATURES


@dataclass(frozen=True)
class Row:
    """A head as the columns hold it (before ``version``, which the store assigns)."""

    name: str
    kind: str
    classes: str
    num_examples: int
    metrics: str
    created_at: str
    features: FeatureSpec  # its four columns: weights_sha256, hop_seconds, pad, resampler
    tensors: bytes

    @classmethod
    def of(cls, name: str, head: Head) -> Row:
        """The row of ``head`` saved as ``name`` now."""
        if not 0 <= head.num_examples <= MAX_NUM_EXAMPLES:
            raise InvalidInputError(f"num_examples must be 0 to {MAX_NUM_EXAMPLES}; got {head.num_examples}")
        return cls(
            validate_name(name),
            head.kind,
            json.dumps(list(head.classes)),
            head.num_examples,
            json.dumps(None if head.metrics is None else head.metrics.__dict__),
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
            head.features,
            to_safetensors(head),
        )

    def record(self, version: int) -> HeadRecord:
        return record_of(self.values(version)[:-1])

    def values(self, version: int) -> tuple[Any, ...]:
        """:data:`COLUMNS` order, then ``tensors``."""
        *head, features, tensors = astuple(self)  # astuple: features as a tuple too
        return (*head, version, *features, tensors)


def record_of(row: tuple[Any, ...]) -> HeadRecord:
    """The record of a row's :data:`COLUMNS`, as both databases return them (their column types)."""
    name, kind, classes, num_examples, metrics, created_at, version, sha, hop, pad, resampler = row
    raw = json.loads(metrics)
    features = FeatureSpec(sha, hop, None if pad is None else bool(pad), resampler)  # SQLite's pad: 0 or 1
    parsed = None if raw is None else HeadMetrics(**raw)
    return HeadRecord(
        name, kind, tuple(json.loads(classes)), num_examples, parsed, created_at, version, features
    )


class BaseHeadStore(ABC):
    """Named heads in one database. Backends create or upgrade their schema on first use, open a
    connection per operation (safe across threads and processes), and raise
    :class:`StoreUnavailableError` when the database cannot be reached, read or written now."""

    MARK = "?"  # the driver's query parameter placeholder

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the heads are, fit to print (a URL without its password)."""

    @abstractmethod
    def _connect(self, create: bool = False) -> AbstractContextManager[Any]:
        """A fresh autocommit connection with the schema current, or None when there is no
        database yet and ``create`` is false."""

    def open(self) -> None:
        """Creates or upgrades the schema now (otherwise done on first use)."""
        with self._connect(create=True):
            pass

    @abstractmethod
    def check_writable(self) -> None:
        """Raises StoreUnavailableError (StoreFullError) cheaply when a write cannot succeed."""

    @abstractmethod
    def check_readable(self) -> None:
        """Raises StoreUnavailableError cheaply when the store cannot be read."""

    def probe(self) -> str | None:
        """A readiness check: None, or why the store can be read but not written (raises when it
        cannot be read either)."""
        self.check_readable()
        try:
            self.check_writable()
        except StoreUnavailableError as e:
            return str(e)
        return None

    def save(self, name: str, head: Head, replace: bool = False, max_heads: int | None = None) -> HeadRecord:
        """Stores ``head`` under ``name`` in one transaction: version 1, or one more than the one it
        replaces (HeadExistsError unless ``replace``; TooManyHeadsError past ``max_heads``)."""
        row = Row.of(name, head)
        version = self._insert(row, replace, max_heads)
        if version is None:
            raise HeadExistsError(f"a head named {name!r} exists; replace it with replace=true")
        return row.record(version)

    def check_free(self, name: str, how: str = "replace=true") -> None:
        """Raises HeadExistsError when a head is named ``name`` (``how``: the way to replace it)."""
        try:
            self.get(name)
        except HeadNotFoundError:
            return
        raise HeadExistsError(f"a head named {name!r} exists; replace it with {how}")

    def list(self, after: str | None = None, limit: int | None = None) -> list[HeadRecord]:
        """The heads' metadata by name (byte order): those after ``after``, ``limit`` at most."""
        return [record_of(row) for row in self._select_all(after, limit)]

    def get(self, name: str) -> HeadRecord:
        """One head's metadata (HeadNotFoundError: no such head)."""
        return self._fetch(name)[0]

    def export(self, name: str) -> bytes:
        """One head's safetensors bytes (HeadNotFoundError: no such head)."""
        return self._fetch(name)[1]

    def load(self, name: str) -> tuple[HeadRecord, Head]:
        """One head's metadata and the head, ready to score (HeadNotFoundError: no such head)."""
        record, blob = self._fetch(name)
        return record, from_safetensors(blob)

    def delete(self, name: str) -> None:
        """Deletes one head (HeadNotFoundError: no such head)."""
        if not self._delete(validate_name(name)):
            raise HeadNotFoundError(f"no head named {name!r}")

    def _fetch(self, name: str) -> tuple[HeadRecord, bytes]:
        query = f"SELECT {', '.join(COLUMNS)}, tensors FROM heads WHERE name = {self.MARK}"
        args = (validate_name(name),)
        with self._connect() as conn:
            row = None if conn is None else conn.execute(query, args).fetchone()
        if row is None:
            raise HeadNotFoundError(f"no head named {name!r}")
        return record_of(row[:-1]), bytes(row[-1])

    @abstractmethod
    def _insert(self, row: Row, replace: bool, max_heads: int | None) -> int | None:
        """Writes ``row`` in one transaction; its version, or None when the name is taken."""

    @abstractmethod
    def _select_all(self, after: str | None, limit: int | None) -> Sequence[tuple[Any, ...]]:
        """The :data:`COLUMNS` of the rows named after ``after``, by name in byte order."""

    def _delete(self, name: str) -> bool:
        """Deletes one row; whether there was one."""
        query = f"DELETE FROM heads WHERE name = {self.MARK}"
        with self._connect() as conn:
            return conn is not None and conn.execute(query, (name,)).rowcount > 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"
