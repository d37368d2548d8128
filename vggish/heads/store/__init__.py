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

from vggish.heads.store.base import (
    SCHEMA_VERSION,
    BaseHeadStore,
    HeadExistsError,
    HeadNotFoundError,
    HeadRecord,
    StoreFullError,
    StoreUnavailableError,
    TooManyHeadsError,
)
from vggish.heads.store.location import is_postgres_url, open_store
from vggish.heads.store.sqlite import DB_NAME, HeadStore, SqliteHeadStore

__all__ = [
    "DB_NAME",
    "SCHEMA_VERSION",
    "BaseHeadStore",
    "HeadExistsError",
    "HeadNotFoundError",
    "HeadRecord",
    "HeadStore",
    "SqliteHeadStore",
    "StoreFullError",
    "StoreUnavailableError",
    "TooManyHeadsError",
    "is_postgres_url",
    "open_store",
]
