"""Winograd F(4x4, 3x3) against direct convolutions, per layer and for the whole network: the
measurement behind the built-in per-layer plans (``vggish.network.winograd.TORCH_TILES`` and
``ONNX_TILES``), for revisiting them on another machine.

Sections (``--sections``, all by default):

- ``layers``: each VGGish convolution (+ReLU, + its 2x2 max-pool) at ``--batches`` on random
  data: PyTorch direct convolution in NCHW, in channels_last, and chunked in NHWC
  (``winograd.conv3x3_relu_direct``), ``winograd.conv3x3_relu`` (F4, NHWC); ONNX Runtime running
  the library's graph of the whole network (:mod:`vggish.network.onnx`) with its built-in plan but
  this layer direct (``Conv``) or F4, so that their difference is the layer's.
  Milliseconds per batch (median) and speed-up vs PyTorch channels_last / ORT ``Conv``.
- ``network``: the whole network (random weights) at batch ``--network-batch`` with each plan:
  all direct; the built-in plan of each runtime; and the best algorithm per layer and runtime
  from the ``layers`` section of this run (``--plan`` names one for PyTorch instead), in PyTorch
  and ONNX Runtime. Examples/s and the ratio to the
  direct-convolution ceiling: float32 GEMM GFLOP/s (``torch.mm`` 2048 x 2048, timed in the same
  rotation) / 1.73 GFLOP per example.
- ``accuracy``: the float32 deviation of each algorithm per layer from a float64 direct
  convolution, on the activations that real recordings (``/usr/share/sounds``) produce in the
  random-weight network; max and RMS relative to the output's max |value|.

Every case is run once to warm up; then the cases take turns for ``--repeats`` rounds (a noisy
neighbour slows all of them alike) and the medians are reported, with ``--threads`` intra-op
threads for PyTorch and ONNX Runtime (default 2).

Usage: ``python benchmarks/bench_winograd.py [--sections layers network accuracy]
[--batches 8 32 64] [--repeats 9] [--threads 2]`` (``pip install -e '.[onnx]'`` for the ORT columns).
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import statistics
import subprocess
import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np
import torch
from _common import GEMM_SIZE, MODEL_GFLOP_PER_EXAMPLE, alternate_times, log, machine_line, onnx_available
from torch import nn
from torch.nn import functional as F
from torch.utils import mkldnn as torch_mkldnn

import vggish
from vggish.network import winograd
from vggish.network.model import CONV_LAYERS, POOL_AFTER, VGGish

TORCH_ALGOS = ("direct NCHW", "direct channels_last", "direct chunked", "F4")
ORT_ALGOS = ("direct", "F4")
TILE_OF = {"F4": 4}
NHWC_ALGOS = ("direct chunked", *TILE_OF)  # algorithms with NHWC input and output
DIRECT = "direct channels_last"
# (scope, C_in, C_out, height, width of the input)
LAYER_SHAPES = tuple(
    (name, c_in, c_out, 96 >> i, 64 >> i)
    for name, c_in, c_out, i in zip(
        (n for n, _, _ in CONV_LAYERS),
        (c for _, c, _ in CONV_LAYERS),
        (k for _, _, k in CONV_LAYERS),
        (0, 1, 2, 2, 3, 3),
        strict=True,
    )
)
CONV_NAMES = tuple(n for n, _, _ in CONV_LAYERS)
ALL_DIRECT = dict.fromkeys(CONV_NAMES, DIRECT)


def built_in(tiles: Mapping[str, int], direct: str) -> dict[str, str]:
    """A runtime's built-in plan (a table of tile sizes, 0: direct) in this script's names."""
    return {name: f"F{tiles[name]}" if tiles[name] else direct for name in CONV_NAMES}


# runtime -> plan name -> layer -> algorithm
PLANS: dict[str, dict[str, dict[str, str]]] = {
    "torch": {"all direct": ALL_DIRECT, "built-in": built_in(winograd.TORCH_TILES, "direct chunked")},
    "ort": {"all direct": ALL_DIRECT, "built-in": built_in(winograd.ONNX_TILES, DIRECT)},
}
Fn = Callable[[], object]


def conv_relu_pool(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, pool: bool) -> torch.Tensor:
    """Direct ``relu(conv3x3(x) + bias)`` (+ 2x2 max-pool) in ``x``'s layout."""
    y = F.relu(F.conv2d(x, weight, bias, padding=1))
    return F.max_pool2d(y, 2) if pool else y


