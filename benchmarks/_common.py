"""What the benchmarks share: the result row, timing with medians, the machine, the table.

Each ``bench_*.py`` returns its measurements as :class:`Row` s; ``run_all.py`` puts every section
in one markdown table, and each script's own CLI prints its own table from the same rows.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

# 2 x multiply-adds of every layer for one (96, 64) example: conv1 0.007, conv2 0.226, conv3 0.679,
# conv4 0.679, fc1 0.134, fc2 0.001 GFLOP.
MODEL_GFLOP_PER_EXAMPLE = 1.73
GEMM_SIZE = 2048  # square float32 matrices for the machine's GEMM throughput
BENCH_EXTRA = "pip install -e '.[bench]'"
ONNX_EXTRA = "pip install -e '.[onnx]'"
# The package each optional benchmark dependency is imported as -> the extra that installs it.
OPTIONAL = {"torchvggish": BENCH_EXTRA, "resampy": BENCH_EXTRA, "onnxruntime": ONNX_EXTRA}


@dataclass(frozen=True)
class Row:
    """One measurement (or one fact) of the combined table.

    Attributes:
        section: the table's section (``machine``, ``end-to-end``, ``model``...).
        name: what was measured.
        value: the number (formatted to 3 significant figures) or a fact / reason as text.
        unit: the value's unit (``s``, ``examples/s``, ``GFLOP/s``...); empty for text.
        note: comparisons and conditions (``2.4x vs torchvggish``, ``median of 3``).
        vs_ceiling: examples/s as a multiple of the model ceiling (float32 GEMM GFLOP/s / 1.73
            GFLOP per example; :func:`with_ceiling`), for the model-only sections.
        ratio: how many times faster than the section's reference case this row is (times:
            the reference's over this one's; throughputs: this one's over the reference's);
            ``run_all.py`` names each section's reference in its table's heading.
    """

    section: str
    name: str
    value: float | str
    unit: str = ""
    note: str = ""
    vs_ceiling: float | None = None
    ratio: float | None = None


def log(message: str) -> None:
    """Progress for whoever watches a long run: one line on stderr, stdout keeps the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def installed(module: str) -> bool:
    """Whether an optional dependency can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def missing_row(section: str, name: str, module: str) -> Row:
    """The row a section prints instead of failing when ``module`` is not installed."""
    return Row(section, name, f"not installed: {OPTIONAL[module]}")


def onnx_available() -> bool:
    """Whether the ONNX backend can run here (``vggish[onnx]``: onnx, onnxruntime)."""
    from vggish.network.loader import onnx_installed

    return onnx_installed()


def _temporary_folder(prefix: str) -> Path:
    """A folder removed when this process exits."""
    folder = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return Path(folder)


@functools.cache
def weights_file() -> Path:
    """The library's random weights, saved once per process to a temporary ``.safetensors``.

    Speed needs no trained weights. A file loads as a real deployment's does (building the random
    weights takes longer, which would distort cold starts), and every section, server and worker
    of a run shares it.
    """
    from vggish.weights import random_weights, save_weights

    weights = random_weights()
    path = _temporary_folder("vggish-bench-weights-") / "random.safetensors"
    return save_weights(path, weights.state_dict, weights.pca, {"source": "random (benchmarks)"})


QUICK_CHECKS = False  # run_all.py --quick: checks that the benchmarks run, not figures


def load_bench_model(**kwargs: Any) -> Any:
    """``vggish.load_model`` on :func:`weights_file`; keyword arguments go to ``load_model``."""
    import vggish

    return vggish.load_model(weights_file(), **kwargs)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternate_times(fns: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds of every repeat per name; one warm-up each, then the names take turns.

    Taking turns means a busy moment on a shared machine slows every case alike.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def alternate(fns: Mapping[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall seconds per name of :func:`alternate_times`."""
    return {name: statistics.median(t) for name, t in alternate_times(fns, repeats).items()}


def cpu_model() -> str:
    """The CPU's ``model name`` from /proc/cpuinfo, else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def package_version(module: str) -> str:
    """``module.__version__``, or ``not installed``."""
    if not installed(module):
        return "not installed"
    return str(getattr(__import__(module), "__version__", "?"))


def machine_line() -> str:
    """One line naming the machine, for the head of every table."""
    return (
        f"{cpu_model()}, {usable_cores()} cores usable, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"onnxruntime {package_version('onnxruntime')}, numpy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.2f}; SIMD {simd_summary()}"
    )


def simd_summary() -> str:
    """The CPU's SIMD and matrix extensions that matter here (:func:`vggish.network.cpus.simd_summary`)."""
    from vggish.network import cpus

    return cpus.simd_summary()


