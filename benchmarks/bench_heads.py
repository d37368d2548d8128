"""Head trainings in a real server: how fast store reads answer while many trainings run, what a
training costs, and how soon a training stops once its client leaves; side by side for two
checkouts when ``--compare`` names another one.

A ``uvicorn app.main:app`` process (random weights, a fresh data directory) receives
``--trainings`` JSON trainings at once (``--rows`` clip embeddings in ``--classes`` classes each)
while one client reads ``GET /v1/heads`` every 50 ms (one read at a time); reported: the read
latency (median and worst) while the trainings run, and the wall time until every training
answered. Then one long training is sent on a raw connection, closed once the server's
``vggish_head_training_steps_total`` starts to grow, and the time until
``vggish_head_trainings_running`` is 0 is reported (a checkout without those metrics says so). In
a process of its own per checkout, taking turns (``--repeats`` rounds, the best of each): seconds
of one training of ``--rows`` x ``--classes`` and of a small one (40 clips x 4 classes), as the
service trains (NumPy's BLAS on one thread); the cost grows with rows x classes.

Usage: ``python benchmarks/bench_heads.py [--trainings 40] [--rows 400] [--classes 20]
[--compare /path/to/other/checkout]`` (``pip install -e '.[serve]'`` first).
"""

from __future__ import annotations

import argparse
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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from _common import Row, log, machine_line, markdown_table

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 600.0
READ_EVERY_S = 0.05  # the reading client's pace (back to back, it would take CPU from the server)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def server(repo: Path, data_dir: Path, extra: dict[str, str]) -> Iterator[str]:
    """``uvicorn app.main:app`` of the checkout ``repo`` on a free loopback port, once ready."""
    port = _free_port()
    env = {
        **os.environ,
        "VGGISH_WEIGHTS": "random",
        "VGGISH_BACKEND": "torch",
        "VGGISH_LOG_LEVEL": "warning",
        "VGGISH_DATA_DIR": str(data_dir),
        "PYTHONPATH": str(repo),
        **extra,
    }
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(command, cwd=repo, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    output.seek(0)
                    raise RuntimeError(f"the server exited: {output.read().decode()[-2000:]}")
                try:
                    if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            yield url
        finally:
            proc.kill()
            proc.wait()


def training(name: str, rows: int, classes: int, seed: int) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, 128))
    return {
        "name": name,
        "embeddings": np.round(x, 3).tolist(),
        "labels": [f"c{i % classes}" for i in range(rows)],
    }


def reads_during_trainings(url: str, trainings: int, rows: int, classes: int) -> tuple[list[float], float]:
    """Latencies of back-to-back ``GET /v1/heads`` while ``trainings`` trainings run, and the
    seconds until all of them answered."""
    bodies = [training(f"h{k}", rows, classes, k) for k in range(trainings)]
    done = threading.Event()
    latencies: list[float] = []

    def reader() -> None:
        with httpx.Client(base_url=url, timeout=STOP_TIMEOUT_S) as http:
            while not done.wait(READ_EVERY_S):
                started = time.perf_counter()
                http.get("/v1/heads").raise_for_status()
                latencies.append(time.perf_counter() - started)

    def train(body: dict[str, object]) -> None:
        with httpx.Client(base_url=url, timeout=STOP_TIMEOUT_S) as http:
            http.post("/v1/heads", json=body).raise_for_status()

    read_thread = threading.Thread(target=reader)
    started = time.perf_counter()
    with ThreadPoolExecutor(trainings) as pool:
        futures = [pool.submit(train, b) for b in bodies]
        time.sleep(0.5)  # the trainings are under way before the reads are measured
        read_thread.start()
        for f in futures:
            f.result()
    wall = time.perf_counter() - started
    done.set()
    read_thread.join()
    return latencies, wall


