"""Fixtures of the service tests (helpers live in ``service_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from service_helpers import running_app


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """One app per test module (random weights, default limits)."""
    with running_app() as c:
        yield c
