"""Resampling to 16 kHz, side by side: resampy kaiser_best, our "reference" and our "fast" (soxr).

    python benchmarks/bench_resample.py                   # 120 s of white noise at 44.1 and 48 kHz
    python benchmarks/bench_resample.py --seconds 30 --rates 22050 96000 --repeats 5

Times are medians over ``--repeats`` runs of wall-clock seconds, with the process's CPU seconds
beside them (CPU/wall near 1 means one thread did the work). resampy is timed twice: its first
call in this process (which includes numba's JIT compilation) and warm, after that call. The
speed-up is against warm resampy. The header states the BLAS library, how many threads it may
use and the load on the machine, since other processes on a shared 2-core machine slow
everything down.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import resampy

from vggish.resample import StreamingResampler, resample

TARGET_RATE = 16_000


@dataclass(frozen=True)
class Timing:
    """Median wall and CPU seconds of one method, and its output."""

    wall: float
    cpu: float
    output: np.ndarray


def measure(fn: Callable[[], np.ndarray], repeats: int) -> Timing:
    """Runs ``fn`` ``repeats`` times; returns median wall and CPU seconds and the last output."""
    walls, cpus = [], []
    out = np.zeros(0)
    for _ in range(repeats):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    return Timing(statistics.median(walls), statistics.median(cpus), out)


def streamed(x: np.ndarray, sr: int, chunk: int) -> np.ndarray:
    """Our reference resampler fed ``chunk`` samples at a time."""
    stream = StreamingResampler(sr, TARGET_RATE)
    parts = [stream.process(x[i : i + chunk]) for i in range(0, len(x), chunk)]
    return np.concatenate([*parts, stream.flush()])


def blas_description() -> str:
    """The BLAS numpy uses and the threads it may start."""
    config = np.show_config(mode="dicts")
    blas = config.get("Build Dependencies", {}).get("blas", {})
    name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    env = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ}
    cores = len(os.sched_getaffinity(0))
    threads = ", ".join(f"{k}={v}" for k, v in env.items()) or f"unset (default: {cores} threads)"
    return f"numpy {np.__version__}, BLAS {name}; BLAS threads: {threads}; cores usable: {cores}"


def rows_for_rate(sr: int, seconds: float, repeats: int) -> list[tuple[str, Timing]]:
    """Times every method on white noise at ``sr`` Hz."""
    x = np.random.default_rng(sr).standard_normal(round(seconds * sr)) * 0.1
    ours_first = measure(lambda: resample(x, sr), 1)  # builds and caches the weights
    return [
        ("resampy kaiser_best, warm", measure(lambda: resampy.resample(x, sr, TARGET_RATE), repeats)),
        ("vggish reference", measure(lambda: resample(x, sr), repeats)),
        ("vggish reference, first call", ours_first),
        ("vggish reference, 1 s chunks", measure(lambda: streamed(x, sr, sr), repeats)),
        ("vggish fast (soxr VHQ)", measure(lambda: resample(x, sr, method="fast"), repeats)),
    ]


def print_rows(sr: int, rows: list[tuple[str, Timing]]) -> None:
    """One line per method: seconds, speed-up against warm resampy, max abs difference."""
    base = rows[0][1]
    for name, t in rows:
        diff = float(np.abs(t.output - base.output).max()) if len(t.output) else 0.0
        same = len(t.output) == len(base.output)
        print(
            f"{sr:>6}  {name:<30} {t.wall:8.3f} {t.cpu:8.3f} {base.wall / t.wall:8.1f}x"
            f"  {diff:10.2e}{'' if same else '  (length differs!)'}"
        )


def main() -> None:
    """Parses the options, times resampy's JIT once, then prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="signal length (s)")
    parser.add_argument("--rates", type=int, nargs="+", default=[44100, 48000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(blas_description())
    print(f"load average before: {os.getloadavg()[0]:.2f}; signal: {args.seconds:g} s white noise")
    x = np.random.default_rng(0).standard_normal(round(args.seconds * args.rates[0])) * 0.1
    cold = measure(lambda: resampy.resample(x, args.rates[0], TARGET_RATE), 1)
    print(f"resampy first call at {args.rates[0]} Hz (incl. numba JIT): {cold.wall:.3f} s wall")
    print(f"{'rate':>6}  {'method':<30} {'wall s':>8} {'cpu s':>8} {'speed-up':>9}  max|diff|")
    for sr in args.rates:
        print_rows(sr, rows_for_rate(sr, args.seconds, args.repeats))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
