"""Reliability of the heads routes against real server processes on loopback: each attack gets its
status and problem type, the server's own peak resident memory (``VmHWM``, reset before) stays
within the row's budget, and the server answers ``/healthz`` afterwards (the helpers of
``tests/app/test_reliability.py``).

- JSON rows: a training body whose first row holds one number and whose second holds 20 million
  is refused at the first row (422 naming it), before the rest is read, or from its
  ``Content-Length`` (413 ``max_json_bytes``); an accepted body near the limit costs a small
  multiple of itself.
- Big heads: an imported head of 1000 classes of 254-character labels classifying 60 s at hop
  0.1: frames carry their best 5 labels, a ``top_k`` of 1000 is refused (413
  ``max_answer_labels``), a page of the list stays small.
- Store failures: a full volume (a 4 MiB tmpfs; root only: ``tests/test_heads_store.py``
  simulates a full database with SQLite's ``max_page_count`` everywhere), a read-only data
  folder (a read-only bind mount as root, else mode 555), PostgreSQL killed mid-run: 503 or 507
  problem+json naming the cause and the fix, DELETE working on a full volume, ``/readyz`` honest,
  embeddings working throughout.

``pytest tests/app/test_reliability_heads.py -s`` prints each row's figures.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from postgres_server import PostgresServer
from service_helpers import (
    Server,
    assert_problem,
    clip,
    proc_status,
    reset_peak,
    running_app,
    uvicorn_server,
)

from vggish import heads
from vggish.heads.store import HeadStore

pytestmark = pytest.mark.slow  # real servers, a training of thousands of rows, a minute of audio

MIB = 1 << 20
BUDGET = 48 * MIB  # a refused request: a chunk of its body, the problem, the allocator's noise
RNG = np.random.default_rng(21)


@pytest.fixture(scope="module")
def figures() -> Iterator[list[str]]:
    """Each row's status and peak growth, printed at the end (``pytest -s`` shows them)."""
    rows: list[str] = []
    yield rows
    print("\n" + "\n".join(rows))


def measured(
    server: Server, send: Callable[[], httpx.Response], figures: list[str], name: str
) -> tuple[httpx.Response, int]:
    """Sends a request; its answer and how far the server's peak rose above what it held before.
    Checks that the server still answers /healthz."""
    pid = server.proc.pid
    reset_peak(pid)
    before = proc_status(pid, "VmRSS")
    response = send()
    growth = proc_status(pid, "VmHWM") - before
    figures.append(f"{name:58} {response.status_code}  peak +{growth / MIB:6.1f} MiB")
    assert server.proc.poll() is None and httpx.get(server.base + "/healthz").status_code == 200
    return response, growth


def raw_request(server: Server, head: str, body: Iterator[bytes] | None = None) -> httpx.Response:
    """Sends a request on a socket, the body piece by piece until the server answers (a client
    need not finish sending a body the server refused), then reads the answer."""
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=120) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        for piece in body or ():
            if select.select([s], [], [], 0)[0]:
                break  # the answer is there
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                s.sendall(piece)
        answer = b""
        while not answer.rstrip().endswith(b"}") and (chunk := s.recv(65536)):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    head_text, _, content = rest.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").splitlines()
    headers = [(name, value) for name, _, value in (line.partition(": ") for line in lines)]
    if b"chunked" in head_text.lower():
        content = content.split(b"\r\n", 1)[1].rsplit(b"\r\n0", 1)[0].strip()
    return httpx.Response(int(status_line.split()[1]), headers=headers, content=content)


def chunked(start: bytes, then: bytes, times: int) -> Iterator[bytes]:
    """The pieces of a chunked body: ``start``, then ``then`` ``times`` times (never finished)."""
    for data in (start, *[then] * times):
        yield f"{len(data):x}\r\n".encode() + data + b"\r\n"


# --- JSON rows and big heads: one server ------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"VGGISH_DATA_DIR": str(tmp_path_factory.mktemp("heads-data")), "VGGISH_MAX_BATCH_EXAMPLES": "16"}
    with uvicorn_server(**env) as running:
        warm = {"name": "warm", "embeddings": RNG.standard_normal((4, 128)).tolist(), "labels": list("abab")}
        assert httpx.post(running.base + "/v1/heads", json=warm, timeout=120).status_code == 201  # training's
        yield running  # own memory in place (PyTorch's autograd, Adam), as a running server has it


TRAIN_HEAD = "POST /v1/heads HTTP/1.1\nHost: x\nContent-Type: application/json\n"
ZEROS = b"0," * (512 << 10)  # 1 MiB of a row that never ends (20 of them: 20 million numbers)
CHUNKED = TRAIN_HEAD + "Transfer-Encoding: chunked\n"


def test_a_short_first_row_is_refused_before_the_rest_is_read(server: Server, figures: list[str]) -> None:
    """[[0], [0, 0, ... 20 million numbers]]: 422 at the first row, from its first MiB."""
    start = b'{"name": "rows", "labels": ["a", "b"], "embeddings": [[0], ['
    send = lambda: raw_request(server, CHUNKED, chunked(start, ZEROS, 40))  # noqa: E731
    response, growth = measured(server, send, figures, "train json: [[0], [20 M numbers]], chunked")
    problem = assert_problem(response, 422)
    assert "embeddings[0] holds 1 number; every row holds 128" in problem["detail"]
    assert growth <= BUDGET


def test_a_row_of_millions_of_numbers_is_refused_at_its_129th(server: Server, figures: list[str]) -> None:
    row = b"[" + b"0.5, " * 127 + b"0.5]"
    start = b'{"name": "rows", "labels": ["a", "b"], "embeddings": [' + row + b", ["
    send = lambda: raw_request(server, CHUNKED, chunked(start, ZEROS, 15))  # noqa: E731
    response, growth = measured(server, send, figures, "train json: a second row of millions, chunked")
    assert "embeddings[1] holds more than 128 numbers" in assert_problem(response, 422)["detail"]
    assert growth <= BUDGET


def test_a_body_declared_over_max_json_bytes_is_413_unread(server: Server, figures: list[str]) -> None:
    head = TRAIN_HEAD + f"Content-Length: {40 * MIB}\n"
    response, growth = measured(
        server, lambda: raw_request(server, head), figures, "train json: 40 MB declared"
    )
    problem = assert_problem(response, 413)
    assert problem["limit"] == "max_json_bytes" and "train from the audio files" in problem["detail"]
    assert growth <= BUDGET


def test_a_body_over_max_json_bytes_as_it_arrives_is_413(server: Server, figures: list[str]) -> None:
    rows = (b"[" + b"0.12345678901234567, " * 127 + b"0.5], ") * 390  # 1 MiB of good rows
    start = b'{"name": "rows", "labels": ["a", "b"], "embeddings": ['
    send = lambda: raw_request(server, CHUNKED, chunked(start, rows, 20))  # noqa: E731
    response, growth = measured(server, send, figures, "train json: 20 MiB of good rows, chunked")
    assert assert_problem(response, 413)["limit"] == "max_json_bytes"
    assert growth <= BUDGET


def test_an_accepted_body_near_the_limit_costs_a_small_multiple_of_itself(
    server: Server, figures: list[str]
) -> None:
    """6000 rows of full-precision numbers (15 MB of JSON): rows become float32 as they close;
    the peak is a few times the body (the training's own tensors included)."""
    x = RNG.standard_normal((6000, 128)) + np.repeat(np.eye(2, 128) * 3, 3000, axis=0)
    body = json.dumps({"name": "near-limit", "labels": ["a", "b"] * 3000, "embeddings": x.tolist()}).encode()
    assert 12 * MIB < len(body) < 16 * MIB
    send = lambda: httpx.post(  # noqa: E731
        server.base + "/v1/heads", content=body, headers={"content-type": "application/json"}, timeout=600
    )
    response, growth = measured(
        server, send, figures, f"train json: 6000 rows ({len(body) / MIB:.0f} MiB), accepted"
    )
    assert response.status_code == 201, response.text[:500]
    assert response.json()["num_examples"] == 6000
    assert growth <= 3 * len(body) + BUDGET, (
        f"peak +{growth / MIB:.0f} MiB for a {len(body) / MIB:.0f} MiB body"
    )


LABEL_CHARS = 254


@pytest.fixture(scope="module")
def big_head(server: Server) -> str:
    """An imported head of 1000 classes of 254-character labels (the most a head holds)."""
    classes = tuple(f"{k:04d}" + "x" * (LABEL_CHARS - 4) for k in range(1000))
    weights = {
        "out.weight": (RNG.standard_normal((1000, 128)) * 0.1).astype(np.float32),
        "out.bias": np.zeros(1000, np.float32),
    }
    mean, std = np.zeros(128, np.float32), np.ones(128, np.float32)
    head = heads.Head(
        "linear", classes, mean, std, weights, 1, None, heads.FeatureSpec(weights_sha256="random")
    )
    answer = httpx.put(server.base + "/v1/heads/big", content=heads.to_safetensors(head), timeout=120)
    assert answer.status_code == 201, answer.text[:500]
    return "big"


MINUTE = clip(60.0, seed=3)


def test_a_big_heads_frames_carry_5_labels(server: Server, big_head: str, figures: list[str]) -> None:
    send = lambda: httpx.post(  # noqa: E731
        f"{server.base}/v1/heads/{big_head}/classify",
        params={"hop": 0.1},
        content=MINUTE,
        headers={"content-type": "audio/wav"},
        timeout=600,
    )
    response, growth = measured(server, send, figures, "classify: 1000 classes x 591 frames, default")
    assert response.status_code == 200, response.text[:500]
    item = response.json()["data"][0]
    assert len(item["frames"]) == 591 and {len(f["labels"]) for f in item["frames"]} == {5}
    assert len(item["labels"]) == 1000 and len(response.content) < 4 * MIB
    assert growth <= 160 * MIB  # the model's batches of 16 examples, the minute's 591 examples


def test_a_big_heads_answer_past_max_answer_labels_is_413(
    server: Server, big_head: str, figures: list[str]
) -> None:
    send = lambda: httpx.post(  # noqa: E731
        f"{server.base}/v1/heads/{big_head}/classify",
        params={"hop": 0.1, "top_k": 1000},
        content=MINUTE,
        headers={"content-type": "audio/wav"},
        timeout=600,
    )
    response, growth = measured(server, send, figures, "classify: 1000 classes x 591 frames, top_k 1000")
    problem = assert_problem(response, 413)
    assert problem["limit"] == "max_answer_labels" and "592000 labels" in problem["detail"]
    assert growth <= 160 * MIB


def test_a_page_of_big_heads_stays_small(server: Server, big_head: str, figures: list[str]) -> None:
    send = lambda: httpx.get(server.base + "/v1/heads", params={"limit": 100}, timeout=120)  # noqa: E731
    response, growth = measured(server, send, figures, "list: a page holding the big head")
    assert response.status_code == 200 and big_head in [h["name"] for h in response.json()["data"]]
    assert growth <= BUDGET


# --- a full volume ----------------------------------------------------------------------------


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (tests/test_heads_store.py simulates a full database)")
    volume = tmp_path / "volume"
    volume.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(volume)], check=False
    ).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def head_file(classes: int, seed: int) -> bytes:
    x = np.random.default_rng(seed).standard_normal((2 * classes, 128)).astype(np.float32)
    head, _ = heads.train(x, [f"c{k}" for k in range(classes)] * 2, features=heads.FeatureSpec("random"))
    return heads.to_safetensors(head)


def test_a_full_volume_is_507_and_delete_still_works(small_volume: Path, figures: list[str]) -> None:
    data = head_file(200, 1)  # 100 KB
    with (
        uvicorn_server(VGGISH_DATA_DIR=str(small_volume / "data")) as running,
        httpx.Client(base_url=running.base, timeout=120) as http,
    ):
        stored = 0
        while http.put(f"/v1/heads/h{stored:03d}", content=data).status_code == 201:
            stored += 1
            assert stored < 100, "the volume never filled"
        assert stored > 5
        send = lambda: http.put("/v1/heads/one-more", content=data)  # noqa: E731
        response, growth = measured(running, send, figures, "put: on a full volume")
        problem = assert_problem(response, 507)
        assert problem["type"].endswith(":store-full") and "is full" in problem["detail"]
        assert "database or disk is full" not in problem["detail"] and growth <= BUDGET
        ready = http.get("/readyz")  # ready (embeddings work), saying what does not
        assert ready.status_code == 200 and "is full" in ready.json()["warnings"][0]
        delete = lambda: http.delete("/v1/heads/h000")  # noqa: E731
        response, growth = measured(running, delete, figures, "delete: on a full volume")
        assert response.status_code == 204 and growth <= BUDGET
        assert http.delete("/v1/heads/h001").status_code == 204
        assert http.get("/readyz").status_code == 200
        assert [h["name"] for h in http.get("/v1/heads", params={"limit": 1}).json()["data"]] == ["h002"]
        assert (
            http.post("/v1/embeddings", content=clip(2.0), headers={"content-type": "audio/wav"}).status_code
            == 200
        )
        assert http.get("/metrics").text.count('vggish_failures_total{reason="internal"}') == 0


# --- a read-only data folder ------------------------------------------------------------------


@pytest.fixture
def read_only_data(tmp_path: Path) -> Iterator[Path]:
    """A data directory holding the head ``kept``, then read-only: a read-only bind mount of it
    (root, who may write anywhere else), or mode 555 (anyone else)."""
    source = tmp_path / "data"
    x = RNG.standard_normal((6, 128)).astype(np.float32)
    HeadStore(source).save("kept", heads.train(x, list("ababab"), features=heads.FeatureSpec("random"))[0])
    if os.geteuid() != 0:
        source.chmod(0o555)
        try:
            yield source
        finally:
            source.chmod(0o755)
        return
    view = tmp_path / "view"
    view.mkdir()
    subprocess.run(["mount", "--bind", str(source), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


def test_a_read_only_folder_reads_heads_refuses_writes_with_503(
    read_only_data: Path, figures: list[str]
) -> None:
    with (
        uvicorn_server(VGGISH_DATA_DIR=str(read_only_data)) as running,
        httpx.Client(base_url=running.base, timeout=120) as http,
    ):
        ready = http.get("/readyz")
        assert ready.status_code == 200 and "not writable" in ready.json()["warnings"][0]
        assert [h["name"] for h in http.get("/v1/heads").json()["data"]] == ["kept"]
        wav = {"content-type": "audio/wav"}
        assert http.post("/v1/heads/kept/classify", content=clip(2.0), headers=wav).status_code == 200
        assert http.post("/v1/embeddings", content=clip(2.0), headers=wav).status_code == 200
        body = {"name": "new", "embeddings": RNG.standard_normal((4, 128)).tolist(), "labels": list("abab")}
        for name, send in {
            "train json: read-only data folder": lambda: http.post("/v1/heads", json=body),
            "delete: read-only data folder": lambda: http.delete("/v1/heads/kept"),
            "put: read-only data folder": lambda: http.put(
                "/v1/heads/x", content=http.get("/v1/heads/kept/export").content
            ),
        }.items():
            response, growth = measured(running, send, figures, name)
            problem = assert_problem(response, 503)
            assert problem["type"].endswith(":store-unavailable") and growth <= BUDGET
            assert f"{read_only_data} is not writable by uid {os.getuid()}" in problem["detail"]
            assert "mount a writable volume" in problem["detail"] and "VGGISH_DATA_DIR" in problem["detail"]
        assert http.get("/v1/heads/kept").status_code == 200


class Records(logging.Handler):
    """Keeps the records logged to it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_read_only_folder_is_said_in_one_line_at_start(read_only_data: Path) -> None:
    records = Records()
    logging.getLogger("app.main").addHandler(records)
    try:
        with running_app(data_dir=read_only_data) as c:
            assert c.get("/readyz").status_code == 200
    finally:
        logging.getLogger("app.main").removeHandler(records)
    said = [r.getMessage() for r in records.records if r.levelno >= logging.WARNING]
    assert said == [
        f"VGGISH_DATA_DIR={read_only_data} is not writable by uid {os.getuid()}: mount a writable "
        "volume or set VGGISH_DATA_DIR (heads can be read, not saved or deleted)"
    ]


# --- PostgreSQL killed mid-run ----------------------------------------------------------------


def test_postgresql_down_is_503_and_unready_then_recovers(
    private_postgres: PostgresServer, tmp_path: Path, figures: list[str]
) -> None:
    import psycopg

    with psycopg.connect(private_postgres.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE heads_live")
    env = {"VGGISH_DATA_DIR": str(tmp_path), "VGGISH_DATABASE_URL": private_postgres.url("heads_live")}
    body = {"name": "kept", "embeddings": RNG.standard_normal((4, 128)).tolist(), "labels": list("abab")}
    wav = {"content-type": "audio/wav"}
    with uvicorn_server(**env) as running, httpx.Client(base_url=running.base, timeout=120) as http:
        assert http.post("/v1/heads", json=body).status_code == 201
        private_postgres.kill_9()
        checks: dict[str, Callable[[], httpx.Response]] = {
            "list: PostgreSQL down": lambda: http.get("/v1/heads"),
            "train json: PostgreSQL down": lambda: http.post("/v1/heads", json={**body, "name": "new"}),
            "classify: PostgreSQL down": lambda: http.post(
                "/v1/heads/kept/classify", content=clip(1.5), headers=wav
            ),
            "delete: PostgreSQL down": lambda: http.delete("/v1/heads/kept"),
        }
        for name, send in checks.items():
            response, growth = measured(running, send, figures, name)
            problem = assert_problem(response, 503)
            assert problem["type"].endswith(":store-unavailable") and growth <= BUDGET
            assert "cannot reach the heads database postgresql://vggish@127.0.0.1:" in problem["detail"]
            assert private_postgres.password not in response.text and response.headers["retry-after"]
        ready = assert_problem(http.get("/readyz"), 503)
        assert "heads store cannot be read" in ready["detail"] and "heads_live" in ready["detail"]
        assert http.post("/v1/embeddings", content=clip(2.0), headers=wav).status_code == 200
        private_postgres.start()
        assert http.get("/readyz").status_code == 200
        assert [h["name"] for h in http.get("/v1/heads").json()["data"]] == ["kept"]
        assert http.post("/v1/heads/kept/classify", content=clip(1.5), headers=wav).status_code == 200