def gemm_gflops(repeats: int, size: int = GEMM_SIZE) -> float:
    """Float32 ``torch.mm`` throughput (GFLOP/s, median) on ``size`` x ``size`` matrices."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen)
    b = torch.randn(size, size, generator=gen)
    seconds = median_time(lambda: torch.mm(a, b), repeats)
    return 2 * size**3 / seconds / 1e9


def machine_rows(repeats: int) -> list[Row]:
    """The machine section: CPU, cores, versions, GEMM throughput and the model's ceiling."""
    section = "machine"
    rows = [
        Row(section, "CPU", cpu_model()),
        Row(section, "cores usable", usable_cores(), "cores", f"torch threads {torch.get_num_threads()}"),
        Row(
            section,
            "versions",
            f"torch {torch.__version__}, onnxruntime "
            f"{package_version('onnxruntime')}, numpy {np.__version__}",
        ),
        Row(section, "SIMD flags", simd_summary(), "", "what decides the algorithms and precisions that pay"),
    ]
    gflops = gemm_gflops(repeats)
    note = f"torch.mm {GEMM_SIZE}x{GEMM_SIZE}, {torch.get_num_threads()} threads, median of {repeats}"
    rows.append(Row(section, "float32 GEMM", gflops, "GFLOP/s", note))
    note = f"GEMM / {MODEL_GFLOP_PER_EXAMPLE} GFLOP per example"
    rows.append(Row(section, "model ceiling", model_ceiling(gflops), "examples/s", note))
    return rows


CEILING_SECTIONS = ("model", "speed")  # model-only throughput: comparable with the ceiling


def model_ceiling(gflops: float) -> float:
    """Examples/s of a network running at float32 GEMM speed: ``gflops`` / 1.73 GFLOP."""
    return gflops / MODEL_GFLOP_PER_EXAMPLE


def with_ceiling(rows: Iterable[Row], gflops: float) -> list[Row]:
    """``rows`` with :attr:`Row.vs_ceiling` set on the model-only examples/s rows."""
    ceiling = model_ceiling(gflops)
    return [
        replace(row, vs_ceiling=row.value / ceiling)
        if row.section in CEILING_SECTIONS and row.unit == "examples/s" and isinstance(row.value, float | int)
        else row
        for row in rows
    ]


