"""The network's precisions and per-layer plans side by side, each with its deviation from fp32.

Cases, at one batch size (32 by default), random weights, each loaded as a user would:

- ``torch fp32, all direct``: ``model.winograd = False`` (oneDNN channels_last convolutions,
  ``F.linear``): what the ceiling's definition assumes, and the reference of the deviations.
- ``torch fp32, built-in plan``: ``load_model(backend="torch")``
  (:data:`vggish.network.plans.TORCH_DEFAULT`).
- ``torch bf16``: ``precision="bf16"`` (slow, and warned about, on CPUs without bf16).
- ``onnx fp32, built-in plan``: ``backend="onnx"`` (:data:`vggish.network.plans.ONNX_DEFAULT`),
  what ``auto`` picks on the CPU; skipped without the ``onnx`` extra.

The cases take turns per repeat after a warm-up (medians). Each row's note gives the deviation
of its embeddings from ``torch fp32, all direct`` on examples of real recordings
(``/usr/share/sounds``: alsa-utils, sound-theme-freedesktop; white noise where those are not
installed): max and RMS of |difference| relative to the reference's max |value|, and the share of
AudioSet uint8 features that differ and the largest step. ``run_all.py`` adds each row's ratio to
the model ceiling (float32 GEMM GFLOP/s / 1.73 GFLOP per example).

Usage: ``python benchmarks/bench_speed.py [--batch 32] [--examples 128] [--repeats 5] [--quick]``
"""

from __future__ import annotations

import argparse
import glob
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
from _common import (
    Row,
    gemm_gflops,
    load_bench_model,
    log,
    machine_line,
    markdown_table,
    missing_row,
    onnx_available,
    with_ceiling,
)

from vggish.network import cpus
from vggish.network.runtime import Runtime

SECTION = "speed"
REFERENCE = "torch fp32, all direct"
Runner = Callable[[np.ndarray], np.ndarray]


def _load(**kwargs: object) -> Runtime:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights; bf16 without bf16 instructions is logged below
        model: Runtime = load_bench_model(**kwargs)
    return model


def models() -> tuple[dict[str, Runtime], list[Row]]:
    """The cases' models, loaded now; a row per missing backend."""
    rows: list[Row] = []
    direct = _load(backend="torch")
    direct.winograd = False
    cases: dict[str, Runtime] = {REFERENCE: direct}
    wanted: list[tuple[str, dict[str, object]]] = [
        ("torch fp32, built-in plan", {"backend": "torch"}),
        ("torch bf16", {"backend": "torch", "precision": "bf16"}),
    ]
    if onnx_available():
        wanted.append(("onnx fp32, built-in plan", {"backend": "onnx"}))
    else:
        rows.append(missing_row(SECTION, "onnx fp32", "onnxruntime"))
    if not cpus.has_bf16():
        log("this CPU has no bf16 instructions: the bf16 case is emulated (slow)")
    for name, kwargs in wanted:
        log(f"speed: loading {name}")
        cases[name] = _load(**kwargs)
    return cases, rows


def real_examples(limit: int = 128) -> tuple[np.ndarray, str]:
    """Examples of the system's recordings (at most ``limit``), else the held-out synthetic one."""
    import vggish

    paths = sorted(
        glob.glob("/usr/share/sounds/alsa/*.wav") + glob.glob("/usr/share/sounds/freedesktop/stereo/*.oga")
    )
    if paths:
        x = np.concatenate([vggish.wavfile_to_examples(p, hop_seconds=0.48, pad=True) for p in paths])
        return x[:limit], f"{min(len(x), limit)} examples of {len(paths)} recordings in /usr/share/sounds"
    noise = np.random.default_rng(1).uniform(-0.5, 0.5, 60 * 16_000)
    x = vggish.waveform_to_examples(noise, 16_000, hop_seconds=0.48)
    return x[:limit], f"{min(len(x), limit)} examples of white noise (no system sounds installed)"


def deviation(reference: Runtime, model: Runtime, x: np.ndarray) -> str:
    """Max / RMS deviation relative to scale, and uint8 features that differ, vs ``reference``."""
    expected, got = reference.infer(x), model.infer(x)
    scale = float(np.abs(expected).max())
    dev = np.abs(got - expected) / scale
    text = f"max {dev.max():.1e}, RMS {np.sqrt((dev**2).mean()):.1e} of scale"
    if reference.has_pca:
        a = reference.postprocess(expected).numpy().astype(int)
        b = reference.postprocess(got).numpy().astype(int)
        text += f"; uint8 differ {(a != b).mean():.1%}, max step {np.abs(a - b).max()}"
    return text


def throughput(cases: dict[str, Runner], x: np.ndarray, examples: int, repeats: int) -> dict[str, float]:
    """Median examples/s per case on batches ``x``; the cases take turns per repeat."""
    calls = max(1, examples // len(x))
    for fn in cases.values():
        fn(x)
    speeds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            for _ in range(calls):
                fn(x)
            speeds[name].append(calls * len(x) / (time.perf_counter() - start))
    return {name: statistics.median(s) for name, s in speeds.items()}


def run(batch: int = 32, examples: int = 128, repeats: int = 5) -> list[Row]:
    """The speed section's rows: the plans chosen, then examples/s and deviation per case."""
    cases, rows = models()
    held_out, source = real_examples()
    notes = {
        name: deviation(cases[REFERENCE], model, held_out)
        for name, model in cases.items()
        if name != REFERENCE
    }
    notes[REFERENCE] = "the reference of the deviations"
    x = np.resize(held_out, (batch, *held_out.shape[1:])).astype(np.float32)
    log(f"speed: {len(cases)} cases at batch {batch}, {repeats} repeat(s); deviations on {source}")
    speeds = throughput({name: m.infer for name, m in cases.items()}, x, examples, repeats)
    for name, speed in speeds.items():
        note = f"median of {repeats}; {notes[name]}"
        ratio = speed / speeds[REFERENCE]
        rows.append(Row(SECTION, f"{name}, batch {batch}", speed, "examples/s", note, ratio=ratio))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--examples", type=int, default=128, help="examples per timed run (default 128)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = run(args.batch, args.examples, args.repeats)
    rows = with_ceiling(rows, gemm_gflops(5))
    print(f"# speed: examples/s (median of repeats), random weights; SIMD: {cpus.simd_summary()}")
    print(f"# {machine_line()}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
