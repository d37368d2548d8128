"""The options that ``embed``, ``extract`` and ``serve`` share: how audio becomes examples (hop,
padding, resampler, postprocessing) and the runtime (device, backend, precision, threads, batch
size).

This is the CLI's argument layer, and with ``app/config.py`` the only code that reads the
environment: ``VGGISH_BACKEND``, ``VGGISH_NUM_THREADS`` and ``VGGISH_CACHE_DIR`` give the
defaults of ``--backend``, ``--threads`` and the cache of ONNX graphs, ``VGGISH_DATABASE_URL``
that of ``vggish heads --database-url``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, get_args

from vggish import params
from vggish.cpus import available_cpus, validate_threads
from vggish.options import EmbedOptions
from vggish.resample import ResamplerName
from vggish.runtime import CPU_BATCH_SIZE, CUDA_BATCH_SIZE, BackendName, PrecisionName

BACKEND_ENV = "VGGISH_BACKEND"
THREADS_ENV = "VGGISH_NUM_THREADS"
CACHE_ENV = "VGGISH_CACHE_DIR"
DATABASE_ENV = "VGGISH_DATABASE_URL"
DEFAULT_DATA_DIR = "data"  # the service's default VGGISH_DATA_DIR, relative to the working directory


def positive_int(text: str) -> int:
    """argparse type: a positive integer, with a message naming the fix."""
    try:
        return validate_threads(text, "the value")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_weights_arg(p: argparse.ArgumentParser, default: str = "the official weights") -> None:
    """Adds --weights (a .safetensors file, or 'random') to ``p``."""
    p.add_argument(
        "--weights", metavar="W", help=f"weights .safetensors file, or 'random' (default: {default})"
    )


def add_audio_args(p: argparse.ArgumentParser, *, pad: bool = False) -> None:
    """Adds --hop, --resampler and the padding switch (--pad; or --pad/--no-pad when ``pad`` is
    the default) to ``p``."""
    p.add_argument(
        "--hop",
        type=float,
        default=params.EXAMPLE_HOP_SECONDS,
        metavar="SECONDS",
        help="seconds between example starts, a multiple of 0.01 (default: 0.96, the reference)",
    )
    if pad:
        p.add_argument(
            "--pad",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="zero-pad a clip shorter than 0.975 s to one example (default: on)",
        )
    else:
        p.add_argument(
            "--pad", action="store_true", help="zero-pad a clip shorter than 0.975 s to one example"
        )
    p.add_argument(
        "--resampler",
        choices=get_args(ResamplerName),
        default="reference",
        help="reference: resampy kaiser_best, exact (default); fast: soxr, see README",
    )


def add_embed_args(p: argparse.ArgumentParser) -> None:
    """Adds --hop, --pad, --resampler and --no-postprocess to ``p``."""
    add_audio_args(p)
    p.add_argument("--no-postprocess", action="store_true", help="skip AudioSet's PCA + 8-bit features")


def add_store_args(p: argparse.ArgumentParser) -> None:
    """Adds --data-dir and --database-url (where classifier heads live) to ``p``."""
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"the heads' SQLite database is DIR/heads.sqlite3 (default: ./{DEFAULT_DATA_DIR})",
    )
    where.add_argument(
        "--database-url",
        metavar="URL",
        help=f"postgresql://user:password@host:port/db: the heads' PostgreSQL database, shared with "
        f"the service's replicas (default: {DATABASE_ENV} when set)",
    )


def store_location(args: argparse.Namespace) -> str | Path:
    """Where heads live: --database-url, --data-dir, ``VGGISH_DATABASE_URL``, then ./data."""
    if args.database_url:
        return str(args.database_url)
    if args.data_dir:
        return Path(args.data_dir)
    return env_default(DATABASE_ENV) or Path(DEFAULT_DATA_DIR)


def embed_options(args: argparse.Namespace) -> EmbedOptions:
    """The :class:`EmbedOptions` of :func:`add_embed_args`' options and --batch-size."""
    return EmbedOptions(
        hop_seconds=args.hop,
        pad=args.pad,
        postprocess=False if args.no_postprocess else None,
        resampler=args.resampler,
        batch_size=args.batch_size,
    )


def add_runtime_args(p: argparse.ArgumentParser, *, batch: bool = True) -> None:
    """Adds --device, --backend, --precision, --threads (and --batch-size) to ``p``."""
    p.add_argument("--device", help="torch device: cpu, cuda, cuda:1... (default: cpu)")
    p.add_argument(
        "--backend",
        choices=get_args(BackendName),
        help=f"auto (default, or {BACKEND_ENV}): ONNX Runtime on the CPU when installed "
        "(pip install 'vggish[onnx]'; graph exported once per weights file), PyTorch otherwise "
        "and on GPUs; torch; onnx",
    )
    p.add_argument(
        "--precision",
        choices=get_args(PrecisionName),
        help="fp32 (default: Google's numbers); bf16 (CPUs with bfloat16 instructions, GPUs) or fp16 "
        "(GPUs) weights and activations (README: each one's deviation)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help=f"intra-op threads of the model (default: {THREADS_ENV} or the CPUs this process may "
        f"use, here {available_cpus()})",
    )
    if batch:
        p.add_argument(
            "--batch-size",
            type=positive_int,
            metavar="N",
            help=f"examples per model call (default: {CPU_BATCH_SIZE} on the CPU, "
            f"{CUDA_BATCH_SIZE} on a GPU)",
        )


def env_default(name: str) -> str | None:
    """The environment variable ``name``, or None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def load_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The ``load_model`` keyword arguments of the runtime options, the environment's defaults
    filling what the user did not give.

    Raises:
        ValueError: a malformed ``VGGISH_BACKEND`` or ``VGGISH_NUM_THREADS``.
    """
    backend = args.backend or env_default(BACKEND_ENV) or "auto"
    if backend not in get_args(BackendName):
        raise ValueError(f"{BACKEND_ENV} must be one of {get_args(BackendName)}; got {backend!r}")
    threads = args.threads
    if threads is None and env_default(THREADS_ENV) is not None:
        threads = validate_threads(env_default(THREADS_ENV), THREADS_ENV)
    kwargs: dict[str, Any] = {
        "device": args.device or "cpu",
        "backend": backend,
        "threads": threads,
        "cache_dir": env_default(CACHE_ENV),
    }
    if args.precision:
        kwargs["precision"] = args.precision
    return kwargs
