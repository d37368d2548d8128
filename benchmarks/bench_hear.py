"""What the HEAR API's hop costs: timestamp embeddings at 0.96 s, 0.25 s and 0.05 s side by side.

``vggish.hear.get_timestamp_embeddings`` on one batch of white-noise sounds (HEAR's input: a
(n_sounds, n_samples) float tensor at 16 kHz), for each hop, and ``get_scene_embeddings`` (the
mean at 0.96 s), and log-mel examples alone at 50 ms with the NumPy front end (what the HEAR API
uses on the CPU) and the PyTorch one on the CPU. Each case is called once to warm up, then the
cases take turns per repeat (a noisy neighbour slows them alike) and the median wall time is
reported, with embeddings per second of audio, examples/s, × realtime and the time relative to
the reference hop. The model is what ``vggish.hear.load_model`` gives (backend ``auto``: ONNX
Runtime on the CPU when installed), random weights (speed does not depend on their values). The
CPU's SIMD flags are printed, since the network is bound by float32 matrix-multiply throughput.

Usage: ``python benchmarks/bench_hear.py [--sounds 8] [--seconds 10] [--repeats 3]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import Row, alternate, load_bench_model, log, machine_line, markdown_table

from vggish import hear, params
from vggish.features.logmel import num_examples
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import ExampleSource, Waveform

SECTION = "hear"
HOPS = (0.96, 0.25, 0.05)  # the reference; a common compromise; HEAR's largest accepted
SIMD = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")


def cpu_flags() -> str:
    """The CPU's SIMD flags that matter to float32 GEMMs (from /proc/cpuinfo), or ``unknown``."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return "unknown"
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return " ".join(f for f in SIMD if f in have) or "none of " + " ".join(SIMD)
    return "unknown"


def front_end(audio: torch.Tensor, hop: float, device: torch.device | None) -> None:
    """Log-mel examples of every sound (NumPy with ``device`` None, else PyTorch there)."""
    options = EmbedOptions(hop_seconds=hop, pad=True)
    for sound in audio:
        ExampleSource(Waveform(sound, params.SAMPLE_RATE), options, device=device).collect()


def run(sounds: int = 8, seconds: float = 10.0, repeats: int = 3) -> list[Row]:
    """Wall time per hop for one call on ``sounds`` sounds of ``seconds`` each.

    Returns:
        A CPU-flags row, one row per hop and one for scene embeddings.
    """
    runtime = load_bench_model()
    models = {hop: hear.HearModel(runtime, hop_seconds=hop) for hop in HOPS}
    gen = torch.Generator().manual_seed(0)
    audio = torch.rand((sounds, int(seconds * params.SAMPLE_RATE)), generator=gen) * 2 - 1
    cases = {f"timestamp embeddings, hop {hop * 1000:g} ms": (hop, models[hop]) for hop in HOPS}
    fns = {name: (lambda m=m: hear.get_timestamp_embeddings(audio, m)) for name, (_, m) in cases.items()}
    scene = f"scene embeddings (mean at {hear.SCENE_HOP_SECONDS * 1000:g} ms)"
    fns[scene] = lambda: hear.get_scene_embeddings(audio, models[HOPS[-1]])
    fine = HOPS[-1]
    numpy_fe = f"log-mel examples only, hop {fine * 1000:g} ms, NumPy front end"
    torch_fe = f"log-mel examples only, hop {fine * 1000:g} ms, PyTorch front end on the CPU"
    fns[numpy_fe] = lambda: front_end(audio, fine, None)
    fns[torch_fe] = lambda: front_end(audio, fine, torch.device("cpu"))
    log(f"hear: {len(fns)} cases, {sounds} x {seconds:g} s, backend {runtime.backend}, {repeats} repeat(s)")
    times = alternate(fns, repeats)
    audio_seconds = sounds * seconds
    base = times[next(iter(cases))]
    rows = [Row(SECTION, "CPU flags", cpu_flags(), "", f"backend {runtime.backend}, batch 32")]
    hops = {**{name: hop for name, (hop, _) in cases.items()}, scene: hear.SCENE_HOP_SECONDS}
    hops |= {numpy_fe: fine, torch_fe: fine}
    for name, wall in times.items():
        examples = sounds * num_examples(audio.shape[1], hops[name], pad=True)
        note = (
            f"{examples / audio_seconds:.2f} embeddings per audio second, {examples / wall:.1f} examples/s, "
            f"{audio_seconds / wall:.1f}x realtime; {sounds} x {seconds:g} s, median of {repeats}"
        )
        rows.append(Row(SECTION, name, wall, "s", note, ratio=base / wall))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sounds", type=int, default=8, help="sounds per call (default 8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per sound (default 10)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    header = machine_line()
    rows = run(args.sounds, args.seconds, args.repeats)
    print("# HEAR API: one get_*_embeddings call per case (median wall time), random weights")
    print(f"# {header}\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
