"""Reliability of reading request bodies, against a real server process on loopback with raw
sockets: clients that trickle bytes, bodies whose last byte is held back, JSON bodies arriving all
at once, clients that leave mid-body, on every route whose body is audio (embeddings, features,
classify) and on the head routes that read their bodies the same way.

Each test checks the status and problem type, the server's own peak memory (``VmHWM``, reset
before), that the server is healthy after, and that nothing was counted or logged as a server
fault (helpers from ``tests/app/test_reliability.py``'s ``service_helpers``).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import pytest
from service_helpers import (
    REPO,
    Server,
    assert_problem,
    clip,
    free_port,
    metric,
    proc_status,
    reset_peak,
)

pytestmark = pytest.mark.slow  # real servers, slow clients, 760 MB of held-back bodies

MIB = 1 << 20
BUDGET = 48 * MIB  # what the server may grow by beyond what a test names
BODY_TIMEOUT_S = 30  # the server's body_timeout_s here: held-back bodies wait this long
JSON_LIMIT = 4 * MIB  # the server's max_json_bytes here
HELD_BODY = 95_000_000  # bytes of each held-back upload (the server's limit is the default 100 MiB)
HELD_CLIENTS = 8
JSON_CLIENTS = 8
PENDING_JSON_BODIES = 4  # app.ingest.PENDING_JSON_BODIES: JSON bodies arriving at once, at most
SOCKET_TIMEOUT_S = 300  # a bound for each wait on the server, never reached when it works
POLLS = 1200  # x 0.1 s: waits for the server to read what was sent, or to count what happened
GOOD_EMBEDDINGS = np.random.default_rng(5).standard_normal((4, 128)).round(3).tolist()
BOUNDARY = "vggishbodies"


# --- the server, with its log -----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    server: Server
    log: Path
    http: httpx.Client

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    @property
    def port(self) -> int:
        return int(self.server.base.rsplit(":", 1)[1])


@contextmanager
def logged_server(folder: Path, **env: str) -> Iterator[tuple[Server, Path]]:
    """``uvicorn app.main:app`` on a free loopback port, its log kept in ``folder/server.log``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    environ = {
        **os.environ,
        "VGGISH_WEIGHTS": "random",
        "PYTHONPATH": str(REPO),
        "TMPDIR": str(folder),
        **env,
    }
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=environ, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(POLLS):
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield Server(base, proc), log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    folder = tmp_path_factory.mktemp("bodies")
    env = {
        "VGGISH_DATA_DIR": str(folder / "data"),
        "VGGISH_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "VGGISH_MAX_JSON_BYTES": str(JSON_LIMIT),
        "VGGISH_MAX_BATCH_EXAMPLES": "16",
    }
    with (
        logged_server(folder, **env) as (server, log),
        httpx.Client(base_url=server.base, timeout=SOCKET_TIMEOUT_S) as http,
    ):
        door = {"name": "door", "embeddings": GOOD_EMBEDDINGS, "labels": ["a", "b", "a", "b"]}
        assert http.post("/v1/heads", json=door).status_code == 201
        yield Target(server, log, http)


def assert_healthy(t: Target) -> None:
    """The server runs, answers, embeds; nothing so far was a server fault or logged one."""
    assert t.server.proc.poll() is None and t.http.get("/healthz").status_code == 200
    good = t.http.post("/v1/embeddings", files={"file": ("ok.wav", clip(1.0))})
    assert good.status_code == 200 and len(good.json()["data"][0]["embeddings"]) == 1
    assert metric(t.http.get("/metrics").text, "vggish_failures_total", reason="internal") == 0
    log = t.log.read_text()
    assert "Traceback" not in log and '"level": "error"' not in log, log[-3000:]


# --- requests sent by hand --------------------------------------------------------------------


