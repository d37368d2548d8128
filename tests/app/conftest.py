"""Fixtures of the service tests (helpers live in ``service_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import running_app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """One app per test module (random weights, default limits)."""
    with running_app() as c:
        yield c


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def heads_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Settings that keep the heads in SQLite (a fresh data directory) or PostgreSQL (a fresh
    database on the test server): the heads suites run on both."""
    data_dir = tmp_path_factory.mktemp("heads-data")
    if request.param == "sqlite":
        return {"data_dir": data_dir}
    return {"data_dir": data_dir, "database_url": request.getfixturevalue("module_postgres_url")}
