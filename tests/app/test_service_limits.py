"""Limits and backpressure: 413 naming the limit, 429 with Retry-After on a full queue, 504 on
timeout, and a client that goes away takes its examples out of the queue."""

from __future__ import annotations

import base64
import gc
import json
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import anyio
import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import assert_problem, clip, metric, running_app

from vggish_app.batching import BACKLOG_BATCHES

POLLS = 600  # x 0.05 s


def limit_of(response: Any, status: int = 413) -> str:
    body = assert_problem(response, status)
    assert body["detail"].startswith(body["limit"])
    return str(body["limit"])


@pytest.fixture(scope="module")
def small() -> Iterator[TestClient]:
    """An app with small limits."""
    with running_app(
        max_upload_bytes=100_000,
        max_json_bytes=60_000,
        max_input_seconds=2.5,
        max_request_seconds=4.0,
        max_inputs=3,
        max_queue_examples=8,
    ) as c:
        yield c


def test_upload_limit_raw_multipart_json(small: TestClient) -> None:
    big = clip(4.0)  # 128 kB
    assert (
        limit_of(small.post("/v1/embeddings", content=big, headers={"content-type": "audio/wav"}))
        == "max_upload_bytes"
    )
    assert limit_of(small.post("/v1/embeddings", files={"file": ("a.wav", big)})) == "max_upload_bytes"
    payload = {"inputs": [{"audio_base64": base64.b64encode(big).decode()}]}
    assert limit_of(small.post("/v1/embeddings", json=payload)) == "max_json_bytes"


def test_json_bodies_have_their_own_smaller_limit(small: TestClient) -> None:
    """A JSON body under the upload limit but over max_json_bytes is refused, declared or not,
    and the answer says where long audio goes; the same audio as a file is taken."""
    samples = {"inputs": [{"samples": [0.001] * 13_000, "sample_rate": 8000}]}  # 1.6 s, 78 kB of JSON
    declared = small.post("/v1/embeddings", json=samples)
    assert limit_of(declared) == "max_json_bytes"
    assert "multipart/form-data" in declared.json()["detail"] and "audio_base64" in declared.json()["detail"]
    body = json.dumps(samples).encode()
    chunks = (body[i : i + 10_000] for i in range(0, len(body), 10_000))  # no Content-Length
    undeclared = small.post("/v1/embeddings", content=chunks, headers={"content-type": "application/json"})
    assert limit_of(undeclared) == "max_json_bytes"
    as_file = small.post("/v1/embeddings", files={"file": ("a.wav", clip(1.6, 8000))})
    assert as_file.status_code == 200 and len(as_file.json()["data"][0]["embeddings"]) == 1
    assert small.get("/v1/models").json()["data"][0]["limits"]["max_json_bytes"] == 60_000


def test_upload_limit_on_a_chunked_body_without_length(small: TestClient) -> None:
    sent = []

    def chunks() -> Iterator[bytes]:
        for _ in range(40):  # 40 x 10 kB: the server stops reading after about 100 kB
            sent.append(1)
            yield b"\0" * 10_000

    r = small.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/octet-stream"})
    assert limit_of(r) == "max_upload_bytes"


def test_seconds_per_input(small: TestClient) -> None:
    r = small.post("/v1/embeddings", files={"file": ("long.wav", clip(3.0, 8000))})
    assert limit_of(r) == "max_input_seconds" and "long.wav" in r.json()["detail"]
    samples = [0] * (3 * 8000)  # 72 kB of JSON: under the upload limit
    r = small.post("/v1/embeddings", json={"inputs": [{"samples": samples, "sample_rate": 8000}]})
    assert limit_of(r) == "max_input_seconds"


def test_seconds_per_request(small: TestClient) -> None:
    files = [("file", (f"{i}.wav", clip(2.0, 8000))) for i in range(3)]
    assert limit_of(small.post("/v1/embeddings", files=files)) == "max_request_seconds"


def test_inputs_per_request(small: TestClient) -> None:
    files = [("file", (f"{i}.wav", clip(0.2, 8000))) for i in range(4)]
    assert limit_of(small.post("/v1/embeddings", files=files)) == "max_inputs"


def test_input_larger_than_the_queue(small: TestClient) -> None:
    r = small.post("/v1/embeddings?hop=0.1", files={"file": ("a.wav", clip(2.0, 8000))})
    assert limit_of(r) == "max_queue_examples"
    assert small.post("/v1/embeddings", files={"file": ("a.wav", clip(2.0, 8000))}).status_code == 200


