"""``vggish extract INPUT... --output OUT_DIR``: embeddings of many files, resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

from vggish.cli.runtime_args import (
    add_embed_args,
    add_runtime_args,
    add_weights_arg,
    embed_options,
    settings_of,
)
from vggish.errors import plural
from vggish.extract import ExtractOptions, default_workers, extract, find_inputs
from vggish.extract.outputs import FAILURES_NAME, OutputFormat
from vggish.weights import default_weights_path

DESCRIPTION = """\
Embed many audio files with VGGish into OUT_DIR, in parallel and resumably.

INPUT is a file, a folder (searched recursively for audio files) or @list.txt (one path a line).
Formats:
  parquet   part-*.parquet, one row per example: path, index, start, end, embedding[128]
            (float32), postprocessed[128] (uint8, with PCA weights); pandas.read_parquet(OUT_DIR)
  npz       one .npz per input, mirroring the input tree (the keys of `vggish embed`)
  tfrecord  AudioSet-style SequenceExamples (audio_embedding: 128 uint8 bytes per example)
Re-running the same command resumes: complete inputs are skipped. Inputs that fail are listed in
OUT_DIR/_failures.jsonl and the exit status is 2; OUT_DIR/_summary.json holds the run's figures."""

EPILOG = f"""\
examples:
  vggish extract corpus/ --output features/
  vggish extract @files.txt --output features/ --format tfrecord --workers 8
  vggish extract corpus/ --output features/ --engine ray --device cuda

default weights: {default_weights_path()}"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders or @list.txt")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder")
    add_weights_arg(p)
    p.add_argument("--format", choices=get_args(OutputFormat), default="parquet", help="(default: parquet)")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="(default: local)")
    p.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to join (default: start a local one)")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"decoding processes, 0: decode in the main process (default: CPUs // 4 = {default_workers()}; "
        "CPUs - 1 with cuda)",
    )
    add_embed_args(p)
    p.add_argument("--glob", metavar="PATTERN", help="file names to take from folders, e.g. '*.wav'")
    add_runtime_args(p)
    p.add_argument("--rows-per-part", type=int, default=20_000, metavar="N", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    """Runs the extraction; 0 when every input succeeded, 2 when some failed."""
    args.device = args.device or "cpu"
    if args.threads is not None and args.engine == "ray":
        raise ValueError("--threads applies to --engine local; Ray actors use their node's CPUs")
    if args.workers is None:
        args.workers = default_workers(args.device)
    if args.workers < 0:
        raise ValueError(f"--workers must be 0 or more; got {args.workers}")
    settings = settings_of(args)
    runtime = settings.load_kwargs()
    options = ExtractOptions(
        embed=embed_options(args),
        format=args.format,
        engine=args.engine,
        workers=args.workers,
        device=args.device,
        backend=runtime["backend"],
        precision=args.precision or "fp32",
        threads=runtime["threads"],
        ray_address=args.ray_address,
        rows_per_part=args.rows_per_part,
    )
    inputs = find_inputs(args.inputs, args.glob)
    output = Path(args.output)
    summary = extract(inputs, output, settings.weights or None, options, progress=True)
    skipped = f", {summary.files_skipped} already done" if summary.files_skipped else ""
    print(
        f"wrote {output}: {plural(summary.files_ok, 'file')}, {plural(summary.examples, 'example')}, "
        f"{summary.audio_hours:.3f} h of audio in {summary.wall_seconds:.1f} s "
        f"({summary.realtime_factor:.0f}x realtime){skipped}"
    )
    if summary.files_failed:
        print(
            f"vggish: {summary.files_failed} of {plural(summary.files_total, 'input')} failed; "
            f"see {output / FAILURES_NAME}",
            file=sys.stderr,
        )
    return 2 if summary.files_failed else 0
