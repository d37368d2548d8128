"""Service test helpers: audio made with soundfile, apps on random weights, a real uvicorn server."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import soundfile as sf
from fastapi.testclient import TestClient

from vggish_app.config import Settings
from vggish_app.main import create_app

REPO = Path(__file__).resolve().parents[2]
READY_POLLS = 600  # x 0.1 s: loading the random model and warming up


def signal_of(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A chirp plus noise, (samples, channels) float64 in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)
    return np.stack([tone + 0.05 * rng.standard_normal(t.size) for _ in range(channels)], axis=1)


def encode(x: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    """The bytes of an audio file holding ``x`` (written by soundfile)."""
    buffer = io.BytesIO()
    sf.write(buffer, x, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def clip(
    seconds: float = 2.0, rate: int = 16000, channels: int = 1, fmt: str = "WAV", seed: int = 0
) -> bytes:
    """An encoded test clip (16-bit WAV, or FLAC with ``fmt="FLAC"``)."""
    return encode(signal_of(seconds, rate, channels, seed), rate, fmt)


def wait_ready(get: Any) -> None:
    """Polls ``/readyz`` until 200 (bounded)."""
    for _ in range(READY_POLLS):
        if get("/readyz").status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError("the service never became ready")


@contextmanager
def running_app(**overrides: Any) -> Iterator[TestClient]:
    """A TestClient on a fresh app with random weights (lifespan run), ready."""
    settings = Settings(weights="random", **overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        client = TestClient(create_app(settings), raise_server_exceptions=False)
    with client:
        wait_ready(client.get)
        yield client


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if _normalise(key) == wanted:
            return float(value)
    return 0.0


def _normalise(key: str) -> str:
    if "{" not in key:
        return key
    name, _, rest = key.partition("{")
    pairs = sorted(p for p in rest.rstrip("}").split(",") if p)
    return name + "{" + ",".join(pairs) + "}"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """Checks a problem+json answer and returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:vggish:problem:")
    assert body["title"] and body["detail"]
    return body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    """A uvicorn process and its base URL."""

    base: str
    proc: subprocess.Popen[bytes]


@contextmanager
def uvicorn_server(**env: str) -> Iterator[Server]:
    """``uvicorn app.main:app`` in a subprocess on a free loopback port, ready."""
    port = free_port()
    environ = {**os.environ, "VGGISH_WEIGHTS": "random", "PYTHONPATH": str(REPO), **env}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=REPO, env=environ, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_server(proc, base, log)
            yield Server(base, proc)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def proc_status(pid: int, field: str) -> int:
    """A memory figure of a process from ``/proc/PID/status`` (``VmRSS``, ``VmHWM``...), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) * 1024
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    """Resets the process's peak resident memory (``VmHWM``) to its current one (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _wait_server(proc: subprocess.Popen[bytes], base: str, log: IO[bytes]) -> None:
    for _ in range(READY_POLLS):
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"uvicorn exited with {proc.returncode}: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("uvicorn never became ready")