@contextmanager
def blocked_model(client: TestClient) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Holds the inference thread inside its next model call until ``release`` is set."""
    batcher = client.app.state.service.batcher  # type: ignore[attr-defined]
    original = batcher.infer
    entered, release = threading.Event(), threading.Event()

    def infer(batch: np.ndarray) -> np.ndarray:
        entered.set()
        release.wait(timeout=120)
        return original(batch)  # type: ignore[no-any-return]

    batcher.infer = infer
    try:
        yield entered, release
    finally:
        release.set()
        batcher.infer = original


def wait_queue_depth(client: TestClient, depth: int) -> None:
    for _ in range(POLLS):
        if metric(client.get("/metrics").text, "vggish_queue_examples") == depth:
            return
        time.sleep(0.05)
    raise AssertionError(f"the queue never held {depth} examples")


def post_in_thread(pool: ThreadPoolExecutor, client: TestClient, seconds: float) -> Future[Any]:
    return pool.submit(client.post, "/v1/embeddings", files={"file": ("q.wav", clip(seconds, 8000))})


@pytest.mark.slow
def test_full_queue_answers_429_with_retry_after() -> None:
    with (
        running_app(max_queue_examples=6, max_batch_examples=2, retry_after_s=3) as c,
        ThreadPoolExecutor(2) as pool,
    ):
        with blocked_model(c) as (entered, release):
            first = post_in_thread(pool, c, 2.0)  # 2 examples: taken into the blocked batch
            assert entered.wait(timeout=120)
            second = post_in_thread(pool, c, 4.0)  # 4 examples wait in the queue
            wait_queue_depth(c, 4)
            r = c.post("/v1/embeddings", files={"file": ("full.wav", clip(3.0, 8000))})  # 3 more: 7 > 6
            assert_problem(r, 429)
            assert r.headers["retry-after"] == "3"
            release.set()
            assert first.result().status_code == 200 and second.result().status_code == 200
        assert c.post("/v1/embeddings", files={"file": ("ok.wav", clip(3.0, 8000))}).status_code == 200


@pytest.mark.slow
def test_timeout_answers_504_and_frees_the_queue() -> None:
    with running_app(request_timeout_s=0.5, max_batch_examples=1) as c:
        with blocked_model(c):
            r = c.post("/v1/embeddings", files={"file": ("slow.wav", clip(3.0, 8000))})
            assert_problem(r, 504)
            wait_queue_depth(c, 0)  # its two waiting examples were dropped, the model still blocked
        assert c.get("/healthz").status_code == 200
        text = c.get("/metrics").text
        assert metric(text, "vggish_failures_total", reason="timeout") == 1


async def _post_then_leave(app: Any, body: bytes, gone: anyio.Event) -> list[dict[str, Any]]:
    """Sends a raw ASGI request, then reports a disconnect once ``gone`` is set."""
    sent = False
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    headers = [(b"content-type", b"audio/wav"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/embeddings",
        "raw_path": b"/v1/embeddings",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return messages


@pytest.mark.slow
def test_disconnected_client_frees_its_queued_examples() -> None:
    with running_app(max_batch_examples=1) as c, ThreadPoolExecutor(1) as pool:
        assert c.portal is not None
        with blocked_model(c) as (entered, release):
            first = post_in_thread(pool, c, 1.0)
            assert entered.wait(timeout=120)
            gone = c.portal.call(anyio.Event)
            leaving = c.portal.start_task_soon(_post_then_leave, c.app, clip(3.0, 8000), gone)
            wait_queue_depth(c, BACKLOG_BATCHES)  # 3 examples; its feeder holds at most 2 batches of 1
            c.portal.call(gone.set)
            messages = leaving.result(timeout=120)
            wait_queue_depth(c, 0)  # dropped while the model is still blocked
            assert messages[0]["status"] == 499
            release.set()
            assert first.result().status_code == 200
        assert metric(c.get("/metrics").text, "vggish_failures_total", reason="client-disconnected") == 1


def test_a_stopped_app_holds_no_model() -> None:
    """After its lifespan ends, an app object that lives on (a test's client, FastAPI's routers
    link back to every app) holds neither the model nor the trainings: 0.6 GB per app otherwise."""
    with running_app() as c:
        model = weakref.ref(c.app.state.service.model)  # type: ignore[attr-defined]
    assert c.app.state.service is None and c.app.state.trainings is None  # type: ignore[attr-defined]
    gc.collect()
    assert model() is None
