"""Service throughput vs the offline library, side by side in one run.

A real ``uvicorn app.main:app`` process on 127.0.0.1 (random weights: speed needs no trained
weights) receives 10 s clips (44.1 kHz stereo 16-bit WAV) from 1, 4 and 16 concurrent clients;
the offline figure is ``model.embed_file`` on the same clips, one after another, in this process.
Also printed: the latency of one 10 s clip sent to an idle server.

Usage: ``python benchmarks/bench_service.py [--clips 16] [--seconds 10] [--clients 1 4 16]``
(``pip install -e '.[serve]'`` first).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parent.parent
RATE = 44_100


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


def offline_seconds(clips: list[bytes], device: str) -> float:
    """Wall time of the library embedding every clip in turn (after one warm-up clip)."""
    import vggish

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vggish.load_model("random", device=device)
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
    """``uvicorn app.main:app`` on a free loopback port; yields its URL once ready."""
    port = _free_port()
    env = {**os.environ, "VGGISH_WEIGHTS": "random", "VGGISH_LOG_LEVEL": "warning", **extra_env}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(proc, url)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=120)


def _wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    for _ in range(1200):
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready in 120 s")


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=16, help="clips per measurement (default 16)")
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length (default 10 s)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-batch", default="64", help="VGGISH_MAX_BATCH_EXAMPLES for the server")
    parser.add_argument("--device", default="cpu", help="torch device for both (default cpu)")
    args = parser.parse_args()
    clips = make_clips(args.clips, args.seconds)
    audio = args.clips * args.seconds
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"{args.clips} clips of {args.seconds:g} s (44.1 kHz stereo WAV), random weights, {args.device}\n")
    offline = offline_seconds(clips, args.device)
    rows = [("offline library (embed_file)", "-", offline)]
    with server({"VGGISH_MAX_BATCH_EXAMPLES": args.max_batch, "VGGISH_DEVICE": args.device}) as url:
        served_seconds(url, clips[:2], 2)  # warm the decode threads and the model
        latency = idle_latency(url, clips[0])
        rows += [(f"service, {c} client(s)", str(c), served_seconds(url, clips, c)) for c in args.clients]
    print(f"{'':32} {'wall s':>8} {'audio s/s':>10} {'vs offline':>11}")
    for label, _, seconds in rows:
        print(f"{label:32} {seconds:8.2f} {audio / seconds:10.1f} {offline / seconds:10.0%}")
    print(f"\nidle latency, one {args.seconds:g} s clip: {latency * 1000:.0f} ms")


if __name__ == "__main__":
    main()
