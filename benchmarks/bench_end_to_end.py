"""End-to-end speed, side by side in one run: ``vggish`` vs torchvggish 0.2 (PyPI) on one file.

Both pipelines decode a 2-minute 44.1 kHz stereo WAV, resample it to 16 kHz (resampy kaiser_best
for torchvggish; our reference and fast resamplers), compute log-mel examples and run the network.
Speed needs no trained weights: ours uses its random weights, torchvggish's model is built
uninitialised (its pretrained weights would be fetched from the internet).

Usage: ``python benchmarks/bench_end_to_end.py [--seconds 120] [--repeats 3]``
(``pip install '.[bench]'`` first for torchvggish and resampy).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def make_clip(path: Path, seconds: float, rate: int = 44100) -> None:
    """Stereo noise plus a chirp, int16 WAV."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (300 + 20 * t) * t)
    stereo = np.stack(
        [tone + 0.05 * rng.standard_normal(t.size), tone - 0.05 * rng.standard_normal(t.size)], 1
    )
    sf.write(path, (stereo * 32767).astype(np.int16), rate, subtype="PCM_16")


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(path: Path, resampler: str) -> Callable[[], object]:
    import vggish

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vggish.load_model("random")
    return lambda: model.embed_file(path, resampler=resampler)  # type: ignore[arg-type]


def torchvggish_pipeline(path: Path) -> Callable[[], object] | None:
    try:
        from torchvggish import torchvggish as tv
        from torchvggish import vggish_input
    except ImportError:
        return None
    model = tv._vgg(postprocess=False).eval()

    def run() -> object:
        examples = vggish_input.wavfile_to_examples(str(path))
        with torch.no_grad():
            return model(examples)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="clip length (default 120)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.wav"
        make_clip(path, args.seconds)
        rows: list[tuple[str, float]] = []
        for resampler in ("reference", "fast"):
            rows.append((f"vggish embed, {resampler} resampler", timed(ours(path, resampler), args.repeats)))
        baseline = torchvggish_pipeline(path)
        if baseline is not None:
            rows.append(("torchvggish 0.2 (resampy + eager model)", timed(baseline, args.repeats)))
    print_table(rows, args.seconds)


def print_table(rows: list[tuple[str, float]], seconds: float) -> None:
    print(f"# end to end: {seconds:.0f} s of 44.1 kHz stereo WAV -> embeddings")
    print(
        f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, numpy {np.__version__}"
    )
    reference = dict(rows).get("torchvggish 0.2 (resampy + eager model)")
    print(f"| {'pipeline':<42} | {'seconds':>8} | {'x realtime':>10} | {'vs torchvggish':>14} |")
    print(f"|{'-' * 44}|{'-' * 10}|{'-' * 12}|{'-' * 16}|")
    for name, secs in rows:
        ratio = f"{reference / secs:.2f}x" if reference else "n/a"
        print(f"| {name:<42} | {secs:8.2f} | {seconds / secs:10.1f} | {ratio:>14} |")


if __name__ == "__main__":
    main()
