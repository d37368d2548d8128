"""Reliability of ``/v1/stream`` against a real ``vggish serve`` process on loopback.

What an attacker (or an unlucky client) can do to a live stream, and what it must get: a first
message nested thousands deep or float samples far out of range (4422, never a traceback);
messages larger than ``VGGISH_STREAM_MAX_MESSAGE_BYTES`` and many unauthenticated connections
(refused as they arrive, the server's own peak memory, ``VmHWM``, bounded); a stream faster than
real time (slowed, not cut, HTTP clients still answered); a shutdown (open streams drained, then
closed with 1012). After each, the server answers ``/healthz``.

``vggish serve`` is the server here, as users run it: its uvicorn configuration (the WebSocket
message limit, the draining protocol) is part of what is tested.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

import httpx
import numpy as np
import pytest
from service_helpers import READY_POLLS, REPO, Server, clip, free_port, proc_status, reset_peak, signal_of

from vggish.features.logmel import num_examples

websockets = pytest.importorskip("websockets", reason="needs websockets (the serve extra)")
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

pytestmark = pytest.mark.slow  # real servers and WebSocket clients

MIB = 1 << 20
BUDGET = 48 * MIB  # a refused stream: a message in flight and the server's own bookkeeping
KEY = "reliability-key"
MESSAGE_LIMIT = MIB  # VGGISH_STREAM_MAX_MESSAGE_BYTES of the keyed server
CONNECTIONS = 20


@contextmanager
def vggish_serve(**env: str) -> Iterator[Server]:
    """``vggish serve`` (random weights) in a subprocess on a free loopback port, ready."""
    port = free_port()
    environ = {**os.environ, "VGGISH_WEIGHTS": "random", "PYTHONPATH": str(REPO), **env}
    command = [sys.executable, "-m", "vggish", "serve", "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=REPO, env=environ, stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(READY_POLLS):
                assert proc.poll() is None, f"vggish serve exited with {proc.returncode}"
                with suppress(httpx.TransportError):
                    if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise AssertionError("vggish serve never became ready")
            yield Server(base, proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No keys; a burst of 2 s ahead of real time."""
    data = str(tmp_path_factory.mktemp("open"))
    with vggish_serve(VGGISH_DATA_DIR=data, VGGISH_STREAM_BURST_SECONDS="2") as server:
        yield server


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Keys, and messages of 1 MiB at most."""
    data = str(tmp_path_factory.mktemp("keyed"))
    with vggish_serve(
        VGGISH_DATA_DIR=data, VGGISH_API_KEYS=KEY, VGGISH_STREAM_MAX_MESSAGE_BYTES=str(MESSAGE_LIMIT)
    ) as server:
        yield server


# --- helpers --------------------------------------------------------------------------------


def ws_url(server: Server) -> str:
    return server.base.replace("http://", "ws://") + "/v1/stream"


def start(rate: int = 16000, fmt: str = "f32le", **extra: Any) -> str:
    return json.dumps({"sample_rate": rate, "format": fmt, **extra})


def answer(server: Server, *sends: str | bytes, **kwargs: Any) -> tuple[list[dict[str, Any]], int | None]:
    """Sends messages (ignoring a refusal while sending); the server's messages and close code."""
    with connect(ws_url(server), max_size=None, **kwargs) as ws:
        with suppress(ConnectionClosed):
            for message in sends:
                ws.send(message)
        received = []
        with suppress(ConnectionClosed):
            while True:
                received.append(json.loads(ws.recv(timeout=120)))
    return received, ws.close_code


def refused(server: Server, *sends: str | bytes, **kwargs: Any) -> tuple[dict[str, Any], int | None]:
    """The one error message a refused stream gets (after ``ready`` or not), and its close code."""
    received, code = answer(server, *sends, **kwargs)
    assert [m["type"] for m in received] in (["error"], ["ready", "error"]), received
    return received[-1], code


@contextmanager
def peak_growth(server: Server) -> Iterator[list[int]]:
    """The server's peak resident memory above what it held before the block (bytes), in [0]."""
    reset_peak(server.proc.pid)
    before = proc_status(server.proc.pid, "VmRSS")
    growth = [0]
    yield growth
    growth[0] = proc_status(server.proc.pid, "VmHWM") - before


def assert_healthy(server: Server) -> None:
    """The server answers ``/healthz`` and still embeds."""
    assert httpx.get(server.base + "/healthz", timeout=60).status_code == 200
    headers = {"content-type": "audio/wav", "authorization": f"Bearer {KEY}"}
    r = httpx.post(server.base + "/v1/embeddings", content=clip(1.0), headers=headers, timeout=600)
    assert r.status_code == 200, r.text


