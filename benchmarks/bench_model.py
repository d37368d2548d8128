"""Model-only throughput per backend, side by side in one run: examples/s at batch 1, 8, 32, 64.

Backends: PyTorch eager with direct convolutions in the default NCHW layout and in
``channels_last``; PyTorch ``channels_last`` with the built-in per-layer plan (what
``load_model(backend="torch")`` gives on the CPU: Winograd and chunked convolutions, see
:mod:`vggish.network.plans`); ONNX Runtime (``backend="onnx"``, what ``auto`` picks on the CPU,
with its built-in plan; skipped when ``vggish[onnx]`` is not installed) and, as the baseline,
torchvggish 0.2's eager model (input (N, 1, 96, 64), under ``torch.no_grad()``; skipped when
not installed). Random weights: speed does not depend on their values. Each backend is called
once per batch size to warm up; then the backends take turns per repeat, so a noisy neighbour
hurts them alike; the median is reported.

Usage: ``python benchmarks/bench_model.py [--batches 1 8 32 64] [--examples 128] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from _common import (
    Row,
    installed,
    load_bench_model,
    log,
    machine_line,
    markdown_table,
    missing_row,
    onnx_available,
)

from vggish.network.runtime import Runtime

SECTION = "model"
TORCHVGGISH = "torchvggish 0.2 (eager)"
Runner = Callable[[np.ndarray], np.ndarray]


def torchvggish_runner() -> Runner:
    """torchvggish 0.2's network (uninitialised weights): (N, 96, 64) -> (N, 128)."""
    from torchvggish import torchvggish as tv

    model = tv._vgg(postprocess=False).eval()

    def run(examples: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out: np.ndarray = model(torch.from_numpy(examples).unsqueeze(1)).numpy()
        return out

    return run


def runners() -> tuple[dict[str, Runner], list[Row]]:
    """Name -> (N, 96, 64) float32 -> (N, 128) callable for every backend available here, and a
    "not installed" row for each one that is not."""
    last = load_bench_model(backend="torch")
    direct_last: Runtime = load_bench_model(backend="torch")
    direct_last.winograd = False
    nchw: Runtime = load_bench_model(backend="torch")
    nchw.winograd = False
    nchw.network.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    out: dict[str, Runner] = {
        "torch eager, NCHW, direct convolutions": nchw.infer,
        "torch channels_last, direct convolutions": direct_last.infer,
        "torch channels_last, built-in plan (backend='torch')": last.infer,
    }
    missing: list[Row] = []
    if onnx_available():
        out["onnxruntime (backend='onnx')"] = load_bench_model(backend="onnx").infer
    else:
        missing.append(missing_row(SECTION, "onnxruntime (backend='onnx')", "onnxruntime"))
    if installed("torchvggish"):
        out[TORCHVGGISH] = torchvggish_runner()
    else:
        missing.append(missing_row(SECTION, TORCHVGGISH, "torchvggish"))
    return out, missing


def throughput(backends: dict[str, Runner], x: np.ndarray, examples: int, repeats: int) -> dict[str, float]:
    """Median examples/s of each backend on batches ``x``; the backends take turns per repeat."""
    batch = len(x)
    calls = max(1, examples // batch)
    for fn in backends.values():
        fn(x)  # warm-up: first-call allocations and kernel choice
    results: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(repeats):
        for name, fn in backends.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn(x)
            results[name].append(calls * batch / (time.perf_counter() - start))
    return {name: statistics.median(r) for name, r in results.items()}


def run(batches: Sequence[int] = (1, 8, 32, 64), examples: int = 128, repeats: int = 3) -> list[Row]:
    """Examples/s per backend and batch size.

    Returns:
        One row per (backend, batch); "not installed" rows for missing optional backends.
    """
    backends, rows = runners()
    x = np.random.default_rng(0).standard_normal((max(batches), 96, 64)).astype(np.float32)
    speeds: dict[tuple[str, int], float] = {}
    for batch in batches:
        log(f"model only: batch {batch}, {len(backends)} backends, {repeats} repeat(s)")
        for name, speed in throughput(backends, x[:batch], examples, repeats).items():
            speeds[name, batch] = speed
    note = f"median of {repeats}, about {examples} examples per run"
    for name in backends:
        for b in batches:
            ratio = versus(speeds, name, b)
            rows.append(Row(SECTION, f"{name}, batch {b}", speeds[name, b], "examples/s", note, ratio=ratio))
    return rows


def versus(speeds: dict[tuple[str, int], float], name: str, batch: int) -> float | None:
    """Examples/s of ``name`` over torchvggish's at the same batch size (None without torchvggish)."""
    base = speeds.get((TORCHVGGISH, batch))
    return speeds[name, batch] / base if base else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--examples", type=int, default=128, help="examples per timed run (default 128)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = run(args.batches, args.examples, args.repeats)
    print("# model only: examples/s (median of repeats), random weights")
    print(f"# {machine_line()}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
