"""Resampling to 16 kHz, side by side: resampy kaiser_best, our "reference" and our "fast" (soxr).

    python benchmarks/bench_resample.py                   # 120 s of white noise at 44.1 and 48 kHz
    python benchmarks/bench_resample.py --seconds 30 --rates 22050 96000 --repeats 5

Times are medians over ``--repeats`` runs of wall-clock seconds, with the process's CPU seconds
beside them (CPU/wall near 1 means one thread did the work). resampy is timed twice: its first
call in this process (which includes numba's JIT compilation) and warm, after that call. The
speed-up is against warm resampy; without resampy installed ours are timed alone. The header
states the BLAS library, how many threads it may use and the load on the machine, since other
processes on a shared 2-core machine slow everything down.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from _common import Row, installed, log, markdown_table, missing_row

from vggish.audio.resample import StreamingResampler, resample

SECTION = "resample"
TARGET_RATE = 16_000
RESAMPY_WARM = "resampy 0.4.3 kaiser_best, warm"


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


def timings_for_rate(sr: int, seconds: float, repeats: int) -> list[tuple[str, Timing]]:
    """Times every method on white noise at ``sr`` Hz; warm resampy first when installed."""
    x = np.random.default_rng(sr).standard_normal(round(seconds * sr)) * 0.1
    ours_first = measure(lambda: resample(x, sr), 1)  # builds and caches the weights
    timings = []
    if installed("resampy"):
        import resampy

        timings.append((RESAMPY_WARM, measure(lambda: resampy.resample(x, sr, TARGET_RATE), repeats)))
    return [
        *timings,
        ("vggish reference", measure(lambda: resample(x, sr), repeats)),
        ("vggish reference, first call", ours_first),
        ("vggish reference, 1 s chunks", measure(lambda: streamed(x, sr, sr), repeats)),
        ("vggish fast (soxr VHQ)", measure(lambda: resample(x, sr, method="fast"), repeats)),
    ]


def rate_rows(sr: int, timings: list[tuple[str, Timing]], seconds: float, repeats: int) -> list[Row]:
    """One row per method: wall seconds; CPU seconds, speed-up against warm resampy and the
    largest absolute difference from it in the note."""
    base = dict(timings).get(RESAMPY_WARM)
    rows = []
    for name, t in timings:
        notes = [f"cpu {t.cpu:.3f} s"]
        ratio = base.wall / t.wall if base is not None else None
        if base is not None and name != RESAMPY_WARM:
            same = len(t.output) == len(base.output)
            diff = f"max|diff| {np.abs(t.output - base.output).max():.1e}" if same else "length differs!"
            notes.append(diff)
        runs = "1 run" if name.endswith("first call") else f"median of {repeats}"
        notes.append(f"{seconds:g} s white noise, {runs}")
        rows.append(Row(SECTION, f"{name}, {sr / 1000:g} kHz", t.wall, "s", ", ".join(notes), ratio=ratio))
    return rows


def run(seconds: float = 120.0, rates: Sequence[int] = (44100, 48000), repeats: int = 3) -> list[Row]:
    """Times resampy's first call (numba JIT) once, then every method at every rate.

    Returns:
        The rows; a "not installed" row in place of resampy's when it is missing.
    """
    rows: list[Row] = []
    if installed("resampy"):
        import resampy

        x = np.random.default_rng(0).standard_normal(round(seconds * rates[0])) * 0.1
        cold = measure(lambda: resampy.resample(x, rates[0], TARGET_RATE), 1)
        note = f"includes numba's JIT compilation, {seconds:g} s white noise"
        rows.append(Row(SECTION, f"resampy first call, {rates[0] / 1000:g} kHz", cold.wall, "s", note))
    else:
        rows.append(missing_row(SECTION, "resampy 0.4.3 kaiser_best", "resampy"))
    for sr in rates:
        log(f"resampling: {seconds:g} s at {sr} Hz, {repeats} repeat(s)")
        rows += rate_rows(sr, timings_for_rate(sr, seconds, repeats), seconds, repeats)
    return rows


def main() -> None:
    """Parses the options and prints the table between two load averages."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="signal length (s)")
    parser.add_argument("--rates", type=int, nargs="+", default=[44100, 48000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# {blas_description()}")
    print(f"# load average before: {os.getloadavg()[0]:.2f}; signal: {args.seconds:g} s white noise\n")
    print(markdown_table(run(args.seconds, args.rates, args.repeats)))
    print(f"\n# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
