"""Schemathesis against the app's OpenAPI schema: generated requests never get a 5xx."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from vggish_app.config import Settings
from vggish_app.main import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    DATA_DIR = tempfile.mkdtemp(prefix="vggish-schema-")  # heads the fuzzer trains land here
    atexit.register(shutil.rmtree, DATA_DIR, True)
    APP = create_app(
        Settings(weights="random", max_upload_bytes=200_000, max_input_seconds=5.0, data_dir=DATA_DIR)
    )
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
pytestmark = pytest.mark.slow  # a few hundred generated requests


@pytest.fixture(scope="module", autouse=True)
def lifespan() -> object:
    """Runs the app's lifespan (model load) around this module's generated tests."""
    from fastapi.testclient import TestClient

    with TestClient(APP) as client:
        yield client


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case[Any]) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