def stop_after_disconnect(url: str, rows: int, classes: int) -> float | str:
    """Seconds from closing a long training's connection until no training runs."""
    body = json.dumps(training("long", rows, classes, 99)).encode()
    with httpx.Client(base_url=url, timeout=60) as http:
        if "vggish_head_training_steps_total" not in http.get("/metrics").text:
            return "no training metrics in this checkout"
        host, port = url.removeprefix("http://").split(":")
        sock = socket.create_connection((host, int(port)))
        head = (
            f"POST /v1/heads HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        while _metric(http.get("/metrics").text, "vggish_head_training_steps_total") == 0:
            time.sleep(0.05)
        closed = time.perf_counter()
        sock.close()
        while _metric(http.get("/metrics").text, "vggish_head_trainings_running") > 0:
            if time.perf_counter() - closed > STOP_TIMEOUT_S:
                return f"still running after {STOP_TIMEOUT_S:g} s"
            time.sleep(0.02)
        return time.perf_counter() - closed


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


ONE_TRAINING = """
import sys, time
import numpy as np
from vggish import heads
from vggish.network.cpus import limit_blas_threads

limit_blas_threads(1)  # as in the service
rows, classes = int(sys.argv[1]), int(sys.argv[2])
x = np.round(np.random.default_rng(0).standard_normal((rows, 128)), 3).astype(np.float32)
labels = [f"c{i % classes}" for i in range(rows)]
heads.train(x[: 2 * classes], labels[: 2 * classes])  # imports and first calls, not measured
started = time.perf_counter()
heads.train(x, labels)
print(time.perf_counter() - started)
"""


def one_training_seconds(repo: Path, rows: int, classes: int) -> float:
    """Seconds of one training in a fresh process of the checkout ``repo``."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run(
        [sys.executable, "-c", ONE_TRAINING, str(rows), str(classes)],
        cwd=repo, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout.split()[-1])


def training_rows(repos: dict[str, Path], args: argparse.Namespace) -> list[Row]:
    """One training's seconds per checkout and size, the checkouts taking turns."""
    rows = []
    for size in ((40, 4), (args.rows, args.classes)):
        best: dict[str, float] = {}
        for _ in range(args.repeats):
            for label, repo in repos.items():
                log(f"{label}: one training of {size[0]} x {size[1]}")
                seconds = one_training_seconds(repo, *size)
                best[label] = min(best.get(label, seconds), seconds)
        first = next(iter(best.values()))
        for label, seconds in best.items():
            note = f"{size[0]} rows x {size[1]} classes, 500 Adam steps x (1 + folds); {seconds / first:.2f}x"
            rows.append(Row("heads", f"one training ({label})", seconds, "s", note))
    return rows


def rows_for(label: str, repo: Path, args: argparse.Namespace) -> list[Row]:
    section = f"heads ({label})"
    with tempfile.TemporaryDirectory() as data, server(repo, Path(data), {}) as url:
        log(f"{label}: {args.trainings} trainings of {args.rows} x {args.classes} with reads")
        latencies, wall = reads_during_trainings(url, args.trainings, args.rows, args.classes)
        log(f"{label}: a long training, its client leaving")
        stopped = stop_after_disconnect(url, args.long_rows, args.long_classes)
    note = f"{len(latencies)} reads during {args.trainings} trainings"
    return [
        Row(section, "GET /v1/heads during trainings, median", statistics.median(latencies), "s", note),
        Row(section, "GET /v1/heads during trainings, worst", max(latencies), "s", note),
        Row(
            section,
            f"{args.trainings} trainings answered",
            wall,
            "s",
            f"{args.rows} rows x {args.classes} classes each",
        ),
        Row(
            section,
            "training stops after its client left",
            stopped,
            "s" if isinstance(stopped, float) else "",
            f"{args.long_rows} x {args.long_classes}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trainings", type=int, default=40, help="concurrent trainings (default 40)")
    parser.add_argument("--rows", type=int, default=400, help="clips per training (default 400)")
    parser.add_argument("--classes", type=int, default=20, help="classes per training (default 20)")
    parser.add_argument("--long-rows", type=int, default=3000, help="clips of the abandoned training")
    parser.add_argument("--long-classes", type=int, default=100, help="classes of the abandoned training")
    parser.add_argument("--compare", type=Path, help="another checkout to measure the same way")
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the one-training timings")
    parser.add_argument("--trainings-only", action="store_true", help="only the one-training timings")
    args = parser.parse_args()
    repos = {"this checkout": REPO, **({str(args.compare): args.compare} if args.compare else {})}
    rows = training_rows(repos, args)
    if args.trainings_only:
        print(f"# heads: one training, random embeddings\n# {machine_line()}\n")
        print(markdown_table(rows))
        return
    rows += rows_for("this checkout", REPO, args)
    if args.compare:
        rows += rows_for(str(args.compare), args.compare, args)
    print(f"# heads: trainings under load, random weights\n# {machine_line()}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
