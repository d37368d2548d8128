"""The options commands share: how audio becomes examples, and the runtime. A flag not given takes
its ``VGGISH_*`` setting (:mod:`vggish.settings`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from vggish import params
from vggish.network.cpus import available_cpus, validate_threads
from vggish.settings import Settings, load_settings

if TYPE_CHECKING:
    from vggish.network.runtime import Runtime
    from vggish.pipeline.options import EmbedOptions

# The choices of the flags, as the library names them (tests/test_cli.py keeps them equal to the
# library's Literal types, which live in modules that import PyTorch: --help does not).
BACKENDS = ("auto", "torch", "onnx")  # vggish.network.runtime.BackendName
PRECISIONS = ("fp32", "fp16", "bf16")  # vggish.network.runtime.PrecisionName
RESAMPLERS = ("reference", "fast")  # vggish.audio.resample.ResamplerName
CPU_BATCH_SIZE = 32  # vggish.network.runtime.CPU_BATCH_SIZE
CUDA_BATCH_SIZE = 256  # vggish.network.runtime.CUDA_BATCH_SIZE


def positive_int(text: str) -> int:
    try:
        return validate_threads(text, "the value")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_weights_arg(p: argparse.ArgumentParser, default: str = "the official weights") -> None:
    p.add_argument(
        "--weights", metavar="W", help=f"weights .safetensors file, or 'random' (default: {default})"
    )


def add_audio_args(p: argparse.ArgumentParser, *, pad: bool = False) -> None:
    """Adds --hop, --resampler and --pad (--pad/--no-pad when ``pad`` is the default)."""
    p.add_argument(
        "--hop",
        type=float,
        default=params.EXAMPLE_HOP_SECONDS,
        metavar="SECONDS",
        help="seconds between example starts, a multiple of 0.01 (default: 0.96, the reference)",
    )
    p.add_argument(
        "--pad",
        action=argparse.BooleanOptionalAction if pad else "store_true",
        default=pad,
        help="zero-pad a clip shorter than 0.975 s to one example" + (" (default: on)" if pad else ""),
    )
    p.add_argument(
        "--resampler",
        choices=RESAMPLERS,
        default="reference",
        help="reference: resampy kaiser_best, exact (default); fast: soxr, not exact (docs/fidelity.md)",
    )


def add_embed_args(p: argparse.ArgumentParser) -> None:
    add_audio_args(p)
    p.add_argument("--no-postprocess", action="store_true", help="skip AudioSet's PCA + 8-bit features")


def add_store_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--data-dir",
        metavar="DIR",
        help="the heads' SQLite database is DIR/heads.sqlite3 (default: VGGISH_DATA_DIR, else ./data)",
    )
    where.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql://user:password@host:port/db: the heads' PostgreSQL database, shared with "
        "the service's replicas (default: VGGISH_DATABASE_URL when set)",
    )


def store_location(args: argparse.Namespace) -> str | Path:
    """Where heads live: --database-url, --data-dir, else the settings'."""
    if args.database_url:
        return str(args.database_url)
    return Path(args.data_dir) if args.data_dir else load_settings().heads_location


def embed_options(args: argparse.Namespace) -> EmbedOptions:
    from vggish.pipeline.options import EmbedOptions

    return EmbedOptions(
        hop_seconds=args.hop,
        pad=args.pad,
        postprocess=False if args.no_postprocess else None,
        resampler=args.resampler,
        batch_size=args.batch_size,
    )


def add_runtime_args(p: argparse.ArgumentParser, *, batch: bool = True) -> None:
    p.add_argument("--device", help="torch device: cpu, cuda, cuda:1... (default: cpu)")
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        help="auto (default, or VGGISH_BACKEND): ONNX Runtime on the CPU when installed "
        "(pip install 'vggish[onnx]'), PyTorch otherwise and on GPUs; torch; onnx",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32 (default: Google's numbers); bf16 (CPUs with bfloat16 instructions, GPUs) or fp16 "
        "(GPUs) weights and activations (docs/fidelity.md: each one's deviation)",
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help=f"intra-op threads of the model (default: VGGISH_NUM_THREADS or the CPUs this process "
        f"may use, here {available_cpus()})",
    )
    if batch:
        p.add_argument(
            "--batch-size",
            type=positive_int,
            metavar="N",
            help=f"examples per model call (default: {CPU_BATCH_SIZE} on the CPU, "
            f"{CUDA_BATCH_SIZE} on a GPU)",
        )


def settings_of(args: argparse.Namespace, *more: str) -> Settings:
    """The settings, the runtime flags (and the flags ``more``) given in ``args`` winning
    (ValueError: a bad ``VGGISH_*``)."""
    flags = ("weights", "device", "backend", "precision", "threads", *more)
    fields = {"threads": "num_threads"}
    return load_settings(**{fields.get(flag, flag): getattr(args, flag, None) for flag in flags})


def weights_arg(args: argparse.Namespace) -> str | None:
    return getattr(args, "weights", None) or load_settings().weights or None


def load_runtime(args: argparse.Namespace) -> Runtime:
    from vggish.network.loader import load_model

    settings = settings_of(args)
    return load_model(settings.weights or None, **settings.load_kwargs())
