"""API keys: /v1/* needs a bearer key when VGGISH_API_KEYS is set; health stays open. CORS."""

from __future__ import annotations

from collections.abc import Iterator

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


def test_health_and_metrics_stay_open(secured: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert secured.get(path).status_code == 200


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
