"""Where classifier heads live: SQLite in a data directory (the embedded default), or PostgreSQL
for replicas that share their heads. Both keep each head whole or absent across crashes, version
their schema and have one API (:class:`BaseHeadStore`); ``HeadStore`` is the SQLite store.
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
