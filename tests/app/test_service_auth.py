"""API keys: /v1/* needs a bearer key when VGGISH_API_KEYS is set; health stays open. CORS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import assert_problem, clip, running_app

from vggish_app.config import Settings


@pytest.fixture(scope="module")
def secured() -> Iterator[TestClient]:
    with running_app(api_keys="key-one, key-two", cors_origins="https://example.org") as c:
        yield c


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": "Basic a2V5LW9uZQ=="},
        {"authorization": "Bearer "},
    ],
)
def test_v1_needs_a_valid_key(secured: TestClient, headers: dict[str, str]) -> None:
    for response in (
        secured.get("/v1/models", headers=headers),
        secured.post("/v1/embeddings", files={"file": ("a.wav", clip(1.0))}, headers=headers),
    ):
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_keys_are_accepted(secured: TestClient) -> None:
    for key in ("key-one", "key-two"):
        headers = {"authorization": f"Bearer {key}"}
        assert secured.get("/v1/models", headers=headers).status_code == 200
        r = secured.post("/v1/embeddings", files={"file": ("a.wav", clip(1.0))}, headers=headers)
        assert r.status_code == 200


DOCS_AND_METRICS = (
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/docs-assets/swagger-ui.css",
)


def test_health_docs_and_metrics_stay_open_by_default(secured: TestClient) -> None:
    for path in ("/healthz", "/readyz", *DOCS_AND_METRICS):
        assert secured.get(path).status_code == 200, path


@pytest.mark.slow
def test_protect_docs_puts_docs_and_metrics_behind_the_keys() -> None:
    with running_app(api_keys="key-one", protect_docs=True) as c:
        for path in DOCS_AND_METRICS:
            assert_problem(c.get(path), 401)
            assert_problem(c.get(path, headers={"authorization": "Bearer wrong"}), 401)
            assert c.get(path, headers={"authorization": "Bearer key-one"}).status_code == 200, path
        for path in ("/healthz", "/readyz"):
            assert c.get(path).status_code == 200
        schema = c.get("/openapi.json", headers={"authorization": "Bearer key-one"}).json()
        assert schema["paths"]["/metrics"]["get"]["security"] == [{"HTTPBearer": []}]


def test_protect_docs_needs_keys() -> None:
    with pytest.raises(ValueError, match="protect_docs needs api_keys"):
        Settings(protect_docs=True)


def _operations(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{m.upper()} {p}": op for p, ops in schema["paths"].items() for m, op in ops.items()}


def test_the_schema_declares_bearer_auth_exactly_where_a_key_is_needed(
    client: TestClient, secured: TestClient
) -> None:
    open_schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in open_schema["components"]
    for name, operation in _operations(open_schema).items():
        assert "security" not in operation and "401" not in operation["responses"], name
    keyed = _operations(secured.get("/openapi.json").json())
    for name, operation in keyed.items():
        needs_key = " /v1/" in name
        assert ("security" in operation) == needs_key and ("401" in operation["responses"]) == needs_key, name


def test_cors_preflight(secured: TestClient) -> None:
    r = secured.options(
        "/v1/embeddings",
        headers={"origin": "https://example.org", "access-control-request-method": "POST"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://example.org"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VGGISH_API_KEYS", "a,b")
    monkeypatch.setenv("VGGISH_MAX_INPUTS", "7")
    monkeypatch.setenv("VGGISH_WEIGHTS", "random")
    settings = Settings()
    assert settings.api_key_list == ("a", "b") and settings.max_inputs == 7 and settings.weights == "random"