def raw_frame_header(length: int) -> bytes:
    """A client's binary frame header announcing ``length`` payload bytes (masked, as clients must)."""
    return bytes([0x82, 0x80 | 127]) + struct.pack(">Q", length) + b"\0\0\0\0"


def raw_stream(server: Server, extra_headers: str = "") -> socket.socket:
    """A socket past the WebSocket handshake of ``/v1/stream``."""
    port = int(server.base.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.sendall(
        (
            f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 101"), response[:200]
    return sock


def close_code_of(sock: socket.socket) -> int:
    """The code of the close frame the server sends (skipping the messages before it)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        assert chunk, "closed without a close frame"
        data += chunk
        while len(data) >= 2:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            head = 2 if length < 126 else 4
            if length >= 126:
                length = struct.unpack(">H", data[2:4])[0]
            if len(data) < head + length:
                break
            if opcode == 0x8:
                code: int = struct.unpack(">H", data[head : head + 2])[0]
                return code
            data = data[head + length :]


# --- the first message and the samples --------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        "[" * 200_000,  # a RecursionError in the JSON parser, before
        '{"sample_rate": ' + "[" * 5000 + "]" * 5000 + ', "format": "f32le"}',
        '{"a": ' * 3000 + "1" + "}" * 3000,
    ],
)
def test_a_deeply_nested_first_message_is_refused_with_4422(open_server: Server, first: str) -> None:
    with peak_growth(open_server) as growth:
        error, code = refused(open_server, first)
    assert (error["status"], code) == (422, 4422), error
    assert "first message must be a JSON object" in error["detail"] and "Traceback" not in json.dumps(error)
    assert growth[0] <= BUDGET, f"peak +{growth[0] / MIB:.0f} MiB"
    assert_healthy(open_server)


def test_a_deeply_nested_first_message_without_a_key_is_refused_with_4401(keyed: Server) -> None:
    error, code = refused(keyed, "[" * 200_000)
    assert (error["status"], code) == (401, 4401), error


@pytest.mark.parametrize("value", [1e30, -3.0, 2.5, np.finfo(np.float32).max])
def test_float_samples_out_of_range_are_refused_as_json_samples_are(
    open_server: Server, value: float
) -> None:
    samples = np.full(1600, 0.1, "<f4")
    samples[800] = value
    error, code = refused(open_server, start(), samples.tobytes())
    assert (error["status"], code) == (422, 4422), error
    assert "full scale is 1" in error["detail"] and "at most 2" in error["detail"], error["detail"]
    nan = np.full(1600, np.nan, "<f4").tobytes()
    error, code = refused(open_server, start(), nan)  # non-finite ones, as before
    assert (error["status"], code) == (422, 4422) and "NaN" in error["detail"]
    assert_healthy(open_server)


def test_float_samples_up_to_twice_full_scale_are_taken(open_server: Server) -> None:
    samples = np.clip(2.0 * signal_of(1.0, 16000)[:, 0] / 0.36, -2.0, 2.0).astype("<f4")
    received, code = answer(open_server, start(), samples.tobytes(), json.dumps({"type": "end"}))
    assert [m["type"] for m in received] == ["ready", "embedding", "end"] and code == 1000


# --- message size and keys: refused as they arrive ---------------------------------------------


def test_a_message_over_the_limit_is_refused_at_its_header_with_1009(keyed: Server) -> None:
    sock = raw_stream(keyed, f"Authorization: Bearer {KEY}\r\n")
    with sock:
        sock.sendall(raw_frame_header(16 * MIB) + bytes(65536))  # the rest never comes
        assert close_code_of(sock) == 1009  # "message too big", before the payload is held
    assert_healthy(keyed)


def test_many_unauthenticated_connections_hold_at_most_one_message_each(keyed: Server) -> None:
    """20 connections send 16 MiB messages (refused at their header), then 20 send messages of
    the limit without a key (4401): the server holds no more than one limit each, at most."""
    go = threading.Barrier(CONNECTIONS)

    def huge(_: int) -> None:
        with suppress(OSError), raw_stream(keyed) as sock:
            go.wait(timeout=120)
            sock.sendall(raw_frame_header(16 * MIB) + bytes(16 * MIB))
            close_code_of(sock)

    def at_the_limit(_: int) -> tuple[dict[str, Any], int | None]:
        go.wait(timeout=120)
        return refused(keyed, bytes(MESSAGE_LIMIT - 64))

    with peak_growth(keyed) as huge_growth, ThreadPoolExecutor(CONNECTIONS) as pool:
        list(pool.map(huge, range(CONNECTIONS)))
    assert huge_growth[0] <= BUDGET, f"peak +{huge_growth[0] / MIB:.0f} MiB for 20 messages of 16 MiB"
    with peak_growth(keyed) as growth, ThreadPoolExecutor(CONNECTIONS) as pool:
        refusals = list(pool.map(at_the_limit, range(CONNECTIONS)))
    assert {(e["status"], code) for e, code in refusals} == {(401, 4401)}
    assert growth[0] <= CONNECTIONS * MESSAGE_LIMIT + BUDGET, f"peak +{growth[0] / MIB:.0f} MiB"
    assert_healthy(keyed)


def test_a_wrong_key_on_the_handshake_is_refused_before_any_message_is_read(keyed: Server) -> None:
    with connect(ws_url(keyed), additional_headers={"Authorization": "Bearer wrong"}) as ws:
        error = json.loads(ws.recv(timeout=120))  # nothing was sent: the key alone decides
        with suppress(ConnectionClosed):
            ws.recv(timeout=120)
    assert (error["status"], ws.close_code) == (401, 4401)


# --- a stream faster than real time ------------------------------------------------------------


def test_a_stream_faster_than_real_time_is_slowed_not_cut(open_server: Server) -> None:
    """8 s of audio sent at once, 2 s of burst: the server reads it at real-time speed (no
    sooner than 6 s), every embedding comes and the stream ends normally; an HTTP client is
    answered meanwhile."""
    seconds, burst = 8.0, 2.0
    x = signal_of(seconds, 16000)[:, 0].astype("<f4")
    with connect(ws_url(open_server), max_size=None) as ws:
        ws.send(start())
        assert json.loads(ws.recv(timeout=120))["type"] == "ready"
        sent = time.monotonic()
        for k in range(int(seconds)):
            ws.send(x[k * 16000 : (k + 1) * 16000].tobytes())
        wav = {"content-type": "audio/wav"}
        http = httpx.post(open_server.base + "/v1/embeddings", content=clip(2.0), headers=wav, timeout=600)
        ws.send(json.dumps({"type": "end"}))
        messages = []
        while not messages or messages[-1]["type"] != "end":
            messages.append(json.loads(ws.recv(timeout=120)))
        took = time.monotonic() - sent
        with suppress(ConnectionClosed):
            ws.recv(timeout=120)
    assert http.status_code == 200
    assert messages[-1]["examples"] == len(messages) - 1 == num_examples(int(seconds * 16000), 0.96)
    assert ws.close_code == 1000
    assert took >= seconds - burst - 1.0  # a lower bound: a sleep is never shorter (1 s: the last piece)
    assert_healthy(open_server)


# --- shutdown: open streams drain --------------------------------------------------------------


def test_sigterm_drains_open_streams_then_closes_them_with_1012(tmp_path: Any) -> None:
    """What a stream sent before the shutdown is flushed and embedded; then an end message that
    says so and close 1012. A stream still in its handshake is refused (4503); the server ends."""
    seconds = 5.0
    x = signal_of(seconds, 16000)[:, 0].astype("<f4")
    with vggish_serve(VGGISH_DATA_DIR=str(tmp_path)) as server:
        with connect(ws_url(server), max_size=None) as ws, connect(ws_url(server)) as waiting:
            ws.send(start())
            assert json.loads(ws.recv(timeout=120))["type"] == "ready"
            ws.send(x.tobytes())  # one message: read whole once its first embedding is out
            messages = [json.loads(ws.recv(timeout=120))]
            assert messages[0]["type"] == "embedding"
            server.proc.send_signal(signal.SIGTERM)
            with suppress(ConnectionClosed):
                while True:
                    messages.append(json.loads(ws.recv(timeout=120)))
            with suppress(ConnectionClosed):
                refusal = json.loads(waiting.recv(timeout=120))
        # uvicorn raises the signal again once shut down: the default action ends the process
        assert server.proc.wait(timeout=120) in (0, -signal.SIGTERM)
    end = messages[-1]
    assert [m["type"] for m in messages[:-1]] == ["embedding"] * num_examples(int(seconds * 16000), 0.96)
    assert end["type"] == "end" and end["seconds"] == seconds and "shutting down" in end["detail"]
    assert ws.close_code == 1012
    assert (refusal["status"], waiting.close_code) == (503, 4503)
