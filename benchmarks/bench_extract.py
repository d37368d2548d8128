"""Batch extraction speed, side by side in one run: many short files vs one long file.

``vggish extract`` on N short files (mixed rates 16 / 22.05 / 44.1 / 48 kHz and formats WAV /
FLAC / Ogg Vorbis) against ``model.embed_file`` on one 44.1 kHz WAV as long as all of them
together. The short files pay for opening, probing and flushing each file, the examples lost at
each file's end, decoding in worker processes and writing Parquet; packing their examples into
full batches is what keeps the model as busy as on the long file. The target is >= 80 % of the
long file's throughput. Both use the same random weights (speed needs no trained ones); the batch
figure includes starting the worker processes and loading the model.

Usage: ``python benchmarks/bench_extract.py [--files 500] [--seconds 5] [--workers 0 1] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

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
    """Wall seconds of ``model.embed_file`` on the long file."""
    import vggish

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vggish.load_model("random")
    start = time.perf_counter()
    model.embed_file(path, batch_size=batch_size, resampler=resampler)  # type: ignore[arg-type]
    return time.perf_counter() - start


def bench_extract(folder: Path, output: Path, workers: int, batch_size: int, resampler: str) -> float:
    """Wall seconds of a fresh ``vggish extract`` (Parquet) over ``folder``."""
    from vggish.extract import ExtractOptions, extract, find_inputs
    from vggish.pipeline import EmbedOptions

    embed = EmbedOptions(batch_size=batch_size, resampler=resampler)  # type: ignore[arg-type]
    options = ExtractOptions(embed=embed, workers=workers)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = extract(find_inputs([str(folder)]), output, "random", options)
    seconds = time.perf_counter() - start
    if summary.files_failed:
        raise RuntimeError(f"{summary.files_failed} benchmark files failed; see {output}/_failures.jsonl")
    return seconds


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each short file")
    parser.add_argument("--workers", type=int, nargs="+", help="decoding processes to try (default: 0 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--resampler", choices=("reference", "fast"), default="reference")
    parser.add_argument("--repeats", type=int, default=1, help="alternate the cases; best of each")
    args = parser.parse_args()
    workers = args.workers or [0, 1]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "short").mkdir()
        audio = make_short_files(root / "short", args.files, args.seconds)
        make_long_file(root / "long.wav", audio)
        long_times: list[float] = []
        batch_times: dict[int, list[float]] = {n: [] for n in workers}
        for repeat in range(args.repeats):  # alternated, so that a busy moment hits every case alike
            long_times.append(bench_long(root / "long.wav", args.batch_size, args.resampler))
            for n in workers:
                out = root / f"out{repeat}-{n}"
                batch_times[n].append(bench_extract(root / "short", out, n, args.batch_size, args.resampler))
        long_s = min(long_times)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; batch size {args.batch_size}, resampler {args.resampler}, "
        f"best of {args.repeats}"
    )
    print(f"{'case':<44} {'audio s':>9} {'wall s':>8} {'x realtime':>11} {'vs long':>8}")
    rows = [(f"embed_file: 1 x {audio:.0f} s WAV 44.1 kHz", long_s)]
    for n, times in batch_times.items():
        rows.append((f"extract --workers {n}: {args.files} x {args.seconds:g} s mixed", min(times)))
    for name, seconds in rows:
        print(f"{name:<44} {audio:>9.0f} {seconds:>8.1f} {audio / seconds:>11.1f} {long_s / seconds:>8.0%}")


if __name__ == "__main__":
    main()
