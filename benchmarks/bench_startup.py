"""Start-up as a new user meets it: printing the version and the help, a first ``vggish serve``
with an empty cache until ``/readyz`` answers 200, its resident memory after serving a 10 s clip,
and a first ``vggish embed`` of a 10 s file, side by side for one or more checkouts' Pythons.

Every case runs in a fresh process with a fresh, empty cache folder and data folder, random
weights (no download), and the checkouts take turns per repeat, so their ratios hold on a busy
machine. The clip is 10 s of 44.1 kHz stereo noise.

Usage::

    python benchmarks/bench_startup.py                       # this checkout's Python
    python benchmarks/bench_startup.py --python before=../old/.venv/bin/python --python after=.venv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
from _common import Row

READY_TIMEOUT_S = 600.0


def cpu_flags_line() -> str:
    """The CPU's model and its SIMD flags, for the table's header."""
    model, flags = "unknown CPU", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
    simd = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
    return f"{model}, {os.cpu_count()} CPUs; flags: {' '.join(f for f in simd if f in flags) or 'none'}"


@contextlib.contextmanager
def fresh_home() -> Iterator[Path]:
    """An empty folder used as the working directory, cache and data folder of one case."""
    folder = Path(tempfile.mkdtemp(prefix="vggish-startup-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def environment(home: Path) -> dict[str, str]:
    """The case's environment: nothing cached, no download, the defaults otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VGGISH_")}
    env.update(
        HOME=str(home),  # caches under ~ (older checkouts) start empty too
        XDG_CACHE_HOME=str(home / "xdg-cache"),
        VGGISH_DATA_DIR=str(home / "data"),
        VGGISH_DOWNLOAD="false",
    )
    return env


def timed_command(python: str, *args: str) -> float:
    """Seconds one ``python -m vggish ARGS`` takes, in a fresh home."""
    with fresh_home() as home:
        started = time.perf_counter()
        subprocess.run(
            [python, "-m", "vggish", *args],
            cwd=home,
            env=environment(home),
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def first_serve(python: str, clip: Path) -> tuple[float, float, float]:
    """(seconds until /readyz is 200, MB resident after one 10 s clip, MB peak) of a first serve."""
    with fresh_home() as home:
        port = free_port()
        started = time.perf_counter()
        server = subprocess.Popen(
            [python, "-m", "vggish", "serve", "--weights", "random", "--port", str(port)],
            cwd=home,
            env=environment(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ready = wait_ready(port, server, started)
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/embeddings",
                data=clip.read_bytes(),
                headers={"Content-Type": "audio/wav"},
            )
            with urllib.request.urlopen(request, timeout=300) as answer:
                answer.read()
            rss, hwm = memory_kib(server.pid)
            return ready, rss / 1024, hwm / 1024
        finally:
            server.terminate()
            server.wait(timeout=60)


def wait_ready(port: int, server: subprocess.Popen[bytes], started: float) -> float:
    while time.perf_counter() - started < READY_TIMEOUT_S:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode} before it was ready")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer,
        ):
            if answer.status == 200:
                return time.perf_counter() - started
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f} s")


def first_embed(python: str, clip: Path) -> float:
    with fresh_home() as home:
        out = home / "out.npz"
        started = time.perf_counter()
        subprocess.run(
            [python, "-m", "vggish", "embed", str(clip), "--output", str(out), "--weights", "random"],
            cwd=home,
            env=environment(home),
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - started


SECTION = "startup"
# case -> unit, in the order the table lists them
CASES = {
    "vggish --version": "s",
    "vggish --help": "s",
    "first serve: start to /readyz 200": "s",
    "resident after a 10 s clip": "MB",
    "peak resident": "MB",
    "first embed of a 10 s file": "s",
}


def measure(pythons: dict[str, str], repeats: int, serve_repeats: int) -> dict[tuple[str, str], list[float]]:
    """(label, case) -> the figures of every repeat; the checkouts take turns."""
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip10.wav"
        noise = np.random.default_rng(0).uniform(-0.3, 0.3, (441_000, 2))
        sf.write(clip, noise, 44_100, subtype="PCM_16")
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(repeats):
            for label, python in pythons.items():
                for flag in ("--version", "--help"):
                    results.setdefault((label, f"vggish {flag}"), []).append(timed_command(python, flag))
        for _ in range(serve_repeats):
            for label, python in pythons.items():
                ready, rss, hwm = first_serve(python, clip)
                results.setdefault((label, "first serve: start to /readyz 200"), []).append(ready)
                results.setdefault((label, "resident after a 10 s clip"), []).append(rss)
                results.setdefault((label, "peak resident"), []).append(hwm)
                embed = first_embed(python, clip)
                results.setdefault((label, "first embed of a 10 s file"), []).append(embed)
    return results


def run(repeats: int = 3, serve_repeats: int = 2) -> list[Row]:
    """This checkout's start-up figures (medians), as rows of ``run_all.py``'s ``startup`` section."""
    results = measure({"this": sys.executable}, repeats, serve_repeats)
    rows = []
    for case, unit in CASES.items():
        runs = results["this", case]
        note = f"median of {len(runs)}, a fresh process, cache and data folder each"
        rows.append(Row(SECTION, case, statistics.median(runs), unit, note))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--python",
        action="append",
        metavar="LABEL=PATH",
        help="a checkout's Python to measure (repeatable); default: this one",
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the quick cases (default 3)")
    parser.add_argument("--serve-repeats", type=int, default=2, help="repeats of serve and embed (default 2)")
    args = parser.parse_args()
    named = (p.split("=", 1) for p in args.python or [])  # relative paths: from here (runs change folder)
    pythons = {label: str(Path(path).absolute()) for label, path in named} or {"this": sys.executable}
    results = measure(pythons, args.repeats, args.serve_repeats)
    print(f"# start-up, median of runs taking turns; {cpu_flags_line()}\n")
    labels = list(pythons)
    print("| case | " + " | ".join(labels) + (" | ratio |" if len(labels) == 2 else " |"))
    print("|---" * (len(labels) + 1 + (len(labels) == 2)) + "|")
    for case, unit in CASES.items():
        medians = [statistics.median(results[label, case]) for label in labels]
        cells = " | ".join(f"{m:.3g}" for m in medians)
        ratio = f" | {medians[1] / medians[0]:.2f}x |" if len(labels) == 2 and medians[0] else " |"
        print(f"| {case}, {unit} | {cells}{ratio}")


if __name__ == "__main__":
    main()
