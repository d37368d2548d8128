"""Head trainings under load, in the real app (TestClient): they run on their own bounded threads,
so that store reads answer while every training thread is busy and more trainings wait; a
training whose request timed out stops between optimiser steps.

Liveness is asserted by order (a read completes while trainings are held at a gate), never by
timings; waits are bounded only so that a regression fails instead of hanging."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import assert_problem, metric, running_app

from vggish import heads

WAIT_S = 120  # bounds every wait: a regression fails the test instead of hanging it
TRAIN_THREADS = 2
TRAININGS = 8  # more than the default thread pool's workers on a small machine (CPUs + 4)


def body(name: str, rows: int = 6, classes: int = 2, seed: int = 0) -> dict[str, Any]:
    """A JSON training request of ``rows`` clip embeddings in ``classes`` separable classes."""
    rng = np.random.default_rng(seed)
    labels = [f"c{i % classes}" for i in range(rows)]
    centres = rng.standard_normal((classes, 128)) * 3
    x = centres[[i % classes for i in range(rows)]] + rng.standard_normal((rows, 128))
    return {"name": name, "embeddings": np.round(x, 3).tolist(), "labels": labels}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with running_app(data_dir=tmp_path, train_threads=TRAIN_THREADS, request_timeout_s=WAIT_S) as c:
        yield c


@pytest.mark.slow
def test_reads_answer_while_every_training_thread_is_busy(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.post("/v1/heads", json=body("existing")).status_code == 201
    gate = threading.Event()
    entered = threading.Semaphore(0)
    train = heads.train

    def gated(*args: Any, **kwargs: Any) -> Any:
        entered.release()
        assert gate.wait(WAIT_S)
        return train(*args, **kwargs)

    monkeypatch.setattr(heads, "train", gated)
    answers: dict[int, httpx.Response] = {}

    def post(k: int) -> None:
        answers[k] = client.post("/v1/heads", json=body(f"h{k}", seed=k))

    threads = [threading.Thread(target=post, args=(k,)) for k in range(TRAININGS)]
    for t in threads:
        t.start()
    try:
        for _ in range(TRAIN_THREADS):
            assert entered.acquire(timeout=WAIT_S)  # both training threads are held at the gate
        reads: dict[str, httpx.Response] = {}

        def read() -> None:
            reads["list"] = client.get("/v1/heads")
            reads["one"] = client.get("/v1/heads/existing")
            reads["metrics"] = client.get("/metrics")

        reader = threading.Thread(target=read)
        reader.start()
        reader.join(WAIT_S)
        assert not reader.is_alive(), "reads waited for the trainings"
        assert [h["name"] for h in reads["list"].json()["data"]] == ["existing"]
        assert reads["one"].status_code == 200
        text = reads["metrics"].text
        assert metric(text, "vggish_head_trainings_running") == TRAIN_THREADS  # the others wait
        assert not entered.acquire(blocking=False)  # no third training started
    finally:
        gate.set()
        for t in threads:
            t.join(WAIT_S)
    assert sorted(r.status_code for r in answers.values()) == [201] * TRAININGS
    names = [h["name"] for h in client.get("/v1/heads").json()["data"]]
    assert names == ["existing", *sorted(f"h{k}" for k in range(TRAININGS))]
    assert metric(client.get("/metrics").text, "vggish_head_trainings_running") == 0


@pytest.mark.slow
def test_a_training_past_the_request_timeout_stops(tmp_path: Path) -> None:
    # 3000 Adam steps of 5000 rows x 100 classes take far longer than the timeout; of 6 x 2, far less
    rows, classes = 5000, 100
    with running_app(data_dir=tmp_path, request_timeout_s=10.0, max_train_classes=classes) as c:
        problem = assert_problem(c.post("/v1/heads", json=body("slow", rows, classes)), 504)
        assert "request_timeout_s" in problem["detail"]
        steps = _settled_steps(c)
        assert 0 < steps < heads.TRAIN_STEPS * (1 + heads.MAX_FOLDS)  # started, and stopped early
        assert_problem(c.get("/v1/heads/slow"), 404)
        assert c.post("/v1/heads", json=body("quick")).status_code == 201  # the thread is free again


def _settled_steps(client: TestClient) -> float:
    """The optimiser steps counted once no training runs any more (bounded wait)."""
    done = threading.Event()
    for _ in range(WAIT_S * 10):
        text = client.get("/metrics").text
        if metric(text, "vggish_head_trainings_running") == 0:
            return metric(text, "vggish_head_training_steps_total")
        done.wait(0.1)
    raise AssertionError("the training never stopped")
