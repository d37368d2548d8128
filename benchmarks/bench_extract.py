"""Batch extraction speed, side by side in one run: many short files vs one long file.

``vggish extract`` on N short files (mixed rates 16 / 22.05 / 44.1 / 48 kHz and formats WAV /
FLAC / Ogg Vorbis) against ``model.embed_file`` on one 44.1 kHz WAV as long as all of them
together. The short files pay for opening, probing and flushing each file, the examples lost at
each file's end, decoding in worker processes and writing Parquet; packing their examples into
full batches is what keeps the model as busy as on the long file. The target is >= 80 % of the
long file's throughput. Both use the same random weights, saved to a file (speed needs no trained
ones); the batch figure includes starting the worker processes and loading the model. The
baseline is torchvggish 0.2 embedding the same short files one by one (``wavfile_to_examples``
with resampy, then its eager model; skipped when not installed). The cases take turns per
repeat; the best of each is reported.

Usage: ``python benchmarks/bench_extract.py [--files 500] [--seconds 5] [--workers 0 1] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from _common import (
    Row,
    installed,
    load_bench_model,
    log,
    machine_line,
    markdown_table,
    missing_row,
    weights_file,
)

SECTION = "extract"

RATES = (16_000, 22_050, 44_100, 48_000)  # Hz, cycled over the short files
FORMATS = ((".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS"))  # cycled independently
LONG_RATE = 44_100  # Hz: the long file's rate
WRITE_BLOCK_SECONDS = 60.0  # the long file is written a minute at a time


def _signal(rate: int, seconds: float, seed: int) -> np.ndarray:
    """Stereo float32: a tone plus seeded noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (200 + seed % 500) * t)
    return (tone[:, None] + 0.05 * rng.standard_normal((t.size, 2))).astype(np.float32)


def make_short_files(folder: Path, count: int, seconds: float) -> float:
    """Writes ``count`` files; returns their total duration in seconds."""
    total = 0.0
    for i in range(count):
        suffix, subtype = FORMATS[i % len(FORMATS)]
        rate = RATES[i % len(RATES)]
        sf.write(folder / f"{i:05d}{suffix}", _signal(rate, seconds, i), rate, subtype=subtype)
        total += round(rate * seconds) / rate
    return total


def make_long_file(path: Path, seconds: float) -> None:
    """One 44.1 kHz stereo WAV of ``seconds``, written block by block."""
    with sf.SoundFile(path, "w", LONG_RATE, 2, subtype="PCM_16") as f:
        left, seed = seconds, 0
        while left > 0:
            block = min(left, WRITE_BLOCK_SECONDS)
            f.write(_signal(LONG_RATE, block, seed))
            left, seed = left - block, seed + 1


def bench_long(path: Path, batch_size: int, resampler: str) -> float:
    """Wall seconds of ``model.embed_file`` on the long file (the model is loaded untimed)."""
    model = load_bench_model()
    start = time.perf_counter()
    model.embed_file(path, batch_size=batch_size, resampler=resampler)
    return time.perf_counter() - start


def bench_extract(folder: Path, output: Path, workers: int, batch_size: int, resampler: str) -> float:
    """Wall seconds of a fresh ``vggish extract`` (Parquet) over ``folder``."""
    from vggish.extract import ExtractOptions, extract, find_inputs
    from vggish.pipeline.options import EmbedOptions

    embed = EmbedOptions(batch_size=batch_size, resampler=resampler)  # type: ignore[arg-type]
    options = ExtractOptions(embed=embed, workers=workers)
    start = time.perf_counter()
    summary = extract(find_inputs([str(folder)]), output, str(weights_file()), options)
    seconds = time.perf_counter() - start
    if summary.files_failed:
        raise RuntimeError(f"{summary.files_failed} benchmark files failed; see {output}/_failures.jsonl")
    return seconds


def bench_torchvggish(folder: Path) -> float:
    """Wall seconds of torchvggish 0.2 embedding every file in turn (its model built untimed)."""
    from torchvggish import torchvggish as tv
    from torchvggish import vggish_input

    model = tv._vgg(postprocess=False).eval()
    files = sorted(folder.iterdir())
    start = time.perf_counter()
    for path in files:
        examples = vggish_input.wavfile_to_examples(str(path))
        with torch.no_grad():
            model(examples)
    return time.perf_counter() - start


def run(
    files: int = 500,
    seconds: float = 5.0,
    workers: Sequence[int] = (0, 1),
    batch_size: int = 64,
    resampler: str = "reference",
    repeats: int = 1,
) -> list[Row]:
    """Times the long file, ``vggish extract`` per worker count and torchvggish, alternated.

    Returns:
        One row per case: the best wall seconds of the repeats, x realtime in the note and its
        throughput over the long file's as its ratio; a "not installed" row without torchvggish.
    """
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        root = Path(tmp)
        (root / "short").mkdir()
        log(f"extract: writing {files} files of {seconds:g} s and one long file")
        audio = make_short_files(root / "short", files, seconds)
        make_long_file(root / "long.wav", audio)
        cases: dict[str, Callable[[Path], float]] = {
            f"embed_file: 1 x {audio:.0f} s WAV 44.1 kHz": lambda _: bench_long(
                root / "long.wav", batch_size, resampler
            )
        }
        for n in workers:
            name = f"extract --workers {n}: {files} x {seconds:g} s mixed"
            cases[name] = partial(
                bench_extract, root / "short", workers=n, batch_size=batch_size, resampler=resampler
            )
        missing = []
        if installed("torchvggish"):
            name = f"torchvggish 0.2, one by one: {files} x {seconds:g} s"
            cases[name] = lambda _: bench_torchvggish(root / "short")
        else:
            missing.append(missing_row(SECTION, "torchvggish 0.2, one by one", "torchvggish"))
        times: dict[str, list[float]] = {name: [] for name in cases}
        for repeat in range(repeats):  # alternated, so that a busy moment hits every case alike
            for i, (name, case) in enumerate(cases.items()):
                log(f"extract: {name} (repeat {repeat + 1} of {repeats})")
                times[name].append(case(root / f"out{repeat}-{i}"))  # a fresh output folder each
    long_s = min(next(iter(times.values())))
    rows = []
    for name, t in times.items():
        best = min(t)
        note = (
            f"{audio / best:.1f}x realtime; batch {batch_size}, {resampler} resampler, best of {repeats}"
        )
        rows.append(Row(SECTION, name, best, "s", note, ratio=long_s / best))
    return rows + missing


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each short file")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="decoding processes to try")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--resampler", choices=("reference", "fast"), default="reference")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the cases; best of each")
    args = parser.parse_args()
    rows = run(args.files, args.seconds, args.workers, args.batch_size, args.resampler, args.repeats)
    print(f"# batch extraction: {args.files} short files vs one long file, random weights")
    print(f"# {machine_line()}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
