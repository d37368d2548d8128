"""Checkpoint conversion speed and peak memory, side by side in one run: V1 and V2, full size.

Writes random VGGish-shaped checkpoints (72,141,184 float32 parameters, about 277 MB, plus a
``global_step`` and Adam slots to ignore) with TensorFlow's own Saver, in the legacy V1 format
(like Google's ``vggish_model.ckpt``) and in V2. Each measurement then runs in a fresh Python
process so that its peak resident memory is its own (Linux ``VmHWM``, which, unlike
``ru_maxrss``, does not inherit the parent's peak across ``exec``); "over baseline" subtracts the
peak after importing ``vggish`` and torch, before touching the checkpoint. Last, the throughput
of the CRC-32C checks alone (google-crc32c) over a checkpoint-sized buffer.

Usage: ``python benchmarks/bench_convert.py [--checkpoint vggish_model.ckpt] [--repeats 3]``
(TensorFlow is needed only to write the synthetic checkpoints; ``--checkpoint`` skips that).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODES = ("convert", "read", "read-no-crc")


def write_checkpoints(folder: Path) -> dict[str, Path]:
    """Full-size V1 and V2 checkpoints written by TensorFlow (helpers shared with the tests)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from tf_reference import TRAINING_EXTRAS, random_vggish_variables, write_checkpoint

    variables = {**random_vggish_variables(seed=0), **TRAINING_EXTRAS}
    checkpoints: dict[str, Path] = {}
    for version in ("v1", "v2"):
        checkpoints[version] = write_checkpoint(folder / version / "model.ckpt", variables, version)
    return checkpoints


def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM on Linux, else ru_maxrss)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child(mode: str, checkpoint: str, output: str) -> None:
    """Runs one measurement in this (fresh) process and prints it as JSON."""
    from vggish.weights.convert import convert_checkpoint
    from vggish.weights.tf_checkpoint import read_checkpoint

    baseline = peak_rss()
    started = time.perf_counter()
    if mode == "convert":
        convert_checkpoint(checkpoint, output)
    else:
        read_checkpoint(checkpoint, verify_checksums=mode == "read")
    seconds = time.perf_counter() - started
    peak = peak_rss()
    print(json.dumps({"seconds": seconds, "peak": peak, "baseline": baseline}))


def measure(mode: str, checkpoint: Path, output: Path) -> dict[str, float]:
    """One measurement in a subprocess."""
    command = [sys.executable, __file__, "--child", mode, str(checkpoint), str(output)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def checkpoint_bytes(checkpoint: Path) -> int:
    """Total size of a V1 file or of a V2 prefix's index and data shards."""
    if checkpoint.is_file():
        return checkpoint.stat().st_size
    return sum(p.stat().st_size for p in checkpoint.parent.glob(checkpoint.name + ".*"))


def report(checkpoints: dict[str, Path], folder: Path, repeats: int) -> None:
    """Prints the table: median seconds, and the largest peak memory over the repeats."""
    mib = 1 << 20
    machine = platform.processor() or platform.machine()
    print(f"{machine}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    header = f"{'source':<8}{'mode':<13}{'size MiB':>10}{'seconds':>9}{'peak RSS MiB':>14}"
    print(header + f"{'over baseline MiB':>19}{'x size':>8}")
    for name, checkpoint in checkpoints.items():
        size = checkpoint_bytes(checkpoint)
        for mode in MODES:
            runs = [measure(mode, checkpoint, folder / f"{name}.safetensors") for _ in range(repeats)]
            seconds = statistics.median(run["seconds"] for run in runs)
            peak = max(run["peak"] for run in runs)
            extra = max(run["peak"] - run["baseline"] for run in runs)
            print(
                f"{name:<8}{mode:<13}{size / mib:>10.1f}{seconds:>9.2f}{peak / mib:>14.0f}"
                f"{extra / mib:>19.0f}{extra / size:>8.2f}"
            )


def crc_throughput(size: int = 277 * 10**6, repeats: int = 3) -> None:
    """CRC-32C of a checkpoint-sized buffer, best of ``repeats``: what the checks cost."""
    import google_crc32c
    import numpy as np

    data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    best = min(_timed(google_crc32c.value, data) for _ in range(repeats))
    print(f"CRC-32C (google-crc32c, {google_crc32c.implementation}): {size / best / 1e6:.0f} MB/s")


def _timed(function: Callable[[Any], object], data: Any) -> float:
    started = time.perf_counter()
    function(data)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, help="benchmark this checkpoint instead of synthetic ones")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CHECKPOINT", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        folder = Path(tmp)
        checkpoints = {"given": args.checkpoint} if args.checkpoint else write_checkpoints(folder)
        report(checkpoints, folder, args.repeats)
    crc_throughput(repeats=args.repeats)


if __name__ == "__main__":
    main()