class Network(nn.Module):
    """VGGish's network with an algorithm per convolution: (N, 96, 64) -> (N, 128).

    ``plan`` maps each conv scope to one of :data:`TORCH_ALGOS`. Activations stay NHWC from the
    first Winograd layer on (a direct layer then sees a channels_last view), as in
    ``VGGish.network``; the flatten follows TensorFlow's NHWC order. ``onednn_fc`` runs the fully
    connected layers through oneDNN (``torch.utils.mkldnn``, eager PyTorch only) instead of the
    BLAS that ``F.linear`` calls (MKL in the PyPI wheels), which is slow on skinny products.
    """

    def __init__(self, model: VGGish, plan: Mapping[str, str], onednn_fc: bool = False) -> None:
        super().__init__()
        self.model, self.plan = model, dict(plan)
        linear = [model.fc1_1, model.fc1_2, model.fc2]
        self.fcs = [torch_mkldnn.to_mkldnn(copy.deepcopy(fc)) if onednn_fc else fc for fc in linear]  # type: ignore[no-untyped-call]
        for name, algo in self.plan.items():
            weight = getattr(model, name).weight.detach()
            self.register_buffer(f"b_{name}", getattr(model, name).bias.detach())
            if algo in TILE_OF:
                self.register_buffer(f"k_{name}", winograd.transform_kernel(weight, TILE_OF[algo]))
            elif algo == "direct NCHW":
                self.register_buffer(f"w_{name}", weight.contiguous())
            else:
                self.register_buffer(f"w_{name}", weight.contiguous(memory_format=torch.channels_last))

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x, nhwc = examples.unsqueeze(1), False
        for name in CONV_NAMES:
            algo, pool = self.plan[name], name in POOL_AFTER
            if algo in NHWC_ALGOS:
                if not nhwc:
                    x, nhwc = x.permute(0, 2, 3, 1).contiguous(), True
                x = nhwc_layer(x, self, name, algo, pool)
                continue
            if nhwc:
                x, nhwc = x.permute(0, 3, 1, 2), False
            x = x.contiguous() if algo == "direct NCHW" else x.contiguous(memory_format=torch.channels_last)
            x = conv_relu_pool(x, self.get_buffer(f"w_{name}"), self.get_buffer(f"b_{name}"), pool)
        x = (x if nhwc else x.permute(0, 2, 3, 1)).reshape(x.shape[0], -1)
        x = F.relu(self.fcs[0](x))
        x = F.relu(self.fcs[1](x))
        out: torch.Tensor = self.fcs[2](x)
        return out


def nhwc_layer(x: torch.Tensor, owner: nn.Module, name: str, algo: str, pool: bool) -> torch.Tensor:
    """One NHWC layer; ``owner`` holds its bias as ``b_<name>`` and its Winograd kernels as
    ``k_<name>`` or its weights as ``w_<name>``."""
    bias = owner.get_buffer(f"b_{name}")
    if algo in TILE_OF:
        return winograd.conv3x3_relu(x, owner.get_buffer(f"k_{name}"), bias, pool, TILE_OF[algo])
    return winograd.conv3x3_relu_direct(x, owner.get_buffer(f"w_{name}"), bias, pool)


class Layer(nn.Module):
    """One convolution (+ReLU, +pool) with one algorithm, for the per-layer table and its export.

    Input and output are NHWC for :data:`NHWC_ALGOS`, NCHW (in the algorithm's layout) otherwise.
    """

    def __init__(self, conv: nn.Conv2d, algo: str, pool: bool) -> None:
        super().__init__()
        self.algo, self.pool = algo, pool
        self.register_buffer("b_conv", conv.bias.detach() if conv.bias is not None else None)
        if algo in TILE_OF:
            self.register_buffer("k_conv", winograd.transform_kernel(conv.weight.detach(), TILE_OF[algo]))
        fmt = torch.contiguous_format if algo == "direct NCHW" else torch.channels_last
        self.register_buffer("w_conv", conv.weight.detach().contiguous(memory_format=fmt))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.algo in NHWC_ALGOS:
            return nhwc_layer(x, self, "conv", self.algo, self.pool)
        return conv_relu_pool(x, self.get_buffer("w_conv"), self.get_buffer("b_conv"), self.pool)


