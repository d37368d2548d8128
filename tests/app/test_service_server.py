"""The service as a real uvicorn process on loopback, with real HTTP clients (httpx, sockets)."""

from __future__ import annotations

import base64
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from service_helpers import assert_problem, clip, metric, signal_of, uvicorn_server

from vggish.network.runtime import Runtime

pytestmark = pytest.mark.slow  # starts uvicorn processes

CLIENTS = 16
# float32 sums change with how examples share a batch: measured up to 2-3e-5 absolute (1.3-2.0e-6
# of the embeddings' scale) for every plan, direct convolutions included
ATOL = 3e-5


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with uvicorn_server(VGGISH_MAX_BATCH_WAIT_MS="50", VGGISH_MAX_UPLOAD_BYTES="1000000") as running:
        yield running.base


def test_every_input_form_over_http(server: str, random_model: Runtime) -> None:
    data = clip(2.0, 22050, channels=2, seed=11)
    expected = random_model.embed_file(data, postprocess=False).embeddings
    x = signal_of(2.0, 16000, seed=12)[:, 0]
    with httpx.Client(base_url=server, timeout=120) as http:
        answers = [
            http.post("/v1/embeddings", files={"file": ("a.wav", data, "audio/wav")}),
            http.post("/v1/embeddings", content=data, headers={"content-type": "audio/wav"}),
            http.post("/v1/embeddings", json={"inputs": [{"audio_base64": base64.b64encode(data).decode()}]}),
        ]
        samples = http.post(
            "/v1/embeddings", json={"inputs": [{"samples": x.tolist(), "sample_rate": 16000}]}
        )
    for r in answers:
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["data"][0]["embeddings"], expected, atol=ATOL)
    assert samples.status_code == 200
    np.testing.assert_allclose(
        samples.json()["data"][0]["embeddings"], random_model.embed(x, 16000).embeddings, atol=ATOL
    )


def test_concurrent_clients_are_batched_together(server: str, random_model: Runtime) -> None:
    clips = [clip(2.0, 16000, seed=100 + i) for i in range(CLIENTS)]
    start = threading.Barrier(CLIENTS)

    def call(data: bytes) -> httpx.Response:
        with httpx.Client(base_url=server, timeout=300) as http:
            start.wait(timeout=120)
            return http.post("/v1/embeddings", files={"file": ("c.wav", data)})

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(call, clips))
    for data, r in zip(clips, answers, strict=True):
        assert r.status_code == 200, r.text
        expected = random_model.embed_file(data, postprocess=False).embeddings
        np.testing.assert_allclose(r.json()["data"][0]["embeddings"], expected, atol=ATOL)
    text = httpx.get(server + "/metrics").text
    batches = metric(text, "vggish_batch_inputs_count")
    single = metric(text, "vggish_batch_inputs_bucket", le="1.0")
    assert batches - single > 0, "no model batch held examples of more than one request"
    bigger = batches - metric(text, "vggish_batch_examples_bucket", le="2.0")
    assert bigger > 0, "no model batch held more than one request's two examples"


def test_huge_declared_content_length_is_refused_before_reading(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    request = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
        b"Content-Length: 1000000000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(request)  # and no body: the answer must come without it
        head = b""
        for _ in range(100):  # the head and the problem body may arrive in separate packets
            head += s.recv(65536)
            if head.endswith(b"}"):
                break
    text = head.decode("latin-1")
    assert text.startswith("HTTP/1.1 413"), text
    assert "max_upload_bytes" in text
    assert httpx.get(server + "/healthz").status_code == 200


def test_problem_json_over_http(server: str) -> None:
    r = httpx.post(
        server + "/v1/embeddings?hop=0.123", content=clip(1.0), headers={"content-type": "audio/wav"}
    )
    assert_problem(r, 422)
    assert httpx.get(server + "/readyz").json() == {"status": "ready"}


def test_sigterm_drains_in_flight_requests() -> None:
    data = clip(12.0, 16000, seed=13)
    with uvicorn_server(VGGISH_MAX_BATCH_EXAMPLES="1") as running, ThreadPoolExecutor(1) as pool:
        url = running.base + "/v1/embeddings"
        pending = pool.submit(httpx.post, url, files={"file": ("d.wav", data)}, timeout=300)
        for _ in range(600):
            if metric(httpx.get(running.base + "/metrics").text, "vggish_queue_examples") > 0:
                break
            time.sleep(0.05)
        running.proc.send_signal(signal.SIGTERM)
        r = pending.result(timeout=300)
        assert r.status_code == 200 and len(r.json()["data"][0]["embeddings"]) == 12
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the status says SIGTERM
        assert running.proc.wait(timeout=120) in (0, -signal.SIGTERM)