def format_value(value: float | str) -> str:
    """Numbers to 3 significant figures (integers as they are); text unchanged."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) or value == 0 or not math.isfinite(value):
        return str(value)
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def markdown_table(rows: Iterable[Row]) -> str:
    """One markdown table: section | what | result | unit | vs ceiling | notes."""
    lines = ["| section | what | result | unit | vs ceiling | notes |", "|---|---|---:|---|---:|---|"]
    for row in rows:
        ratio = "" if row.vs_ceiling is None else f"{row.vs_ceiling:.2f}x"
        cells = (row.section, row.name, format_value(row.value), row.unit, ratio, row.note)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_json(path: Path, header: str, rows: Iterable[Row]) -> None:
    """The rows (and the machine line) as JSON."""
    data = {"machine": header, "rows": [asdict(row) for row in rows]}
    path.write_text(json.dumps(data, indent=2) + "\n")


@dataclass(frozen=True)
class Section:
    """How the benchmark page shows a section: its title, what it measures, and its reference."""

    title: str
    what: str
    reference: str = ""  # what the ratio column compares with; empty: no ratio column


SECTIONS = {
    "end-to-end": Section(
        "End to end",
        "`model.embed_file` on a 44.1 kHz stereo WAV (decode, resample, log-mel, the network) per "
        "backend and resampler, and torchvggish 0.2's own pipeline (resampy and its eager model).",
        "torchvggish",
    ),
    "end-to-end profile": Section(
        "Where the time goes", "Each stage of `embed_file` on the same file, timed on its own."
    ),
    "model": Section(
        "The network alone",
        "Examples/s of the network per backend and batch size, on log-mel examples already made. "
        "*vs ceiling*: over the examples/s that float32 GEMM throughput allows (GFLOP/s ÷ 1.73 GFLOP "
        "an example), GEMM measured once at the start of the run: on a busy machine compare these "
        "between rows, not with 1.",
        "torchvggish's model at the same batch size",
    ),
    "resample": Section(
        "Resampling to 16 kHz",
        "White noise resampled to 16 kHz: the exact `reference` resampler (whole, and in 1 s chunks "
        "as files are streamed), the `fast` one (soxr), and resampy itself.",
        "resampy 0.4.3 `kaiser_best`, warm, at the same rate",
    ),
    "service": Section(
        "The REST service",
        "A real `vggish serve` on loopback receiving 10 s clips from concurrent clients, against the "
        "library embedding the same clips in one process; the latency of one clip on an idle server; "
        "the time from a server's start to `/readyz` 200 per backend.",
        "the library offline",
    ),
    "extract": Section(
        "Batch extraction",
        "`vggish extract` on many short files of mixed rates and formats, against `embed_file` on "
        "one long file of the same total audio, and torchvggish one file at a time.",
        "the long file",
    ),
    "hear": Section(
        "HEAR API",
        "One call on a batch of sounds: timestamp embeddings at several hops, scene embeddings, and "
        "the log-mel front end alone.",
        "timestamp embeddings at the 960 ms hop",
    ),
    "speed": Section(
        "Precisions and per-layer plans",
        "The network at one batch size with direct convolutions, with the built-in per-layer plans "
        "(PyTorch, ONNX Runtime) and in bf16, each with its deviation from fp32 on real recordings. "
        "*vs ceiling* as above.",
        "torch fp32, all direct",
    ),
    "startup": Section(
        "Start-up",
        "What a new user meets, each case in a fresh process with an empty cache: printing the "
        "version and the help, a first `vggish serve` until `/readyz` answers 200 and its memory "
        "after one 10 s clip, a first `vggish embed`. This checkout only: `bench_startup.py "
        "--python before=... --python after=...` compares two.",
    ),
}


def page(rows: Iterable[Row], header: str, run_line: str) -> str:
    """The benchmark page (markdown): the machine, then a table per section with its ratios."""
    rows = list(rows)
    machine = {r.name: r for r in rows if r.section == "machine"}
    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by `make bench` (benchmarks/run_all.py --page docs/benchmarks.md): do not edit. -->",
        "",
        "Every figure the project quotes is on this page, from one run of `make bench` on one machine.",
        "Within a section the cases ran side by side in that run, taking turns, so their **ratios**",
        "hold even on a busy machine; the absolute figures hold for this machine only. Ratios say how",
        "many times faster a row is than the section's reference (higher is better). The weights are",
        "the library's random ones: speed does not depend on their values.",
        "",
        "## Machine",
        "",
        f"- run: {run_line}",
        f"- {header}",
    ]
    if "float32 GEMM" in machine and "model ceiling" in machine:
        gemm, ceiling = machine["float32 GEMM"], machine["model ceiling"]
        lines.append(
            f"- float32 GEMM: {format_value(gemm.value)} GFLOP/s ({gemm.note}), so the network's "
            f"ceiling is {format_value(ceiling.value)} examples/s"
        )
    for name in dict.fromkeys(r.section for r in rows if r.section != "machine"):
        lines += ["", *section_table(name, [r for r in rows if r.section == name])]
    return "\n".join(lines) + "\n"


def section_table(name: str, rows: list[Row]) -> list[str]:
    """One section of the page: heading, what it measures, and its table."""
    info = SECTIONS.get(name, Section(name, ""))
    ceiling = any(r.vs_ceiling is not None for r in rows)
    ratio = bool(info.reference) and any(r.ratio is not None for r in rows)
    heads = ["case", "result", *(["× " + info.reference] if ratio else [])]
    heads += ["vs ceiling"] if ceiling else []
    lines = [f"## {info.title}", "", info.what, "", "| " + " | ".join([*heads, "notes"]) + " |"]
    lines.append("|---|---:|" + "---:|" * (len(heads) - 2) + "---|")
    for row in rows:
        cells = [row.name, f"{format_value(row.value)} {row.unit}".strip()]
        if ratio:
            cells.append("" if row.ratio is None else f"{row.ratio:.2f}×")
        if ceiling:
            cells.append("" if row.vs_ceiling is None else f"{row.vs_ceiling:.2f}×")
        cells.append(row.note)
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines
