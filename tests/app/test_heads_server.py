"""Heads across real uvicorn processes: served again after a restart, and whole or absent after a
``kill -9`` in the middle of imports."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_helpers import clip, uvicorn_server

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
