"""A catalogue of bad requests: each gets its 4xx problem+json, and the server keeps serving."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient
from service_helpers import assert_problem, clip

WAV = clip(2.0)
B64 = base64.b64encode(WAV).decode()
TRUNCATED = WAV[: len(WAV) // 2]
JSON = {"content-type": "application/json"}


def _samples(samples: Any, rate: Any = 16000) -> dict[str, Any]:
    return {"json": {"inputs": [{"samples": samples, "sample_rate": rate}]}}


# name -> (request keyword arguments, query string, expected status, expected problem slug)
CATALOGUE: dict[str, tuple[dict[str, Any], str, int, str]] = {
    "empty raw body": ({"content": b"", "headers": {"content-type": "audio/wav"}}, "", 400, "missing-audio"),
    "no body, no type": ({}, "", 400, "missing-audio"),
    "not audio": (
        {"content": b"hello, world" * 50, "headers": {"content-type": "audio/wav"}},
        "",
        415,
        "undecodable-audio",
    ),
    "truncated wav": (
        {"content": TRUNCATED, "headers": {"content-type": "audio/wav"}},
        "",
        415,
        "undecodable-audio",
    ),
    "nan samples": (
        {"content": b'{"inputs": [{"samples": [0.1, NaN, 0.2], "sample_rate": 16000}]}', "headers": JSON},
        "",
        422,
        "invalid-audio",
    ),
    "zero sample rate": (_samples([0.0] * 100, 0), "", 422, "invalid-parameter"),
    "fractional sample rate": (_samples([0.0] * 100, 16000.5), "", 422, "invalid-parameter"),
    "huge sample rate": (_samples([0.0] * 100, 10**9), "", 422, "invalid-parameter"),
    "bad base64": (
        {"json": {"inputs": [{"audio_base64": "%%% not base64 %%%"}]}},
        "",
        422,
        "invalid-parameter",
    ),
    "base64 of text": (
        {"json": {"inputs": [{"audio_base64": base64.b64encode(b"text" * 40).decode()}]}},
        "",
        415,
        "undecodable-audio",
    ),
    "unknown pooling": ({"files": {"file": ("a.wav", WAV)}}, "pooling=max", 422, "invalid-parameter"),
    "hop 0.123": ({"files": {"file": ("a.wav", WAV)}}, "hop=0.123", 422, "invalid-parameter"),
    "hop zero": ({"files": {"file": ("a.wav", WAV)}}, "hop=0", 422, "invalid-parameter"),
    "hop not a number": ({"files": {"file": ("a.wav", WAV)}}, "hop=fast", 422, "invalid-parameter"),
    "unknown encoding": ({"files": {"file": ("a.wav", WAV)}}, "encoding=hex", 422, "invalid-parameter"),
    "unknown resampler": ({"files": {"file": ("a.wav", WAV)}}, "resampler=linear", 422, "invalid-parameter"),
    "unknown query parameter": ({"files": {"file": ("a.wav", WAV)}}, "colour=red", 422, "invalid-parameter"),
    "wrong content type": (
        {"content": WAV, "headers": {"content-type": "text/plain"}},
        "",
        415,
        "unsupported-media-type",
    ),
    "missing file part": ({"files": {"audio": ("a.wav", WAV)}}, "", 400, "missing-audio"),
    "empty file part": ({"files": {"file": ("a.wav", b"")}}, "", 400, "missing-audio"),
    "json without inputs": ({"json": {}}, "", 422, "invalid-parameter"),
    "json with empty inputs": ({"json": {"inputs": []}}, "", 422, "invalid-parameter"),
    "empty json body": ({"content": b"", "headers": JSON}, "", 400, "missing-audio"),
    "malformed json": ({"content": b'{"inputs": [', "headers": JSON}, "", 422, "invalid-parameter"),
    "samples not a list": (_samples("abc"), "", 422, "invalid-parameter"),
    "ragged channels": (_samples([[0.1, 0.2], [0.3]]), "", 422, "invalid-audio"),
    "channels-first layout": (_samples([[0.0] * 100] * 2 * 50), "", 422, "invalid-audio"),
    "unknown json field": (
        {"json": {"inputs": [{"audio_base64": B64, "colour": "red"}]}},
        "",
        422,
        "invalid-parameter",
    ),
    "postprocess not a bool": (
        {"files": {"file": ("a.wav", WAV)}},
        "postprocess=maybe",
        422,
        "invalid-parameter",
    ),
    "bad content-length": (
        {"content": WAV, "headers": {"content-type": "audio/wav", "content-length": "lots"}},
        "",
        422,
        "invalid-parameter",
    ),
}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_bad_request_gets_problem_json(client: TestClient, name: str) -> None:
    kwargs, query, status, slug = CATALOGUE[name]
    r = client.post("/v1/embeddings" + (f"?{query}" if query else ""), **kwargs)
    body = assert_problem(r, status)
    assert body["type"].endswith(slug), body
    assert client.get("/healthz").status_code == 200


def test_validation_errors_name_the_field(client: TestClient) -> None:
    r = client.post("/v1/embeddings?hop=0.123&pooling=max", files={"file": ("a.wav", WAV)})
    fields = {e["field"] for e in assert_problem(r, 422)["errors"]}
    assert fields == {"query.hop", "query.pooling"}


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404)
    assert_problem(client.get("/v1/embeddings"), 405)


def test_failures_are_counted_and_a_good_request_still_works(client: TestClient) -> None:
    metrics = client.get("/metrics").text
    assert 'vggish_failures_total{reason="invalid-parameter"}' in metrics
    r = client.post("/v1/embeddings", files={"file": ("a.wav", WAV)})
    assert r.status_code == 200 and len(r.json()["data"][0]["embeddings"]) == 2


def test_an_unexpected_error_is_a_500_problem_with_the_request_id_and_a_logged_traceback(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service = client.app.state.service  # type: ignore[attr-defined]

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug the tests planted")

    monkeypatch.setattr(service, "embed", broken)
    with caplog.at_level("ERROR", logger="app.errors"):
        r = client.post("/v1/embeddings", files={"file": ("a.wav", WAV)}, headers={"x-request-id": "req-500"})
    body = assert_problem(r, 500)
    assert body["request_id"] == "req-500" == r.headers["x-request-id"]
    assert "req-500" in body["detail"] and "a bug the tests planted" not in r.text  # no internals shown
    logged = [rec for rec in caplog.records if rec.name == "app.errors"]
    assert logged and logged[0].exc_info is not None
    assert "a bug the tests planted" in str(logged[0].exc_info[1])
