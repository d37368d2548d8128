"""Heads across real uvicorn processes: served again after a restart, whole or absent after a
``kill -9`` in the middle of imports; a training stops when its client leaves and when the server
is told to stop; two replicas share their heads through one PostgreSQL database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from service_helpers import REPO, Server, clip, free_port, metric, uvicorn_server

from vggish import heads

pytestmark = pytest.mark.slow  # starts uvicorn processes


def train_body(name: str, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((6, 128)) + np.repeat(np.eye(3, 128) * 4, 2, axis=0)
    return {"name": name, "embeddings": x.tolist(), "labels": ["a", "a", "b", "b", "c", "c"]}


def test_heads_survive_a_restart(tmp_path: Path) -> None:
    env = {"VGGISH_DATA_DIR": str(tmp_path)}
    wavs = [("file", (f"c{i}.wav", clip(1.2, seed=i), "audio/wav")) for i in range(4)]
    with uvicorn_server(**env) as server, httpx.Client(base_url=server.base, timeout=120) as http:
        assert http.post("/v1/heads", json=train_body("json-head", 1)).status_code == 201
        r = http.post("/v1/heads", files=wavs, data={"name": "audio-head", "label": ["x", "y"] * 2})
        assert r.status_code == 201, r.text
        before = http.get("/v1/heads").json()
        exported = http.get("/v1/heads/audio-head/export").content
        labels = http.post("/v1/heads/audio-head/classify", files=wavs[:1]).json()["data"][0]["labels"]
    with uvicorn_server(**env) as server, httpx.Client(base_url=server.base, timeout=120) as http:
        assert http.get("/v1/heads").json() == before
        assert [h["name"] for h in before["data"]] == ["audio-head", "json-head"]
        again = heads.from_safetensors(http.get("/v1/heads/audio-head/export").content)
        original = heads.from_safetensors(exported)
        for key, value in original.weights.items():
            np.testing.assert_array_equal(again.weights[key], value)
        now = http.post("/v1/heads/audio-head/classify", files=wavs[:1]).json()["data"][0]["labels"]
        assert [s["label"] for s in now] == [s["label"] for s in labels]
        np.testing.assert_allclose([s["score"] for s in now], [s["score"] for s in labels], atol=1e-5)


def test_kill_9_during_imports_then_restart(tmp_path: Path) -> None:
    env = {"VGGISH_DATA_DIR": str(tmp_path)}
    with uvicorn_server(**env) as server:
        with httpx.Client(base_url=server.base, timeout=60) as http:
            assert http.post("/v1/heads", json=train_body("seed", 2)).status_code == 201
            blob = http.get("/v1/heads/seed/export").content
        started = threading.Event()
        stop = threading.Event()

        def importer(k: int) -> None:
            with httpx.Client(base_url=server.base, timeout=60) as http:
                i = 0
                while not stop.is_set():
                    try:
                        http.put(f"/v1/heads/h{k}-{i % 5}", content=blob)
                    except httpx.TransportError:
                        return
                    i += 1
                    if i == 5:
                        started.set()

        threads = [threading.Thread(target=importer, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        assert started.wait(120)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        stop.set()
        for t in threads:
            t.join()
    with uvicorn_server(**env) as server, httpx.Client(base_url=server.base, timeout=60) as http:
        listed = http.get("/v1/heads").json()["data"]
        assert len(listed) >= 2
        for item in listed:
            head = heads.from_safetensors(http.get(f"/v1/heads/{item['name']}/export").content)
            assert head.classes == ("a", "b", "c")
        assert http.get("/readyz").status_code == 200


# --- a long training, stopped -----------------------------------------------------------------

WAIT_S = 120  # bounds every wait, so that a regression fails instead of hanging
LONG_ROWS, LONG_CLASSES = 3000, 300  # ~1-2 minutes of one core on a small machine: never waited for
FULL_STEPS = heads.TRAIN_STEPS * (1 + heads.MAX_FOLDS)  # what the whole training would take


def long_training() -> bytes:
    rng = np.random.default_rng(9)
    x = rng.standard_normal((LONG_ROWS, 128))
    labels = [f"c{i % LONG_CLASSES}" for i in range(LONG_ROWS)]
    return json.dumps({"name": "long", "embeddings": np.round(x, 3).tolist(), "labels": labels}).encode()


def send_training(server: Server, body: bytes) -> socket.socket:
    """Sends ``POST /v1/heads`` on a raw connection (the test decides when it closes)."""
    host, port = urlsplit(server.base).hostname, urlsplit(server.base).port
    sock = socket.create_connection((host, port), timeout=WAIT_S)
    head = (
        f"POST /v1/heads HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def metrics_until(http: httpx.Client, done: Any) -> str:
    """/metrics, polled until ``done(text)`` holds (bounded)."""
    for _ in range(WAIT_S * 10):
        text = http.get("/metrics").text
        if done(text):
            return text
        time.sleep(0.1)
    raise AssertionError("the service's metrics never reached the state waited for")


def steps(text: str) -> float:
    return metric(text, "vggish_head_training_steps_total")


def running(text: str) -> float:
    return metric(text, "vggish_head_trainings_running")


def test_a_training_stops_when_its_client_leaves(tmp_path: Path) -> None:
    env = {"VGGISH_DATA_DIR": str(tmp_path), "VGGISH_MAX_TRAIN_CLASSES": str(LONG_CLASSES)}
    with uvicorn_server(**env) as server, httpx.Client(base_url=server.base, timeout=WAIT_S) as http:
        sock = send_training(server, long_training())
        metrics_until(http, lambda t: running(t) == 1 and steps(t) > 0)  # it is training
        sock.close()  # the client leaves
        stopped = metrics_until(http, lambda t: running(t) == 0)
        assert steps(stopped) < FULL_STEPS  # it stopped part way...
        again = http.get("/metrics").text
        assert steps(again) == steps(stopped)  # ...and takes no more steps
        assert metric(again, "vggish_failures_total", reason="client-disconnected") == 1
        assert http.get("/v1/heads").json()["data"] == []
        assert http.post("/v1/heads", json=train_body("after", 3)).status_code == 201


def test_sigterm_stops_a_running_training_and_the_server(tmp_path: Path) -> None:
    env = {
        "VGGISH_DATA_DIR": str(tmp_path),
        "VGGISH_MAX_TRAIN_CLASSES": str(LONG_CLASSES),
        "VGGISH_REQUEST_TIMEOUT_S": "3600",  # the graceful shutdown would wait an hour for it
    }
    with uvicorn_server(**env) as server, httpx.Client(base_url=server.base, timeout=WAIT_S) as http:
        sock = send_training(server, long_training())
        metrics_until(http, lambda t: running(t) == 1 and steps(t) > 0)
        server.proc.send_signal(signal.SIGTERM)
        # it ends long before the training would have (uvicorn re-raises the SIGTERM it handled
        # once its graceful shutdown is over, hence that status)
        assert server.proc.wait(WAIT_S) == -signal.SIGTERM
        answer = sock.recv(65536).decode()
        sock.close()
        assert answer.startswith("HTTP/1.1 503"), answer[:200]
        assert "shutting down" in answer and "retry-after: 1" in answer.lower()


# --- replicas sharing one PostgreSQL ------------------------------------------------------------


def test_two_replicas_share_their_heads_through_postgresql(postgres_url: str, tmp_path: Path) -> None:
    wavs = [("file", (f"c{i}.wav", clip(1.2, seed=i), "audio/wav")) for i in range(6)]
    probe = [("file", ("probe.wav", clip(2.5, seed=40), "audio/wav"))]
    env_a = {"VGGISH_DATABASE_URL": postgres_url, "VGGISH_DATA_DIR": str(tmp_path / "a")}
    env_b = {"VGGISH_DATABASE_URL": postgres_url, "VGGISH_DATA_DIR": str(tmp_path / "b")}
    with (
        uvicorn_server(**env_a) as a,
        uvicorn_server(**env_b) as b,
        httpx.Client(base_url=a.base, timeout=WAIT_S) as on_a,
        httpx.Client(base_url=b.base, timeout=WAIT_S) as on_b,
    ):
        trained = on_a.post("/v1/heads", files=wavs, data={"name": "common", "label": ["x", "y", "z"] * 2})
        assert trained.status_code == 201, trained.text
        assert on_b.get("/v1/heads/common").json() == trained.json()  # the same head, at once
        assert on_b.get("/v1/heads").json() == on_a.get("/v1/heads").json()
        assert on_b.get("/v1/heads/common/export").content == on_a.get("/v1/heads/common/export").content
        from_a = on_a.post("/v1/heads/common/classify", files=probe).json()
        from_b = on_b.post("/v1/heads/common/classify", files=probe).json()
        assert from_a == from_b  # the same numbers, label for label and frame for frame
        assert len(from_b["data"][0]["frames"]) == 2 and from_b["data"][0]["labels"][0]["score"] > 0
        replaced = on_b.post(
            "/v1/heads", files=wavs, data={"name": "common", "label": ["x", "y"] * 3, "replace": "true"}
        )
        assert replaced.status_code == 200 and replaced.json()["version"] == 2
        assert on_a.get("/v1/heads/common").json()["classes"] == ["x", "y"]
        assert on_a.delete("/v1/heads/common").status_code == 204
        assert on_b.get("/v1/heads/common").status_code == 404
    assert not (tmp_path / "a" / "heads.sqlite3").exists() and not (tmp_path / "b").exists()


def test_a_replica_with_an_unreachable_database_does_not_start() -> None:
    port = free_port()
    url = f"postgresql://vggish:s3cret-pw@127.0.0.1:{free_port()}/vggish"
    environ = {**os.environ, "VGGISH_WEIGHTS": "random", "PYTHONPATH": str(REPO), "VGGISH_DATABASE_URL": url}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    done = subprocess.run(command, cwd=REPO, env=environ, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode != 0
    assert "cannot reach the heads database postgresql://vggish@127.0.0.1" in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout
