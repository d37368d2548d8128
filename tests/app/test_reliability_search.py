"""Reliability of ``/v1/collections`` against a real server process on loopback: bodies of
embeddings past a count, or holding a bad row deep inside, are refused as the row or count
arrives, with the server's own peak memory (``VmHWM``, reset before each request) growing by
little more than a piece of the body, and the server healthy after."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from service_helpers import Server, assert_problem, proc_status, reset_peak, uvicorn_server

pytestmark = pytest.mark.slow

MIB = 1 << 20
ROW = "[" + ",".join(["0.12345678"] * 128) + "]"  # about 1.4 kB of JSON a row
BUDGET = 24 * MIB  # a refused body: a few pieces of it and the rows read before the refusal


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("reliability-search")
    limits = {"VGGISH_MAX_UPLOAD_BYTES": str(200 * MIB), "VGGISH_MAX_JSON_BYTES": str(200 * MIB)}
    with uvicorn_server(VGGISH_DATA_DIR=str(data), **limits) as running:
        yield running


def rows_body(rows: int, bad_at: int | None = None) -> Iterator[bytes]:
    """One item of ``rows`` rows, streamed in pieces (a bad row at ``bad_at``)."""
    yield b'{"items": [{"id": "big", "embeddings": ['
    for n in range(rows):
        row = '["x"]' if n == bad_at else ROW
        yield (row if n == 0 else "," + row).encode()
    yield b"]}]}"


def many_items(count: int) -> Iterator[bytes]:
    yield b'{"items": ['
    for n in range(count):
        comma = "," if n else ""
        yield f'{comma}{{"id": "i{n}", "embeddings": [{ROW}]}}'.encode()
    yield b"]}"


@pytest.mark.parametrize(
    ("name", "body", "status", "says"),
    [
        (
            "rows past search_max_segments (100 MB body)",
            lambda: rows_body(70_000),
            413,
            "search_max_segments",
        ),
        ("a bad row after 9,000 good ones", lambda: rows_body(20_000, bad_at=9_000), 422, "rows of numbers"),
        ("items past search_max_items_per_request", lambda: many_items(30_000), 413, "per_request"),
    ],
)
def test_big_embeddings_bodies_are_refused_as_they_arrive(
    server: Server, name: str, body: object, status: int, says: str
) -> None:
    before = proc_status(server.proc.pid, "VmRSS")
    reset_peak(server.proc.pid)
    response = httpx.post(
        f"{server.base}/v1/collections/big/items",
        content=body(),  # type: ignore[operator]
        headers={"content-type": "application/json"},
        timeout=300,
    )
    growth = proc_status(server.proc.pid, "VmHWM") - before
    assert says in assert_problem(response, status)["detail"], name
    assert growth < BUDGET, f"{name}: peak grew {growth / MIB:.1f} MiB"
    assert httpx.get(f"{server.base}/healthz", timeout=30).status_code == 200
    assert_problem(httpx.get(f"{server.base}/v1/collections/big", timeout=30), 404)  # nothing written
