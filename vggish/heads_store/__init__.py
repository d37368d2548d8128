"""Where classifier heads live: SQLite in a data directory (the embedded default), or
PostgreSQL for replicas that share their heads.

>>> store = open_store("data")                                  # data/heads.sqlite3
>>> store = open_store("postgresql://vggish:pw@db:5432/vggish")  # every replica sees one set
>>> record = store.save("kinds", head); record, head = store.load("kinds")

Both keep each head whole or absent across crashes, version their schema (see
:data:`SCHEMA_VERSION`), and have the same API (:class:`BaseHeadStore`). The service (``app/``) and
the CLI (``vggish heads``) share this package. ``HeadStore`` is the SQLite store (its name from
before PostgreSQL); annotate with :class:`BaseHeadStore` where either may come.
"""

from pathlib import Path

from vggish.errors import InvalidInputError
from vggish.heads_store.base import (
    SCHEMA_VERSION,
    BaseHeadStore,
    HeadExistsError,
    HeadNotFoundError,
    HeadRecord,
    is_postgres_url,
)
from vggish.heads_store.sqlite import DB_NAME, HeadStore, SqliteHeadStore

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "BaseHeadStore",
    "HeadExistsError",
    "HeadNotFoundError",
    "HeadRecord",
    "HeadStore",
    "SqliteHeadStore",
    "is_postgres_url",
    "open_store",
]


def open_store(location: str | Path) -> BaseHeadStore:
    """The heads store at ``location``: a ``postgresql://user:password@host:port/db`` URL, or a
    data directory (SQLite, ``heads.sqlite3`` inside, created on the first write).

    Nothing is connected until the first operation (or :meth:`HeadStore.open`).

    Raises:
        InvalidInputError: a URL of another scheme.
        RuntimeError: a PostgreSQL URL without psycopg installed (``pip install 'vggish[postgres]'``).
    """
    if is_postgres_url(location):
        try:
            from vggish.heads_store.postgres import PostgresHeadStore
        except ImportError as e:
            raise RuntimeError(
                f"a PostgreSQL heads database needs psycopg: pip install 'vggish[postgres]' ({e})"
            ) from e
        return PostgresHeadStore(str(location))
    if isinstance(location, str) and "://" in location:
        scheme = location.split("://", 1)[0]
        raise InvalidInputError(
            f"heads database URL scheme {scheme!r} is not supported: give postgresql://... or a directory"
        )
    return HeadStore(location)
