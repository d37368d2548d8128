"""``vggish tune``: measure this machine's fastest algorithm per layer and batch size, and keep it."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import get_args

from vggish import cpus, loader, tuning
from vggish.cli.runtime_args import CACHE_ENV, add_weights_arg, env_default, positive_int
from vggish.loader import load_model
from vggish.runtime import BackendName, PrecisionName

DESCRIPTION = textwrap.fill(
    "Time, on this machine, every candidate algorithm of each layer of VGGish (direct "
    "convolutions whole or a few examples at a time, Winograd F(2x2,3x3) and F(4x4,3x3); the "
    "fully connected layers through BLAS or oneDNN) for one backend, precision and thread count, "
    "choose the fastest that stays within float32 accuracy (a candidate replaces the built-in "
    f"choice only when {tuning.MARGIN:.0%} faster), then time the whole network at batch sizes "
    f"{', '.join(map(str, tuning.BATCH_SIZES))}. Prints the table and stores the choice in the "
    "cache folder, keyed by the CPU model, threads, precision and the versions of vggish, torch "
    "and onnxruntime; every later load_model (the CLI, the service) on this machine reuses it. "
    "The first load on a machine does this by itself (--tune auto, the default); run this "
    "command to measure again on a quiet machine, e.g. after moving the cache to new hardware. "
    "Pass the same --backend, --precision and --threads as the runs that should use it.",
    width=95,
)

EPILOG = f"""\
examples:
  vggish tune                                     the backend 'auto' picks, all CPUs here
  vggish tune --backend torch --threads 2         eager PyTorch on 2 threads
  vggish tune --backend onnx                      ONNX Runtime's graph (exports one graph per layer)
  vggish tune --precision bf16 --backend torch    bf16 candidates (direct convolutions only)

the switch: --tune off on other commands, or VGGISH_TUNE=off (the service too), takes the
built-in plans without measuring, for reproducible timings.

this CPU: {cpus.simd_summary()}"""


NAME = "tune"
HELP = "measure this machine's fastest algorithm per layer and batch size, and keep it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``tune`` subcommand's arguments."""
    add_weights_arg(p)
    p.add_argument(
        "--backend",
        choices=get_args(BackendName),
        default="auto",
        help="what to tune: torch (eager PyTorch), onnx (ONNX Runtime), or auto (default: what "
        "load_model's auto runs here)",
    )
    p.add_argument("--precision", choices=get_args(PrecisionName), default="fp32", help="default: fp32")
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help=f"intra-op threads (default: the CPUs this process may use, here {cpus.available_cpus()})",
    )
    p.add_argument("--device", default="cpu", help="only cpu is tuned (default: cpu)")


def run(args: argparse.Namespace) -> int:
    """Measures, prints the table and where it is stored; 0 on success."""
    if loader.parse_device(args.device).type != "cpu":
        raise ValueError(f"tuning is for the CPU; got --device {args.device} (GPUs run direct convolutions)")
    cache = Path(env_default(CACHE_ENV) or loader.DEFAULT_CACHE_DIR)
    model = load_model(
        args.weights,
        device="cpu",
        backend=args.backend,
        precision=args.precision,
        threads=args.threads,
        cache_dir=cache,
        tune=True,
    )
    result = model.tuning
    if result is None or result.key is None:
        raise RuntimeError("no tuning was measured (this should not happen on the CPU)")
    print(f"CPU: {result.key.cpu}; {cpus.simd_summary()}")
    key = result.key
    print(f"{result.backend} backend, {key.precision}, {key.threads} threads, took {result.seconds:.1f} s")
    print(f"milliseconds per batch of {tuning.TUNING_BATCH} examples (median; bold: chosen):\n")
    print(result.table())
    print(f"\nchosen: {result.summary()}")
    print(f"stored in {tuning.stored_path(cache, result.key)}")
    return 0
