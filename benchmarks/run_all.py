"""Every benchmark in one run: the project's one benchmark page, ``docs/benchmarks.md``.

Sections, in order (``--only`` picks some):

- ``machine``: CPU model, usable cores, SIMD flags, torch / onnxruntime / numpy versions, float32
  GEMM throughput (``torch.mm`` 2048 x 2048, default threads) and the model's implied ceiling
  (1.73 GFLOP per example).
- ``end-to-end``: ``embed_file`` on a 2-minute 44.1 kHz stereo WAV per backend and resampler
  against torchvggish 0.2, and where its time goes (``bench_end_to_end.py``).
- ``model``: examples/s at batch 1, 8, 32, 64 per backend and torchvggish's model (``bench_model.py``).
- ``resample``: ours against resampy 0.4.3 kaiser_best at 44.1 and 48 kHz on 120 s (``bench_resample.py``).
- ``service``: offline vs served throughput with 1, 4 and 16 clients, idle latency, and cold start
  with the torch and onnx backends (``bench_service.py``; servers are separate processes).
- ``extract``: ``vggish extract`` on 500 files of 5 s vs ``embed_file`` on one long file, and
  torchvggish one file at a time (``bench_extract.py``).
- ``hear``: the HEAR API's timestamp embeddings at hops of 0.96, 0.25 and 0.05 s and its scene
  embeddings, one call on a batch of sounds (``bench_hear.py``).
- ``speed``: the network at batch 32 in fp32 with direct convolutions and with the built-in
  plans (PyTorch, ONNX Runtime), and in bf16, each with its deviation from fp32 (``bench_speed.py``).
- ``startup``: ``vggish --version`` and ``--help``, a first ``vggish serve`` to ``/readyz`` with
  its memory, and a first ``vggish embed``, for this checkout (``bench_startup.py``, whose
  ``--python`` compares two checkouts by hand).

Within a section the cases take turns (or run back to back) in one run, so their ratios hold on
a busy machine; each row's ratio compares it with the section's reference case, named in the
page. The model-only rows (``model``, ``speed``) also carry their ratio to the model ceiling.

Each section measures the way its script's docstring says (warm-ups, medians; the best of the
repeats for extraction), with the library's random weights saved to one temporary file for the
whole run. A missing optional dependency gives a "not installed" row; a section that fails gives
a "failed" row, its traceback on stderr and exit status 1, and the others still run. The full run
takes many minutes on 2 cores, extraction the longest (``--short``: smaller cases, real figures,
for a busy machine; ``--quick``: tiny sizes, for checking the benchmarks themselves, not for
figures). Progress goes to stderr, one table of every row to stdout, and with ``--page PATH`` the
page, a table per section, to PATH.

Usage: ``python benchmarks/run_all.py [--quick | --short] [--only SECTION ...] [--json PATH] [--page PATH]``
(``pip install -e '.[bench,onnx]'`` first; ``make bench`` does both and writes ``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _common
from _common import (
    Row,
    gemm_gflops,
    log,
    machine_line,
    machine_rows,
    markdown_table,
    page,
    with_ceiling,
    write_json,
)


@dataclass(frozen=True)
class Sizes:
    """How much each section measures; :data:`FULL` for figures, :data:`QUICK` for checks."""

    repeats: int = 3  # timed runs per case (median)
    gemm_repeats: int = 5
    clip_seconds: float = 120.0  # end to end
    batches: tuple[int, ...] = (1, 8, 32, 64)  # model only
    model_examples: int = 128  # per timed run
    resample_seconds: float = 120.0
    service_clips: int = 16
    service_clip_seconds: float = 10.0
    clients: tuple[int, ...] = (1, 4, 16)
    cold_starts: int = 3
    files: int = 500  # extract
    file_seconds: float = 5.0
    workers: tuple[int, ...] = (0, 1)
    extract_repeats: int = 1
    hear_sounds: int = 8  # sounds per HEAR call
    hear_seconds: float = 10.0
    speed_batch: int = 32
    speed_examples: int = 128
    speed_repeats: int = 5
    startup_repeats: int = 3  # vggish --version, --help
    startup_serve_repeats: int = 2  # first serve, first embed


FULL = Sizes()
SHORT = Sizes(  # real figures from smaller cases, for a shared or busy machine (the page says so)
    clip_seconds=30.0,
    batches=(1, 32),
    model_examples=64,
    resample_seconds=30.0,
    service_clips=8,
    clients=(1, 4),
    cold_starts=1,
    files=100,
    hear_sounds=4,
    speed_examples=64,
    speed_repeats=3,
    startup_repeats=2,
    startup_serve_repeats=1,
)
QUICK = Sizes(
    repeats=1,
    gemm_repeats=3,
    clip_seconds=10.0,
    batches=(1, 8),
    model_examples=8,
    resample_seconds=10.0,
    service_clips=2,
    clients=(1, 2),
    cold_starts=1,
    files=8,
    workers=(0,),
    hear_sounds=2,
    hear_seconds=2.0,
    speed_batch=8,
    speed_examples=8,
    speed_repeats=1,
    startup_repeats=1,
    startup_serve_repeats=1,
)


def end_to_end(s: Sizes) -> list[Row]:
    from bench_end_to_end import run

    return run(s.clip_seconds, s.repeats)


def model(s: Sizes) -> list[Row]:
    from bench_model import run

    return run(s.batches, s.model_examples, s.repeats)


def resample(s: Sizes) -> list[Row]:
    from bench_resample import run

    return run(s.resample_seconds, (44100, 48000), s.repeats)


def service(s: Sizes) -> list[Row]:
    from bench_service import run

    return run(s.service_clips, s.service_clip_seconds, s.clients, cold_starts=s.cold_starts)


def extract(s: Sizes) -> list[Row]:
    from bench_extract import run

    return run(s.files, s.file_seconds, s.workers, repeats=s.extract_repeats)


def hear(s: Sizes) -> list[Row]:
    from bench_hear import run

    return run(s.hear_sounds, s.hear_seconds, s.repeats)


def speed(s: Sizes) -> list[Row]:
    from bench_speed import run

    return run(s.speed_batch, s.speed_examples, s.speed_repeats)


def startup(s: Sizes) -> list[Row]:
    from bench_startup import run

    return run(s.startup_repeats, s.startup_serve_repeats)


SECTIONS: dict[str, Callable[[Sizes], list[Row]]] = {
    "machine": lambda s: machine_rows(s.gemm_repeats),
    "end-to-end": end_to_end,
    "model": model,
    "resample": resample,
    "service": service,
    "extract": extract,
    "hear": hear,
    "speed": speed,
    "startup": startup,
}


def run_sections(names: list[str], sizes: Sizes) -> tuple[list[Row], bool]:
    """Runs the sections in order; returns their rows and whether every one succeeded."""
    rows: list[Row] = []
    ok = True
    for i, name in enumerate(names, 1):
        log(f"section {i}/{len(names)}: {name}")
        started = time.perf_counter()
        try:
            rows += SECTIONS[name](sizes)
        except Exception as e:  # one broken section must not lose the others' figures
            traceback.print_exc()
            rows.append(Row(name, "failed", f"{type(e).__name__}: {e}", "", "traceback on stderr"))
            ok = False
        gc.collect()  # each section's models go before the next is measured
        log(f"section {name} done in {time.perf_counter() - started:.0f} s")
    return rows, ok


def ceiling_ratios(rows: list[Row], sizes: Sizes) -> list[Row]:
    """The rows with their ratio to the model ceiling: the machine section's GEMM figure, or one
    measured now when that section did not run and model-only rows did."""
    gemm = [r.value for r in rows if (r.section, r.name) == ("machine", "float32 GEMM")]
    needed = any(r.unit == "examples/s" and r.section in ("model", "speed") for r in rows)
    if not needed:
        return rows
    gflops = float(gemm[0]) if gemm and not isinstance(gemm[0], str) else gemm_gflops(sizes.gemm_repeats)
    return with_ceiling(rows, gflops)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the benchmarks run")
    parser.add_argument("--short", action="store_true", help="smaller cases, real figures (a busy machine)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list(SECTIONS),
        metavar="SECTION",
        help=f"run these sections only: {', '.join(SECTIONS)}",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the rows as JSON")
    parser.add_argument(
        "--page", type=Path, metavar="PATH", help="also write the benchmark page (docs/benchmarks.md)"
    )
    args = parser.parse_args()
    names = [n for n in SECTIONS if args.only is None or n in args.only]
    header = machine_line()  # before the run: its load average is the machine's, not ours
    started = time.perf_counter()
    sizes = QUICK if args.quick else SHORT if args.short else FULL
    _common.QUICK_CHECKS = args.quick
    rows, ok = run_sections(names, sizes)
    rows = ceiling_ratios(rows, sizes)
    seconds = time.perf_counter() - started
    scale = "full sizes"
    if args.quick or args.short:
        scale = "--quick sizes: checks only, not figures" if args.quick else "--short sizes"
    print(f"# vggish benchmarks, {time.strftime('%Y-%m-%d')}, {scale}, {seconds:.0f} s")
    print(f"# {header}\n")
    print(markdown_table(rows))
    if args.json:
        write_json(args.json, header, rows)
    if args.page:
        run_line = f"{time.strftime('%Y-%m-%d')}, {scale}, {seconds / 60:.0f} min"
        args.page.write_text(page(rows, header, run_line))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
