"""What full-speed live streams cost the HTTP clients of the same server: their latency.

A fresh ``uvicorn app.main:app`` (random weights, default settings) on loopback serves ``--clients``
HTTP clients, each sending a ``--clip``-second clip (16 kHz WAV) again and again to
``POST /v1/embeddings``, for ``--seconds`` per case, while 0, 1 and 3 WebSocket streams send 48 kHz
f32le PCM at hop 0.1 s as fast as the server reads it (each reads its embeddings too; a stream the
server closes is opened again). Reported per case: the HTTP clients' median and p95 latency, their
ratios to the clients alone, their failures (504...), and the audio seconds the streams got through
per wall second (1 is real time). The server takes its settings from the environment
(``VGGISH_STREAM_BURST_SECONDS=2 python benchmarks/attack_fairness.py``).

Pass ``--tree`` (repeatable) to measure other checkouts in the same run, one after another (e.g. an
older commit exported with ``git archive``), so that the ratios compare side by side::

    mkdir /tmp/before && git archive main | tar -x -C /tmp/before
    python benchmarks/attack_fairness.py --tree /tmp/before --tree .
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
from _common import machine_line
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
STREAM_RATE = 48_000
STREAM_HOP = 0.1
MESSAGE_SECONDS = 1.0


def clip(seconds: float) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    sf.write(buffer, 0.1 * rng.standard_normal(int(seconds * 16000)), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def server(tree: Path) -> Iterator[str]:
    """``uvicorn app.main:app`` of ``tree`` on a free port; its URL once ready."""
    port = _free_port()
    env = {**os.environ, "VGGISH_WEIGHTS": "random", "VGGISH_LOG_LEVEL": "warning", "PYTHONPATH": str(tree)}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(1200):
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the server exited: {log.read().decode()[-2000:]}")
                with suppress(httpx.TransportError):
                    if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                        break
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Streams:
    """``count`` full-speed streams until ``stop`` is set; the audio seconds they got through."""

    base: str
    count: int
    stop: threading.Event = field(default_factory=threading.Event)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Streams:
        for _ in range(self.count):
            self.threads.append(threading.Thread(target=self._run, daemon=True))
            self.threads[-1].start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _run(self) -> None:
        pcm = (0.1 * np.random.default_rng(1).standard_normal(int(STREAM_RATE * MESSAGE_SECONDS))).astype(
            "<f4"
        )
        message = pcm.tobytes()
        start = json.dumps({"sample_rate": STREAM_RATE, "format": "f32le", "hop": STREAM_HOP})
        while not self.stop.is_set():  # a stream the server ends (e.g. at max_input_seconds) starts again
            with (
                suppress(ConnectionClosed, OSError),
                connect(self.base.replace("http", "ws") + "/v1/stream", ping_interval=None) as ws,
            ):
                ws.send(start)
                json.loads(ws.recv())
                reader = threading.Thread(target=self._read, args=(ws,), daemon=True)
                reader.start()
                while not self.stop.is_set():
                    ws.send(message)
                ws.send(json.dumps({"type": "end"}))
                reader.join(timeout=120)

    def _read(self, ws: object) -> None:
        with suppress(ConnectionClosed, OSError):
            for text in ws:  # type: ignore[attr-defined]
                if '"embedding"' in text[:30]:
                    with self.lock:
                        self.seconds += STREAM_HOP


def http_latencies(base: str, data: bytes, clients: int, seconds: float) -> tuple[list[float], int]:
    """Each client posts ``data`` in a loop for ``seconds``; every answer's latency, and failures."""
    latencies: list[float] = []
    failures = [0]
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=base, timeout=600) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                status = http.post(
                    "/v1/embeddings", content=data, headers={"content-type": "audio/wav"}
                ).status_code
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures[0]


def batches(base: str) -> tuple[float, float]:
    """Model calls so far, and the examples they held, from ``/metrics``."""
    found = {"vggish_batch_examples_count": 0.0, "vggish_batch_examples_sum": 0.0}
    for line in httpx.get(base + "/metrics", timeout=60).text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found["vggish_batch_examples_count"], found["vggish_batch_examples_sum"]


def measure(tree: Path, args: argparse.Namespace) -> list[str]:
    data = clip(args.clip)
    rows = []
    with server(tree) as base:
        http_latencies(base, data, args.clients, 3.0)  # warm the decode threads and the model
        alone: tuple[float, float] | None = None
        for count in args.streams:
            with Streams(base, count) as streams:
                time.sleep(2.0 if count else 0.0)
                before, started, calls = streams.seconds, time.monotonic(), batches(base)
                latencies, failures = http_latencies(base, data, args.clients, args.seconds)
                speed = (streams.seconds - before) / (time.monotonic() - started)
                after = batches(base)
                batch = (after[1] - calls[1]) / max(after[0] - calls[0], 1)
            if not latencies:
                rows.append(f"| {tree} | {count} | - | - | - | {failures} | {speed:.1f} | {batch:.0f} |")
                continue
            median = statistics.median(latencies)
            p95 = float(np.percentile(latencies, 95))
            alone = alone or (median, p95)
            ratio = f"{median / alone[0]:.1f}x / {p95 / alone[1]:.1f}x"
            stream_speed = f"{speed / count:.1f}" if count else "-"
            rows.append(
                f"| {tree} | {count} | {median:.2f} | {p95:.2f} | {ratio} | "
                f"{failures} / {len(latencies) + failures} | {stream_speed} | {batch:.0f} |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tree", type=Path, action="append", help="checkouts to measure (default: this one)")
    parser.add_argument("--clients", type=int, default=4, help="HTTP clients (default 4)")
    parser.add_argument("--clip", type=float, default=2.0, help="seconds of each HTTP clip (default 2)")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="seconds of HTTP load per case (default 30)"
    )
    parser.add_argument("--streams", type=int, nargs="+", default=[0, 1, 3], help="cases (default 0 1 3)")
    args = parser.parse_args()
    header = [
        "| tree | streams | HTTP median s | HTTP p95 s | vs alone (median / p95) | HTTP failures | "
        "stream audio s per s (each) | examples per model call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for tree in args.tree or [ROOT]:
        rows += measure(tree.resolve(), args)
    what = f"{STREAM_RATE} Hz f32le, hop {STREAM_HOP}"
    print(f"\n# {args.clients} HTTP clients ({args.clip:g} s clips) beside full-speed streams ({what})")
    print(f"# {machine_line()}\n")
    print("\n".join(header + rows))


if __name__ == "__main__":
    main()
