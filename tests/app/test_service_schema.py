"""Schemathesis against the app's OpenAPI schema: generated requests never get a 5xx (in
process), and ``schemathesis run`` with every check of ``--checks all`` but its response-time
limit passes clean against a real server, with and without API keys
(``tests/app/schemathesis.toml`` says what no schema can: which content-laden routes may refuse
schema-valid bodies for their content).

To fuzz harder than CI does, run the same command by hand with more examples and another seed::

    VGGISH_WEIGHTS=random uvicorn vggish_app.main:app --port 8000 &
    schemathesis --config-file tests/app/schemathesis.toml run http://127.0.0.1:8000/openapi.json \
        --checks all --workers 1 --max-examples 500  # all: with a 10 s response-time limit
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from service_helpers import uvicorn_server

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


SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = Path(__file__).parent / "schemathesis.toml"
KEY = "schemathesis-key"
SEED = "20240611"  # reproducible in CI; pass another by hand to explore further
# Every check of `--checks all` but the response-time limit that it adds (10 s): no timed
# assertions here (one run on a busy 2-core VM failed it with a 415 "measured" at 83 s, during
# which the VM's wall clock stepped 80 s). The server's own request timeout bounds every answer.
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
    "response_schema_conformance,negative_data_rejection,positive_data_acceptance,missing_required_header,"
    "unsupported_method,allow_header_conformance,use_after_free,ensure_resource_availability,ignored_auth,"
    "object_level_authorization"
)
SMALL_LIMITS = {"VGGISH_MAX_UPLOAD_BYTES": "200000", "VGGISH_MAX_INPUT_SECONDS": "5"}


# Examples per operation: the run without keys fuzzes the bodies; the run with keys, the same
# operations behind authentication (what its checks add needs fewer examples).
@pytest.mark.parametrize(
    ("keys", "examples"), [(False, 50), (True, 20)], ids=["no-keys", "keys-and-protected-docs"]
)
def test_schemathesis_all_checks_pass_against_a_real_server(
    keys: bool, examples: int, tmp_path: Path
) -> None:
    env = {**SMALL_LIMITS, "VGGISH_DATA_DIR": str(tmp_path)}
    if keys:
        env.update(VGGISH_API_KEYS=KEY, VGGISH_PROTECT_DOCS="true")
    with uvicorn_server(**env) as server:
        command = [str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", server.base + "/openapi.json"]
        command += ["--checks", CHECKS, "--workers", "1", "--max-examples", str(examples)]
        command += ["--seed", SEED, "--no-color"]
        if keys:
            command += ["--header", f"Authorization: Bearer {KEY}"]
        done = subprocess.run(  # in tmp_path: schemathesis keeps a .schemathesis cache where it runs
            command, cwd=tmp_path, capture_output=True, text=True, timeout=800, check=False
        )
        assert server.proc.poll() is None, "the server died under the fuzzer"
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failure" not in done.stdout.split("SUMMARY")[-1]
