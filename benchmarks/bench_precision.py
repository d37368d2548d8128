"""Lower precision on the CPU, measured: bf16 in PyTorch and int8 in ONNX Runtime against fp32.

The library offers one lower precision on the CPU, ``precision="bf16"``; int8 is not offered (its
uint8 features differ too often from fp32's). This script keeps both measurements, so that the
choice can be revisited.

Sections (``--sections``, both by default):

- ``bf16``: the network at ``--batch`` in PyTorch: fp32 as ``load_model(backend="torch")`` runs
  it (the built-in plan), bf16 weights and activations (``precision="bf16"``), and
  ``torch.autocast("cpu", torch.bfloat16)`` on the fp32 model with and without Winograd.
  Examples/s, and each one's deviation from the fp32 embeddings: max and RMS over the fp32
  embeddings' max |value|, and the uint8 postprocessed features (share of features that differ,
  share off by exactly one, largest step). Then which oneDNN implementations (ISA) a bf16
  forward pass runs, from ``ONEDNN_VERBOSE=1``.
- ``int8``: the library's all-direct fp32 graph (``export_onnx(..., plan=plans.DIRECT)``: every
  convolution an ONNX ``Conv``) quantized with
  ``onnxruntime.quantization.quantize_static`` (QDQ, per-channel int8 weights, uint8
  activations, MinMax calibration on the examples of half of the recordings); speed at
  ``--batch`` against the fp32 graph in ONNX Runtime, deviation (as above) on the examples of the
  other half. Needs the ``onnx`` extra.

Data: log-mel examples of the system's recordings (``/usr/share/sounds/alsa/*.wav``,
``/usr/share/sounds/freedesktop/stereo/*.oga``), files split alternately into calibration and
evaluation sets; random weights (speed and deviation do not need trained ones). Cases take turns
for ``--repeats`` rounds after a warm-up; medians.

Usage: ``python benchmarks/bench_precision.py [--sections bf16 int8] [--batch 32] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import alternate, log, machine_line
from bench_winograd import cpu_flags

import vggish
from vggish.network.model import VGGish

Runner = Callable[[np.ndarray], np.ndarray]


def recordings() -> list[str]:
    paths = sorted(
        glob.glob("/usr/share/sounds/alsa/*.wav") + glob.glob("/usr/share/sounds/freedesktop/stereo/*.oga")
    )
    if not paths:
        raise RuntimeError(
            "no recordings under /usr/share/sounds (apt-get install alsa-utils sound-theme-freedesktop)"
        )
    return paths


def examples_of(paths: list[str], hop_seconds: float) -> np.ndarray:
    """Log-mel examples of ``paths`` (padded, so that short sounds give one example too)."""
    return np.concatenate([vggish.wavfile_to_examples(p, hop_seconds=hop_seconds, pad=True) for p in paths])


SCALE_NOTE = (
    "fp32 embeddings' max |value| {scale:.3g}; {saturated:.0f} % of their uint8 features are 0 or 255 "
    "(random weights: AudioSet's PCA range is +-2; uint8 differences concern the others)"
)
_scale: dict[str, float] = {}


def deviation(model: VGGish, reference: np.ndarray, got: np.ndarray) -> str:
    """Max and RMS deviation over the reference's max |value|, and the uint8 features' differences."""
    scale = float(np.abs(reference).max())
    q = model.postprocess(reference).numpy()
    _scale.update(scale=scale, saturated=100 * float(np.mean((q == 0) | (q == 255))))
    d = np.abs(got.astype(np.float64) - reference)
    q_ref = model.postprocess(reference).numpy().astype(int)
    steps = np.abs(model.postprocess(got.astype(np.float32)).numpy().astype(int) - q_ref)
    return (
        f"{d.max() / scale:.2e} | {np.sqrt((d**2).mean()) / scale:.2e} | {100 * (steps > 0).mean():.2f} % | "
        f"{100 * (steps == 1).mean():.2f} % | {steps.max()}"
    )


def table(title: str, batch: int, speeds: Mapping[str, float], devs: Mapping[str, str], base: str) -> None:
    print(f"### {title}\n")
    print(SCALE_NOTE.format(**_scale) + "\n")
    print(
        "| case | examples/s | vs "
        + base
        + " | max dev | RMS dev | uint8 differ | uint8 off by 1 | max step |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, seconds in speeds.items():
        speed = batch / seconds
        print(f"| {name} | {speed:.1f} | {seconds and speeds[base] / seconds:.2f}x | {devs[name]} |")
    print()


def bf16_runners() -> dict[str, Runner]:
    """The fp32 and bf16 variants, each (N, 96, 64) float32 -> (N, 128) float32."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32 = vggish.load_model("random", backend="torch")
        bf16 = vggish.load_model("random", backend="torch", precision="bf16")

    def autocast(winograd: bool, x: np.ndarray) -> np.ndarray:
        fp32.winograd = winograd
        try:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                out: np.ndarray = fp32(torch.from_numpy(x)).float().numpy()
                return out
        finally:
            fp32.winograd = True

    return {
        "fp32, load_model (the built-in plan)": fp32.infer,
        "bf16 weights + activations (precision='bf16')": bf16.infer,
        "fp32 model under autocast(bf16)": partial(autocast, False),
        "fp32 model + Winograd under autocast(bf16)": partial(autocast, True),
    }


