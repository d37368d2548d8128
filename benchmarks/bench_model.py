"""Model-only throughput per backend, side by side in one run: examples/s at batch 1, 8, 32, 64.

Backends: PyTorch eager in the default NCHW layout, PyTorch ``channels_last`` (what
``load_model`` gives), and ONNX Runtime (``backend="onnx"``; skipped when ``vggish[onnx]`` is
not installed). Random weights: speed does not depend on their values. Rows alternate between
backends per repeat, so a noisy neighbour hurts them alike; the median is printed.

Usage: ``python benchmarks/bench_model.py [--batches 1 8 32 64] [--examples 128] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

import vggish
from vggish.model import VGGish

Runner = Callable[[np.ndarray], np.ndarray]


def runners() -> dict[str, Runner]:
    """Name -> (N, 96, 64) float32 -> (N, 128) callable, for every backend available here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        last = vggish.load_model("random")
        nchw: VGGish = vggish.load_model("random")
    nchw.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    out: dict[str, Runner] = {
        "torch eager (NCHW)": nchw.infer,
        "torch channels_last (default)": last.infer,
    }
    from vggish import onnx_export

    if onnx_export.available():
        os.environ.setdefault("VGGISH_CACHE_DIR", tempfile.mkdtemp(prefix="vggish-bench-"))
        out["onnxruntime (backend='onnx')"] = onnx_export.onnx_runner(last)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--examples", type=int, default=128, help="examples per timed run (default 128)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    backends = runners()
    x = np.random.default_rng(0).standard_normal((max(args.batches), 96, 64)).astype(np.float32)
    results: dict[tuple[str, int], list[float]] = {}
    for batch in args.batches:
        calls = max(1, args.examples // batch)
        for run in backends.values():
            run(x[:batch])  # warm-up: first-call allocations and kernel choice
        for _ in range(args.repeats):
            for name, run in backends.items():
                start = time.perf_counter()
                for _ in range(calls):
                    run(x[:batch])
                results.setdefault((name, batch), []).append(calls * batch / (time.perf_counter() - start))
    print("# model only: examples/s (median of repeats), random weights")
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )
    print("| backend | " + " | ".join(f"batch {b}" for b in args.batches) + " |")
    print("|---|" + "---|" * len(args.batches))
    for name in backends:
        cells = [f"{statistics.median(results[(name, b)]):.1f}" for b in args.batches]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
