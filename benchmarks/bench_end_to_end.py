"""End-to-end speed, side by side in one run: ``vggish`` vs torchvggish 0.2 (PyPI) on one file.

Every pipeline decodes a 2-minute 44.1 kHz stereo WAV, resamples it to 16 kHz (resampy
kaiser_best for torchvggish; our reference and fast resamplers), computes log-mel examples and
runs the network: ours with the torch backend and, when ``vggish[onnx]`` is installed, the onnx
backend. Speed needs no trained weights: ours uses its random weights (saved to a file),
torchvggish's model is built uninitialised (its pretrained weights would be fetched from the
internet). Each pipeline runs once to warm up, then the pipelines take turns for ``--repeats``
rounds; the median is reported.

Usage: ``python benchmarks/bench_end_to_end.py [--seconds 120] [--repeats 3] [--backends torch onnx]``
(``pip install -e '.[bench,onnx]'`` first for torchvggish, resampy and ONNX Runtime).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import soundfile as sf
import torch
from _common import (
    Row,
    alternate,
    installed,
    load_bench_model,
    log,
    machine_line,
    markdown_table,
    missing_row,
    onnx_available,
)

SECTION = "end-to-end"
PROFILE_SECTION = "end-to-end profile"  # where embed_file's time goes
TORCHVGGISH = "torchvggish 0.2 (resampy + eager model)"
RESAMPLERS = ("reference", "fast")


def make_clip(path: Path, seconds: float, rate: int = 44100) -> None:
    """Stereo noise plus a chirp, int16 WAV."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (300 + 20 * t) * t)
    stereo = np.stack(
        [tone + 0.05 * rng.standard_normal(t.size), tone - 0.05 * rng.standard_normal(t.size)], 1
    )
    sf.write(path, (stereo * 32767).astype(np.int16), rate, subtype="PCM_16")


def ours(path: Path, backends: Sequence[str]) -> dict[str, Callable[[], object]]:
    """``model.embed_file(path)`` per backend and resampler, one model per backend."""
    out: dict[str, Callable[[], object]] = {}
    for backend in backends:
        model = load_bench_model(backend=backend)
        for resampler in RESAMPLERS:
            name = f"vggish embed_file, {backend}, {resampler} resampler"
            out[name] = partial(model.embed_file, path, resampler=resampler)
    return out


def stage_rows(path: Path, backend: str, repeats: int) -> list[Row]:
    """Where ``embed_file``'s time goes: each stage of the pipeline timed on its own (reference
    resampler): decode + mix to mono, resample to 16 kHz, log-mel examples, the network."""
    from vggish.audio import decode as audio
    from vggish.audio.resample import StreamingResampler
    from vggish.features.logmel import FrameStream

    model = load_bench_model(backend=backend)
    info, blocks = audio.stream(path)
    mono = np.concatenate([audio.to_mono(b) for b in blocks])
    at_16k = StreamingResampler(info.sample_rate, 16000, "reference").process(mono)
    examples = FrameStream().push(at_16k)
    batch = model.default_batch_size

    def decode() -> object:
        _, chunks = audio.stream(path)
        return [audio.to_mono(b) for b in chunks]

    def resample() -> object:
        r = StreamingResampler(info.sample_rate, 16000, "reference")
        return r.process(mono), r.flush()

    def network() -> object:
        return [model.infer(examples[i : i + batch]) for i in range(0, examples.shape[0], batch)]

    stages = {
        "decode + mono": decode,
        "resample 44.1 -> 16 kHz (reference)": resample,
        "log-mel examples": partial(FrameStream().push, at_16k),
        f"network ({model.backend}, batch {batch})": network,
    }
    log(f"end to end: profile of {len(stages)} stages, {repeats} repeat(s)")
    times = alternate(stages, repeats)
    total = sum(times.values())
    return [
        Row(PROFILE_SECTION, name, secs, "s", f"{secs / total:.0%} of the stages' sum")
        for name, secs in times.items()
    ]


def torchvggish_pipeline(path: Path) -> Callable[[], object]:
    """torchvggish 0.2's own steps: ``wavfile_to_examples`` (resampy) and its eager model."""
    from torchvggish import torchvggish as tv
    from torchvggish import vggish_input

    model = tv._vgg(postprocess=False).eval()

    def run() -> object:
        examples = vggish_input.wavfile_to_examples(str(path))
        with torch.no_grad():
            return model(examples)

    return run


def run(seconds: float = 120.0, repeats: int = 3, backends: Sequence[str] = ("torch", "onnx")) -> list[Row]:
    """Times every pipeline on one clip of ``seconds``.

    Returns:
        One row per pipeline: median seconds, x realtime in the note and the speed-up against
        torchvggish as its ratio; a "not installed" row for each missing optional pipeline.
    """
    rows: list[Row] = []
    if "onnx" in backends and not onnx_available():
        rows.append(missing_row(SECTION, "vggish embed_file, onnx", "onnxruntime"))
        backends = [b for b in backends if b != "onnx"]
    with TemporaryDirectory(prefix="bench_end_to_end_") as tmp:
        path = Path(tmp) / "clip.wav"
        make_clip(path, seconds)
        pipelines = ours(path, backends)
        if installed("torchvggish"):
            pipelines[TORCHVGGISH] = torchvggish_pipeline(path)
        else:
            rows.append(missing_row(SECTION, TORCHVGGISH, "torchvggish"))
        log(f"end to end: {len(pipelines)} pipelines on {seconds:g} s, {repeats} repeat(s)")
        times = alternate(pipelines, repeats)
        profile = stage_rows(path, backends[-1], repeats)
    reference = times.get(TORCHVGGISH)
    for name, secs in times.items():
        note = f"{seconds / secs:.1f}x realtime; {seconds:g} s 44.1 kHz stereo, median of {repeats}"
        rows.append(Row(SECTION, name, secs, "s", note, ratio=reference / secs if reference else None))
    return rows + profile


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="clip length (default 120)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (median)")
    parser.add_argument("--backends", nargs="+", choices=("torch", "onnx"), default=["torch", "onnx"])
    args = parser.parse_args()
    rows = run(args.seconds, args.repeats, args.backends)
    print(f"# end to end: {args.seconds:g} s of 44.1 kHz stereo WAV -> embeddings")
    print(f"# {machine_line()}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
