"""Service throughput vs the offline library, and cold start, side by side in one run.

A real ``vggish serve`` process (uvicorn) on 127.0.0.1 with random weights saved to a file (speed
needs no trained weights) receives 10 s clips (44.1 kHz stereo 16-bit WAV) from 1, 4 and 16 concurrent
clients, one measurement each after a warm-up; the offline figure is ``model.embed_file`` on the
same clips, one after another, in this process, with the same backend. Also reported: the latency
of one 10 s clip sent to an idle server (median of 3), and the cold start per backend, from the
process's start to the first ``GET /readyz`` 200, with that weights file and the warm-up
included. Each backend is started once untimed first, which fills the OS's file cache, so the
timed starts are those of a server whose files are cached; the median of ``--cold-starts`` is
reported.

Usage: ``python benchmarks/bench_service.py [--clips 16] [--seconds 10] [--clients 1 4 16]
[--cold-starts 3]`` (``pip install -e '.[serve]'`` first; ``.[onnx]`` for the onnx backend).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import soundfile as sf
from _common import (
    Row,
    load_bench_model,
    log,
    machine_line,
    markdown_table,
    missing_row,
    onnx_available,
    weights_file,
)

SECTION = "service"
REPO = Path(__file__).resolve().parent.parent
RATE = 44_100
READY_TIMEOUT_S = 180.0  # a first onnx start exports the graph (~10-25 s on 2 cores)
READY_POLL_S = 0.05


def make_clips(count: int, seconds: float) -> list[bytes]:
    """Stereo chirp + noise clips as 16-bit WAV bytes, each different."""
    clips = []
    t = np.arange(int(seconds * RATE)) / RATE
    for seed in range(count):
        rng = np.random.default_rng(seed)
        tone = 0.3 * np.sin(2 * np.pi * (300 + 20 * seed + 30 * t) * t)
        stereo = np.stack([tone + 0.05 * rng.standard_normal(t.size) for _ in range(2)], axis=1)
        buffer = io.BytesIO()
        sf.write(buffer, stereo, RATE, format="WAV", subtype="PCM_16")
        clips.append(buffer.getvalue())
    return clips


def offline_seconds(clips: list[bytes], device: str, backend: str) -> float:
    """Wall time of the library embedding every clip in turn (after one warm-up clip)."""
    model = load_bench_model(device=device, backend=backend)
    model.embed_file(clips[0])
    started = time.perf_counter()
    for data in clips:
        model.embed_file(data)
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def server(extra_env: dict[str, str]) -> Iterator[str]:
    """``vggish serve`` on a free loopback port; yields its URL once ``/readyz`` says 200."""
    port = _free_port()
    env = {**os.environ, "VGGISH_WEIGHTS": str(weights_file()), "VGGISH_LOG_LEVEL": "warning", **extra_env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "vggish", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(proc, url, output)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=120)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, output: IO[bytes]) -> None:
    """Polls ``/readyz`` until 200; on exit or timeout raises with the server's last output."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}: {_tail(output)}")
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(READY_POLL_S)
    raise RuntimeError(f"the server was not ready in {READY_TIMEOUT_S:g} s: {_tail(output)}")


def _tail(output: IO[bytes], chars: int = 2000) -> str:
    """The end of the server's captured output, for an error message."""
    output.seek(0)
    return output.read().decode(errors="replace")[-chars:].strip()


def _post(http: httpx.Client, data: bytes) -> None:
    r = http.post("/v1/embeddings", content=data, headers={"content-type": "audio/wav"})
    r.raise_for_status()


def served_seconds(url: str, clips: list[bytes], clients: int) -> float:
    """Wall time for ``clients`` concurrent clients to embed all clips (each client takes the next)."""
    queue = list(enumerate(clips))

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            while queue:
                try:
                    _, data = queue.pop()
                except IndexError:
                    return
                _post(http, data)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    return time.perf_counter() - started


def idle_latency(url: str, data: bytes, repeats: int = 3) -> float:
    """Median seconds to answer one clip sent to an idle server."""
    times = []
    with httpx.Client(base_url=url, timeout=600) as http:
        for _ in range(repeats):
            started = time.perf_counter()
            _post(http, data)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def throughput_rows(
    clips: int, seconds: float, clients: Sequence[int], env: dict[str, str], device: str, backend: str
) -> list[Row]:
    """Offline vs served audio seconds per second, and the idle latency of one clip."""
    data = make_clips(clips, seconds)
    audio = clips * seconds
    log(f"service: offline, {clips} clips of {seconds:g} s")
    offline = offline_seconds(data, device, backend)
    what = f"{clips} x {seconds:g} s clips, backend {backend}"
    rows = [
        Row(
            SECTION,
            "offline library (embed_file, in turn)",
            audio / offline,
            "audio s/s",
            f"{offline:.2f} s wall; {what}",
            ratio=1.0,
        )
    ]
    with server({**env, "VGGISH_DEVICE": device, "VGGISH_BACKEND": backend}) as url:
        served_seconds(url, data[:2], 2)  # warm the decode threads and the model
        latency = idle_latency(url, data[0])
        for c in clients:
            log(f"service: {c} concurrent client(s)")
            wall = served_seconds(url, data, c)
            note = f"{wall:.2f} s wall; {what}"
            row = Row(SECTION, f"served, {c} client(s)", audio / wall, "audio s/s", note)
            rows.append(replace(row, ratio=offline / wall))
    note = f"one {seconds:g} s clip to an idle server, median of 3"
    rows.append(Row(SECTION, "idle latency", latency * 1000, "ms", note))
    return rows


def start_seconds(env: dict[str, str]) -> float:
    """Seconds from starting a server process to its first ``/readyz`` 200."""
    started = time.perf_counter()
    with server(env):
        return time.perf_counter() - started


def cold_start_rows(backends: Sequence[str], starts: int) -> list[Row]:
    """Median cold start per backend, after one untimed start that fills the OS's file cache."""
    rows = []
    for backend in backends:
        if backend == "onnx" and not onnx_available():
            rows.append(missing_row(SECTION, "cold start, backend onnx", "onnxruntime"))
            continue
        log(f"service: cold start, backend {backend} (1 untimed + {starts} timed)")
        env = {"VGGISH_BACKEND": backend}
        start_seconds(env)
        times = [start_seconds(env) for _ in range(starts)]
        note = f"process start -> /readyz 200, weights file, warm-up included, median of {starts}"
        rows.append(Row(SECTION, f"cold start, backend {backend}", statistics.median(times), "s", note))
    return rows


def run(
    clips: int = 16,
    seconds: float = 10.0,
    clients: Sequence[int] = (1, 4, 16),
    max_batch: str = "64",
    device: str = "cpu",
    backend: str = "auto",
    cold_starts: int = 3,
    cold_backends: Sequence[str] = ("torch", "onnx"),
) -> list[Row]:
    """Throughput rows with ``backend``, then cold start rows for each of ``cold_backends``."""
    env = {"VGGISH_MAX_BATCH_EXAMPLES": max_batch}
    rows = throughput_rows(clips, seconds, clients, env, device, backend)
    if cold_starts > 0:
        rows += cold_start_rows(cold_backends, cold_starts)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=16, help="clips per measurement (default 16)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10 s)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-batch", default="64", help="VGGISH_MAX_BATCH_EXAMPLES for the server")
    parser.add_argument("--device", default="cpu", help="torch device for both (default cpu)")
    parser.add_argument(
        "--backend", choices=("auto", "torch", "onnx"), default="auto", help="for throughput (default: auto)"
    )
    parser.add_argument("--cold-starts", type=int, default=3, help="timed starts per backend; 0: none")
    args = parser.parse_args()
    rows = run(
        args.clips, args.seconds, args.clients, args.max_batch, args.device, args.backend, args.cold_starts
    )
    print(f"# service: {args.clips} clips of {args.seconds:g} s (44.1 kHz stereo WAV), random weights")
    print(f"# {machine_line()}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
