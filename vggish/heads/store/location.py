"""Choosing a store from where it lives: a PostgreSQL URL or a data directory (SQLite). Apart
from :mod:`.base` so that nothing the backends import imports them (no cycle)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from vggish.errors import InvalidInputError
from vggish.heads.store.base import POSTGRES_SCHEMES, BaseHeadStore
from vggish.heads.store.sqlite import HeadStore


def is_postgres_url(location: str | Path) -> bool:
    return isinstance(location, str) and urlsplit(location).scheme.lower() in POSTGRES_SCHEMES


def open_store(location: str | Path) -> BaseHeadStore:
    """The heads store at ``location``: a ``postgresql://`` URL (needs psycopg), or a data directory
    (SQLite); another URL scheme is an InvalidInputError. Nothing is connected yet."""
    if is_postgres_url(location):
        try:
            from vggish.heads.store.postgres import PostgresHeadStore
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