def layer_input(algo: str, batch: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Random non-negative activations (like a ReLU's) in ``algo``'s layout."""
    x = torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(seed)).relu()
    if algo in NHWC_ALGOS:
        return x.permute(0, 2, 3, 1).contiguous()
    return x.contiguous(memory_format=torch.channels_last) if algo == DIRECT else x.contiguous()


def ort_network(model: VGGish, layers: Mapping[str, str], threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """ONNX Runtime running the library's graph of the network (:mod:`vggish.network.onnx`) with
    ``layers``' algorithm per convolution (:data:`DIRECT` or ``F4``): (N, 96, 64) -> (N, 128)."""
    from vggish.network.onnx import OnnxVGGish
    from vggish.network.plans import Plan

    plan = Plan(tuple("winograd4" if layers[name] == "F4" else "direct" for name in CONV_NAMES))
    return OnnxVGGish.from_network(model, plan=plan, threads=threads)


def timings(fns: Mapping[str, Fn], repeats: int) -> dict[str, tuple[float, float]]:
    """(median, best) wall seconds per case of :func:`alternate_times` (one warm-up each, then
    the cases take turns): the best of the rounds shows what an idle machine does, the median
    what this one did (see the load average printed)."""
    times = alternate_times(fns, repeats)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def layer_cases(
    model: VGGish, batch: int, ort: bool, threads: int, layers: Sequence[str]
) -> dict[str, dict[str, Fn]]:
    """Layer scope -> case name (``torch <algo>`` / ``ort <algo>``) -> a call computing one batch.

    PyTorch runs the layer alone. ONNX Runtime runs the whole network with its built-in plan but
    this layer's algorithm, so that the difference between its cases is the layer's."""
    cases: dict[str, dict[str, Fn]] = {}
    for name, c, _, h, w in LAYER_SHAPES:
        if name not in layers:
            continue
        conv, pool = getattr(model, name), name in POOL_AFTER
        fns: dict[str, Fn] = {}
        for algo in TORCH_ALGOS:
            layer, x = Layer(conv, algo, pool), layer_input(algo, batch, c, h, w)
            fns[f"torch {algo}"] = partial(layer, x)
        if ort:
            examples = real_examples(batch)
            for algo in ORT_ALGOS:
                plan = {**PLANS["ort"]["built-in"], name: DIRECT if algo == "direct" else algo}
                fns[f"ort {algo}"] = partial(ort_network(model, plan, threads), examples)
        cases[name] = fns
    return cases


def layers_section(
    model: VGGish, batches: Sequence[int], repeats: int, threads: int, layers: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Prints the per-layer table; returns the fastest algorithm (median) per layer and runtime
    (``torch``, ``ort``) at batch 32, or at the largest batch measured, as network plans."""
    lines = [
        "| layer | batch | case | ms (median) | vs direct | ms (best) | vs direct (best) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    best: dict[str, dict[str, str]] = {"torch": {}, "ort": {}}
    key_batch = 32 if 32 in batches else max(batches)
    for batch in batches:
        log(f"layers: batch {batch}")
        for name, fns in layer_cases(model, batch, onnx_available(), threads, layers).items():
            with torch.inference_mode():
                t = timings(fns, repeats)
            for case, (med, low) in t.items():
                base = t["ort direct" if case.startswith("ort") else f"torch {DIRECT}"]
                lines.append(
                    f"| {name} | {batch} | {case} | {1e3 * med:.1f} | {base[0] / med:.2f}x | "
                    f"{1e3 * low:.1f} | {base[1] / low:.2f}x |"
                )
            if batch != key_batch:
                continue
            for runtime, plan in best.items():
                cases = {c.split(" ", 1)[1]: s[0] for c, s in t.items() if c.startswith(runtime)}
                if cases:
                    fastest = min(cases, key=cases.__getitem__)
                    plan[name] = DIRECT if fastest == "direct" else fastest
    print("\n".join(lines) + "\n")
    return {runtime: plan for runtime, plan in best.items() if len(plan) == len(CONV_NAMES)}


def network_section(
    model: VGGish,
    plans: Mapping[str, Mapping[str, Mapping[str, str]]],
    batch: int,
    repeats: int,
    threads: int,
) -> None:
    """Prints examples/s of the whole network per runtime and plan, and the ratio to the ceiling.

    Args:
        plans: runtime (``torch``, ``ort``) -> plan name -> layer -> algorithm.
    """
    x = torch.from_numpy(real_examples(batch))
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(GEMM_SIZE, GEMM_SIZE, generator=gen), torch.randn(GEMM_SIZE, GEMM_SIZE, generator=gen)
    fns: dict[str, Fn] = {"GEMM": partial(torch.mm, a, b)}
    for runtime, runtime_plans in plans.items():
        for plan_name, plan in runtime_plans.items():
            if runtime == "torch":
                fns[f"torch | {plan_name}"] = partial(Network(model, plan).eval(), x)
                if plan_name == "best per layer":
                    fast_fc = Network(model, plan, onednn_fc=True).eval()
                    fns["torch | best per layer, fc through oneDNN"] = partial(fast_fc, x)
            elif onnx_available():
                fns[f"ort | {plan_name}"] = partial(ort_network(model, plan, threads), x.numpy())
    log(f"network: batch {batch}, {len(fns)} cases, {repeats} rounds")
    with torch.inference_mode():
        t = timings(fns, repeats)
    gemm = t.pop("GEMM")
    ceilings = [2 * GEMM_SIZE**3 / s / 1e9 / MODEL_GFLOP_PER_EXAMPLE for s in gemm]
    print(
        f"float32 GEMM {ceilings[0] * MODEL_GFLOP_PER_EXAMPLE:.0f} GFLOP/s (best "
        f"{ceilings[1] * MODEL_GFLOP_PER_EXAMPLE:.0f}) -> direct-convolution ceiling "
        f"{ceilings[0]:.1f} examples/s (best {ceilings[1]:.1f})\n"
    )
    lines = [
        "| runtime | plan | examples/s (median) | vs ceiling | examples/s (best) | vs best ceiling |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for case, (med, low) in t.items():
        runtime, plan_name = case.split(" | ")
        lines.append(
            f"| {runtime} | {plan_name} | {batch / med:.1f} | {batch / med / ceilings[0]:.2f}x | "
            f"{batch / low:.1f} | {batch / low / ceilings[1]:.2f}x |"
        )
    print("\n".join(lines) + "\n")
    for runtime, runtime_plans in plans.items():
        for plan_name, plan in runtime_plans.items():
            print(f"- {runtime}, {plan_name}: " + ", ".join(f"{k} {v}" for k, v in plan.items()))
    print()


def real_examples(count: int) -> np.ndarray:
    """``count`` log-mel examples of the system's sound files (repeated if there are fewer)."""
    paths = sorted(
        glob.glob("/usr/share/sounds/alsa/*.wav") + glob.glob("/usr/share/sounds/freedesktop/stereo/*.oga")
    )
    if not paths:
        raise RuntimeError(
            "no recordings under /usr/share/sounds (apt-get install alsa-utils sound-theme-freedesktop)"
        )
    examples = np.concatenate([vggish.wavfile_to_examples(p) for p in paths])
    return np.resize(examples, (count, *examples.shape[1:])).astype(np.float32)


def accuracy_section(model: VGGish, count: int) -> None:
    """Prints the float32 deviation of each algorithm from float64 direct convolution per layer."""
    torch.set_grad_enabled(False)
    x = torch.from_numpy(real_examples(count)).double().unsqueeze(1)
    lines = ["| layer | algorithm | max dev / max abs | RMS dev / max abs |", "|---|---|---:|---:|"]
    for name in CONV_NAMES:
        conv, pool = getattr(model, name), name in POOL_AFTER
        ref = conv_relu_pool(x, conv.weight.double(), conv.bias.double(), pool)
        scale = float(ref.abs().max())
        for algo in ("direct channels_last", "F4"):
            got = Layer(conv, algo, pool)(layer_input_from(x.float(), algo)).double()
            got = got.permute(0, 3, 1, 2) if algo in NHWC_ALGOS else got
            dev = (got - ref).abs() / scale
            lines.append(
                f"| {name} | {algo} | {float(dev.max()):.2e} | {float(dev.pow(2).mean().sqrt()):.2e} |"
            )
        x = ref
    print("\n".join(lines) + "\n")


def layer_input_from(x: torch.Tensor, algo: str) -> torch.Tensor:
    return (
        x.permute(0, 2, 3, 1).contiguous()
        if algo in NHWC_ALGOS
        else x.contiguous(memory_format=torch.channels_last)
    )


def cpu_flags() -> str:
    """``lscpu``'s model name and the SIMD flags that matter here."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    wanted = [f for f in flags if f.startswith(("avx", "fma", "amx", "f16c"))]
    return f"{fields.get('Model name', '?').strip()}; flags: {' '.join(wanted)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", nargs="+", default=["layers", "network", "accuracy"])
    parser.add_argument("--batches", type=int, nargs="+", default=[32])
    parser.add_argument("--layers", nargs="+", default=list(CONV_NAMES), choices=CONV_NAMES)
    parser.add_argument("--network-batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--plan", nargs=6, metavar="ALGO", help=f"best-mix plan, one of {TORCH_ALGOS} per conv layer"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = vggish.load_model("random", backend="torch").network  # the plain module
    print(f"# {machine_line()}\n# {cpu_flags()}\n")
    best: dict[str, dict[str, str]] = {}
    if "layers" in args.sections:
        best = layers_section(model, args.batches, args.repeats, args.threads, args.layers)
    if args.plan:
        best = {"torch": dict(zip(CONV_NAMES, args.plan, strict=True))}
    if "network" in args.sections:
        plans = {
            runtime: {**PLANS[runtime], **({"best per layer": best[runtime]} if runtime in best else {})}
            for runtime in ("torch", "ort")
        }
        network_section(model, plans, args.network_batch, args.repeats, args.threads)
    if "accuracy" in args.sections:
        accuracy_section(model, 64)
    print(f"# load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