class RawClient:
    """One HTTP/1.1 request written on a socket: its head at once, its body as the test says."""

    def __init__(self, t: Target, route: Route, length: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", t.port), timeout=SOCKET_TIMEOUT_S)
        head = (
            f"{route.method} {route.path} HTTP/1.1\r\nHost: x\r\nContent-Type: {route.content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        )
        self.sock.sendall(head.encode())

    def answered(self, wait_s: float = 0.0) -> bool:
        """Whether the server has started its answer (waiting up to ``wait_s``)."""
        return bool(select.select([self.sock], [], [], wait_s)[0])

    def send(self, data: bytes | memoryview) -> bool:
        """Sends ``data`` unless the server answered before; whether it all went."""
        if self.answered():
            return False
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def answer(self) -> httpx.Response:
        """The server's answer (a head with Content-Length, then that many bytes)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            assert chunk, f"the server closed the connection without an answer: {data!r}"
            data += chunk
        head, _, content = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = [(name, value) for name, _, value in (line.partition(": ") for line in lines)]
        length = int(dict((k.lower(), v) for k, v in headers)["content-length"])
        while len(content) < length:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the connection inside its answer"
            content += chunk
        return httpx.Response(int(status_line.split()[1]), headers=headers, content=content)

    def close(self) -> None:
        self.sock.close()


@dataclass(frozen=True)
class Route:
    """Where a body goes, and how a body of about ``size`` bytes of that kind is made."""

    method: str
    path: str
    content_type: str
    body: Callable[[int], bytes]


def wav_body(size: int) -> bytes:
    return clip(1.0)[:44] + bytes(size - 44)


def multipart_body(size: int) -> bytes:
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'.encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head + wav_body(size - len(head) - len(tail)) + tail


def samples_body(size: int) -> bytes:
    """``{"inputs": [{"sample_rate": 16000, "samples": [0,0,...]}]}`` of ``size`` bytes: 2 bytes of
    JSON per sample, 4 bytes of float32 once parsed."""
    head, tail = b'{"inputs": [{"sample_rate": 16000, "samples": [0', b"]}]}"
    return head + b",0" * ((size - len(head) - len(tail)) // 2) + tail


def train_body(size: int) -> bytes:
    body = json.dumps({"name": "t", "embeddings": GOOD_EMBEDDINGS, "labels": ["a", "b", "a", "b"]})
    return body.encode() + b" " * (size - len(body))


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
ROUTES = {
    "embeddings, raw": Route("POST", "/v1/embeddings", "audio/wav", wav_body),
    "embeddings, JSON": Route("POST", "/v1/embeddings", "application/json", samples_body),
    "features, multipart": Route("POST", "/v1/features", MULTIPART, multipart_body),
    "features, JSON": Route("POST", "/v1/features", "application/json", samples_body),
    "classify, multipart": Route("POST", "/v1/heads/door/classify", MULTIPART, multipart_body),
    "classify, JSON": Route("POST", "/v1/heads/door/classify", "application/json", samples_body),
    "head import": Route("PUT", "/v1/heads/imported", "application/octet-stream", wav_body),
    "head training, JSON": Route("POST", "/v1/heads", "application/json", train_body),
}
UPLOADS = ["embeddings, raw", "features, multipart", "classify, multipart"]


T = TypeVar("T")


def peak_of(t: Target, act: Callable[[], T]) -> tuple[T, int]:
    """What ``act`` returns, and how far the server's peak memory rose above its memory before."""
    reset_peak(t.pid)
    before = proc_status(t.pid, "VmRSS")
    result = act()
    return result, proc_status(t.pid, "VmHWM") - before


def wait_read(t: Target) -> None:
    """Waits until the server has read every byte sent to it (its sockets' receive queues are
    empty, and so are the clients' send queues)."""
    port = f"{t.port:04X}"
    for _ in range(POLLS):
        pending = 0
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            _, local, remote, _, queues, *_ = line.split()
            tx, rx = (int(q, 16) for q in queues.split(":"))
            if local.endswith(":" + port):  # the server's end: what it has not read
                pending += rx
            elif remote.endswith(":" + port):  # a client's end: what it has not sent yet
                pending += tx
        if pending == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the server never read what was sent")


def wait_counted(t: Target, name: str, value: float, **labels: str) -> None:
    for _ in range(POLLS):
        if metric(t.http.get("/metrics").text, name, **labels) >= value:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name}{labels} never reached {value}")


# --- the tests --------------------------------------------------------------------------------


def trickle(t: Target, route: Route) -> httpx.Response:
    """Sends a 10 kB body one byte every half second until the server answers."""
    client = RawClient(t, route, 10_000)
    try:
        for byte in route.body(10_000)[:10_000]:
            if not client.send(bytes([byte])) or client.answered(0.5):
                break
        return client.answer()
    finally:
        client.close()


def test_a_trickling_body_is_refused_at_the_least_rate(target: Target) -> None:
    """One byte every half second, on every route that reads a body: 408 naming
    min_body_bytes_per_s once the grace has passed, long before body_timeout_s."""
    with ThreadPoolExecutor(len(ROUTES)) as pool:
        answers, growth = peak_of(
            target, lambda: list(pool.map(lambda r: trickle(target, r), ROUTES.values()))
        )
    print(
        f"\n{len(ROUTES)} trickling bodies: {[a.status_code for a in answers]}, peak +{growth / MIB:.1f} MiB"
    )
    for name, answer in zip(ROUTES, answers, strict=True):
        body = assert_problem(answer, 408)
        assert body["type"].endswith(":body-timeout"), (name, body)
        assert body["limit"] == "min_body_bytes_per_s", (name, body)
    assert growth <= BUDGET, f"the server's peak rose by {growth / MIB:.0f} MiB"
    assert_healthy(target)


def test_held_back_uploads_hold_no_memory_and_get_408_at_the_deadline(target: Target) -> None:
    """Eight 95 MB uploads (raw, multipart to features and to classify) with their last byte held
    back: the server reads them all (to disk) while its memory stays where it was, then answers
    each 408 at body_timeout_s."""
    clients = [RawClient(target, ROUTES[UPLOADS[i % len(UPLOADS)]], HELD_BODY) for i in range(HELD_CLIENTS)]
    try:
        bodies = {name: memoryview(ROUTES[name].body(HELD_BODY))[:-1] for name in UPLOADS}

        def hold() -> None:
            with ThreadPoolExecutor(HELD_CLIENTS) as pool:
                sent = pool.map(
                    lambda i: clients[i].send(bodies[UPLOADS[i % len(UPLOADS)]]), range(HELD_CLIENTS)
                )
                assert all(sent)
            wait_read(target)

        _, growth = peak_of(target, hold)
        print(f"\n{HELD_CLIENTS} held-back uploads of {HELD_BODY} bytes: peak +{growth / MIB:.1f} MiB")
        assert growth <= BUDGET, f"the server's peak rose by {growth / MIB:.0f} MiB holding 8 x 95 MB"
        for client in clients:
            body = assert_problem(client.answer(), 408)
            assert body["type"].endswith(":body-timeout") and body["limit"] == "body_timeout_s", body
    finally:
        for client in clients:
            client.close()
    assert_healthy(target)


def test_json_bodies_arriving_at_once_are_bounded_together(target: Target) -> None:
    """Eight JSON bodies of max_json_bytes, their last byte held back: those past what JSON bodies
    may hold together get 503 with Retry-After at once; the others hold their float32 samples
    until their clients leave (499, not a server fault)."""
    names = ["embeddings, JSON", "features, JSON", "classify, JSON"]
    routes = [ROUTES[names[i % len(names)]] for i in range(JSON_CLIENTS)]
    body = samples_body(JSON_LIMIT)
    left = metric(target.http.get("/metrics").text, "vggish_failures_total", reason="client-disconnected")
    clients = [RawClient(target, route, len(body)) for route in routes]
    try:

        def send_all() -> list[bool]:
            with ThreadPoolExecutor(JSON_CLIENTS) as pool:
                sent = list(pool.map(lambda c: c.send(body[:-1]), clients))
            wait_read(target)
            return sent

        sent, growth = peak_of(target, send_all)
        refused = [c for c in clients if c.answered(0.0)]
        held = [c for c in clients if c not in refused]
        assert len(refused) >= JSON_CLIENTS - PENDING_JSON_BODIES and held, (len(refused), sent)
        for client in refused:
            answer = client.answer()
            problem = assert_problem(answer, 503)
            assert problem["type"].endswith(":busy") and answer.headers["retry-after"] == "1"
        print(f"\n{JSON_CLIENTS} JSON bodies at once: {len(refused)} refused, peak +{growth / MIB:.1f} MiB")
        float32 = PENDING_JSON_BODIES * 2 * JSON_LIMIT  # the samples of the bodies let in, at most
        assert growth <= BUDGET + float32, f"the server's peak rose by {growth / MIB:.0f} MiB"
    finally:
        for client in clients:
            client.close()
    wait_counted(target, "vggish_failures_total", left + len(held), reason="client-disconnected")
    assert_healthy(target)


def test_clients_that_leave_mid_body_are_counted_apart(target: Target) -> None:
    """A client that leaves halfway through its body, on every route: a 499 in the request
    metrics and a client-disconnected failure, one access-log line each, no traceback, no 500."""
    text = target.http.get("/metrics").text
    before = metric(text, "vggish_failures_total", reason="client-disconnected")
    for route in ROUTES.values():
        body = route.body(200_000)
        client = RawClient(target, route, len(body))
        assert client.send(body[: len(body) // 2])
        wait_read(target)
        client.close()
    wait_counted(target, "vggish_failures_total", before + len(ROUTES), reason="client-disconnected")
    text = target.http.get("/metrics").text
    for method, path in {(r.method, re.sub("door|imported", "{name}", r.path)) for r in ROUTES.values()}:
        count = metric(text, "vggish_request_duration_seconds_count", method=method, route=path, status="499")
        assert count >= 1, (method, path)
    lines = [json.loads(line) for line in target.log.read_text().splitlines() if line.startswith("{")]
    assert sum(line.get("status") == 499 for line in lines) >= len(ROUTES)
    assert_healthy(target)