def bf16_section(batch: int, repeats: int) -> None:
    x = examples_of(recordings(), 0.24)
    log(f"bf16: {len(x)} examples of real recordings, batch {batch}")
    runners = bf16_runners()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vggish.load_model("random", backend="torch").network
    base = next(iter(runners))
    reference = runners[base](x)
    devs = {name: deviation(model, reference, run(x)) for name, run in runners.items()}
    speeds = alternate(
        {name: partial(run, np.resize(x, (batch, 96, 64))) for name, run in runners.items()}, repeats
    )
    table(f"bf16 in PyTorch, batch {batch}, {len(x)} examples for deviations", batch, speeds, devs, base)
    print("oneDNN implementations in a bf16 forward pass (ONEDNN_VERBOSE=1):\n")
    for line, count in onednn_implementations().most_common():
        print(f"- {count} x {line}")
    print()


def onednn_implementations() -> Counter[str]:
    """``primitive kind, implementation`` of each oneDNN call in one bf16 forward pass at batch 2."""
    code = (
        "import warnings, torch, vggish\n"
        "warnings.simplefilter('ignore')\n"
        "m = vggish.load_model('random', backend='torch', precision='bf16')\n"
        "m.infer(torch.zeros(2, 96, 64).numpy())\n"
    )
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    found: Counter[str] = Counter()
    for line in out.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields and len(fields) > 6:
            i = fields.index("exec")
            found[f"{fields[i + 2]} {fields[i + 3]} ({fields[i + 4]})"] += 1
        elif "isa" in line.lower() and "onednn_verbose" in line:
            found[line.split(",", 2)[-1].strip()] += 1
    return found


def int8_section(batch: int, repeats: int, threads: int) -> None:
    from vggish.network import plans
    from vggish.network.onnx import export_onnx

    paths = recordings()
    calibration, held_out = examples_of(paths[0::2], 0.24), examples_of(paths[1::2], 0.48)
    log(f"int8: {len(calibration)} calibration examples, {len(held_out)} held-out examples")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vggish.load_model("random", backend="torch").network
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        folder = Path(tmp)
        fp32 = export_onnx(model, folder / "direct.onnx", plan=plans.DIRECT)
        log("int8: quantizing the all-direct graph (QDQ, per channel, MinMax)")
        int8 = quantize(fp32, folder / "direct-int8.onnx", calibration)
        runners = {
            "fp32, all-direct graph": session_runner(fp32, threads),
            "int8 QDQ per-channel MinMax, all-direct graph": session_runner(int8, threads),
        }
        base = next(iter(runners))
        reference = runners[base](held_out)
        devs = {name: deviation(model, reference, run(held_out)) for name, run in runners.items()}
        x = np.resize(held_out, (batch, 96, 64))
        speeds = alternate({name: partial(run, x) for name, run in runners.items()}, repeats)
    table(
        f"int8 in ONNX Runtime, batch {batch}, {len(held_out)} held-out examples", batch, speeds, devs, base
    )


def quantize(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    """``fp32`` quantized by ONNX Runtime (static QDQ: int8 per-channel weights, uint8
    activations), calibrated on ``calibration`` (N, 96, 64) in batches of 8."""
    import onnx
    from onnxruntime import quantization as q

    name = onnx.load(str(fp32), load_external_data=False).graph.input[0].name
    batches = [calibration[i : i + 8].astype(np.float32) for i in range(0, len(calibration) - 7, 8)]

    class Reader(q.CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.items = iter([{name: b} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    q.quantize_static(
        str(fp32), str(out), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
        activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
        calibrate_method=q.CalibrationMethod.MinMax,
    )  # fmt: skip
    return out


def session_runner(path: Path, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return out

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", nargs="+", default=["bf16", "int8"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# {machine_line()}\n# {cpu_flags()}\n")
    if "bf16" in args.sections:
        bf16_section(args.batch, args.repeats)
    if "int8" in args.sections:
        int8_section(args.batch, args.repeats, args.threads)


if __name__ == "__main__":
    main()
