"""Per-machine tuning: the fastest algorithm for each layer here, and the batch size.

Which algorithm wins a layer depends on the CPU (its vector width, caches and matrix-multiply
throughput): F(4x4) Winograd beats direct convolutions from conv2 on with 2 AVX-512 cores, but
not everywhere. So at first use on a machine (``load_model(tune="auto")``, the default), for the
model's backend (eager PyTorch, or ONNX Runtime), precision and thread count:

1. each convolution layer's candidate algorithms (:mod:`vggish.plans`) are timed on synthetic
   activations of the layer's real shape (ReLU'd Gaussian noise, a batch of 32) with the model's
   own weights; the fully connected layers' too (PyTorch: ``F.linear`` or oneDNN). The
   candidates take turns for :data:`ROUNDS` rounds after a warm-up; medians. ONNX Runtime times
   one small exported graph per layer and algorithm.
2. a candidate replaces the layer's default (:data:`vggish.plans.TORCH_DEFAULT`,
   :data:`~vggish.plans.ONNX_DEFAULT`) only when it is at least :data:`MARGIN` faster, and never
   when its float32 output is off a float64 direct convolution by more than
   :data:`ACCURACY_BOUND` of the output's scale;
3. the whole network with that plan is timed at each of :data:`BATCH_SIZES`; another batch size
   replaces :data:`DEFAULT_BATCH_SIZE` by the same margin.

The result (:class:`Tuning`) is kept as JSON in ``cache_dir/tuning/``, keyed by the backend,
precision, thread count, the CPU (:func:`vggish.cpus.cpu_identity`) and the versions of vggish,
torch and onnxruntime, and reused afterwards; a file that cannot be read is ignored with a
warning and rewritten. ``tune=True`` (``vggish tune``) measures again; ``tune=False`` uses the
defaults without measuring (the switch for reproducible timings).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from vggish import cpus, params, plans
from vggish.fileio import BuildLock, write_bytes_atomic
from vggish.model import CONV_LAYERS, POOL_AFTER, VGGish
from vggish.plans import ConvAlgorithm, FcAlgorithm, Plan
from vggish.version import __version__

logger = logging.getLogger(__name__)

TuneMode = bool | Literal["auto"]
"""``"auto"``: reuse this machine's stored tuning, or tune once; True: tune now; False: defaults."""
TunedBackend = Literal["torch", "onnx"]
Source = Literal["measured", "stored", "default"]

REVISION = 1  # bumped when the candidates or the way they are timed change: old files re-tune
SUBDIR = "tuning"
MARGIN = 0.05  # a candidate must beat the default by 5 % (2-core machines are noisy)
ROUNDS = 5  # timed rounds per candidate, after one warm-up
DROP_AFTER = 2  # rounds after which a candidate far behind is no longer timed
DROP_FACTOR = 1.5  # ... "far behind": its best time above 1.5x the layer's best median
ACCURACY_BOUND = 2e-5  # max |float32 - float64| / max |float64| of a layer's output
TUNING_BATCH = 32  # examples per layer timing
DEFAULT_BATCH_SIZE = 32  # examples per model call on the CPU unless tuning finds better
BATCH_SIZES = (16, 32, 64)
BATCH_EXAMPLES = 64  # examples per timed batch-size measurement
ACCURACY_EXAMPLES = 2  # examples compared with float64
FC_ROW = "fc"  # the fully connected layers' row in the table
# Input height and width of each convolution (96 x 64 halved after each pool).
LAYER_SIZES: Mapping[str, tuple[int, int]] = {
    name: (params.NUM_FRAMES >> i, params.NUM_BANDS >> i)
    for name, i in zip(plans.CONV_NAMES, (0, 1, 2, 2, 3, 3), strict=True)
}


@dataclass(frozen=True)
class TuningKey:
    """What a stored tuning is valid for: another value of any field means tuning again."""

    backend: str
    precision: str
    threads: int
    cpu: str
    vggish: str
    torch: str
    onnxruntime: str
    revision: int = REVISION

    @classmethod
    def here(cls, backend: str, precision: str, threads: int) -> TuningKey:
        """The key of this machine and these versions."""
        return cls(
            backend, precision, threads, cpus.cpu_identity(), __version__, torch.__version__, _ort_version()
        )

    def file_name(self) -> str:
        """``BACKEND-PRECISION-Nt-DIGEST.json``; DIGEST covers every field."""
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()
        return f"{self.backend}-{self.precision}-{self.threads}t-{digest[:16]}.json"


@dataclass(frozen=True)
class Timing:
    """One candidate of one layer: milliseconds per batch of :data:`TUNING_BATCH` (median), or
    None when it was dropped early (far behind) or failed the accuracy bound; ``error``: its
    float32 deviation from float64, relative to the output's scale (None where not checked)."""

    layer: str
    algorithm: str
    ms: float | None
    error: float | None = None


@dataclass(frozen=True)
class Tuning:
    """The plan and batch size chosen for one backend on this machine, and how they were chosen.

    Attributes:
        backend: ``"torch"`` or ``"onnx"``.
        plan: the per-layer algorithms.
        batch_size: examples per model call.
        source: ``"measured"`` now, ``"stored"`` (read from the cache) or ``"default"`` (not tuned).
        key: what it was measured for (None for defaults).
        timings: every candidate of every layer (the table of :meth:`table`).
        batches: (batch size, examples/s) of the whole network with ``plan``.
        seconds: how long the measurement took.
    """

    backend: str
    plan: Plan
    batch_size: int = DEFAULT_BATCH_SIZE
    source: Source = "default"
    key: TuningKey | None = None
    timings: tuple[Timing, ...] = ()
    batches: tuple[tuple[int, float], ...] = ()
    seconds: float = 0.0

    def to_json(self) -> str:
        """The record as JSON (what the cache file holds)."""
        data = dataclasses.asdict(self)
        data["plan"] = self.plan.as_dict()
        return json.dumps(data, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Tuning:
        """Reads :meth:`to_json`'s text.

        Raises:
            ValueError: anything malformed (``json``, fields, a plan, a batch size).
        """
        try:
            data = json.loads(text)
            tuning = cls(
                backend=str(data["backend"]),
                plan=Plan.from_dict(data["plan"]),
                batch_size=int(data["batch_size"]),
                source="stored",
                key=TuningKey(**data["key"]),
                timings=tuple(Timing(**t) for t in data["timings"]),
                batches=tuple((int(b), float(s)) for b, s in data["batches"]),
                seconds=float(data["seconds"]),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"not a tuning record: {type(e).__name__}: {e}") from e
        if tuning.batch_size < 1:
            raise ValueError(f"not a tuning record: batch size {tuning.batch_size}")
        return tuning

    def table(self) -> str:
        """The per-layer timings and the choice, as a markdown table (``vggish tune`` prints it)."""
        algos = list(dict.fromkeys(t.algorithm for t in self.timings))
        if not algos:  # int8 graphs, defaults: nothing timed per layer
            lines = [f"no per-layer timings ({self.source}): {self.plan}"]
        else:
            lines = [
                "| layer | " + " | ".join(algos) + " | chosen |",
                "|---|" + "---:|" * len(algos) + "---|",
            ]
        chosen = self.plan.as_dict() | {FC_ROW: self.plan.fc}
        for layer in dict.fromkeys(t.layer for t in self.timings):
            row = {t.algorithm: t for t in self.timings if t.layer == layer}
            cells = [_cell(row.get(a), a == chosen[layer]) for a in algos]
            lines.append(f"| {layer} | " + " | ".join(cells) + f" | {chosen[layer]} |")
        if self.batches:
            speeds = ", ".join(f"{b}: {s:.1f}" for b, s in self.batches)
            lines.append(f"\nbatch size {self.batch_size} (examples/s at {speeds})")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: backend, plan, batch size and where they came from."""
        took = f", {self.seconds:.1f} s" if self.source == "measured" else ""
        return f"{self.backend}: {self.plan}; batch {self.batch_size} ({self.source}{took})"


def _cell(t: Timing | None, chosen: bool) -> str:
    if t is None:
        return ""
    if t.ms is None:
        return "failed accuracy" if t.error is not None and t.error > ACCURACY_BOUND else "dropped"
    return f"**{t.ms:.1f}**" if chosen else f"{t.ms:.1f}"


def default_tuning(backend: TunedBackend, precision: str) -> Tuning:
    """The measured defaults without measuring (``tune=False``)."""
    return Tuning(backend, default_plan(backend, precision))


def default_plan(backend: TunedBackend, precision: str) -> Plan:
    """:data:`~vggish.plans.TORCH_DEFAULT` / :data:`~vggish.plans.ONNX_DEFAULT` (fp32); all direct
    convolutions for bf16 (Winograd measured slower and 1.5x less accurate in bf16), but conv1
    in chunks; all direct for int8 graphs (their Winograd products cannot be quantized)."""
    if backend == "onnx":
        return plans.ONNX_DEFAULT if precision == "fp32" else plans.DIRECT
    if precision == "fp32":
        return plans.TORCH_DEFAULT
    return plans.DIRECT.replace("conv1", "direct_chunked")


def tuned(
    backend: TunedBackend,
    network: VGGish,
    runner_for: Callable[[Plan], Callable[[np.ndarray], object]],
    *,
    precision: str,
    threads: int,
    cache_dir: str | os.PathLike[str],
    mode: TuneMode,
) -> Tuning:
    """This machine's tuning for ``backend``: stored, measured now, or the defaults.

    Args:
        backend: ``"torch"`` (eager PyTorch) or ``"onnx"`` (ONNX Runtime).
        network: the model (its weights are used for the timings; float32 or bf16, on the CPU).
        runner_for: the backend computing the whole network with a plan ((N, 96, 64) examples),
            for the batch-size timings.
        precision: ``"fp32"`` or ``"bf16"`` (PyTorch only).
        threads: the intra-op threads the backend runs with (part of the key).
        cache_dir: the cache root; tunings go to ``cache_dir/tuning``.
        mode: ``"auto"``, True (measure again) or False (defaults).
    """
    if mode is False:
        return default_tuning(backend, precision)
    key = TuningKey.here(backend, precision, threads)
    path = stored_path(cache_dir, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = BuildLock(path)
    except OSError as e:  # a read-only cache: measure for this process, say how to avoid it
        logger.warning(
            "cannot keep a tuning in %s (%s): measuring for this process only; give a writable "
            "cache_dir (VGGISH_CACHE_DIR) or tune=False (VGGISH_TUNE=off)",
            path.parent,
            e,
        )
        return measure(backend, network, runner_for, precision=precision, threads=threads, key=key)
    with lock:  # processes starting together (service workers) tune once, not at once
        if mode == "auto":
            stored = read_tuning(path, key)
            if stored is not None:
                return stored
        logger.warning(
            "tuning VGGish's %s backend for this machine (once; up to a minute): %s", backend, path
        )
        tuning = measure(backend, network, runner_for, precision=precision, threads=threads, key=key)
        try:
            write_bytes_atomic(path, tuning.to_json().encode())
        except OSError as e:
            logger.warning("cannot store the tuning in %s (%s): it holds for this process only", path, e)
    logger.info("tuned: %s", tuning.summary())
    return tuning


def stored_path(cache_dir: str | os.PathLike[str], key: TuningKey) -> Path:
    """Where the tuning for ``key`` is kept: ``cache_dir/tuning/`` + :meth:`TuningKey.file_name`."""
    return Path(cache_dir) / SUBDIR / key.file_name()


def read_tuning(path: Path, key: TuningKey) -> Tuning | None:
    """The tuning stored at ``path`` for ``key``; None (with a warning when the file is damaged)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        logger.warning("cannot read the stored tuning %s (%s); tuning again", path, e)
        return None
    try:
        tuning = Tuning.from_json(text)
    except ValueError as e:
        logger.warning("ignoring a damaged tuning file %s (%s); tuning again", path, e)
        return None
    return tuning if tuning.key == key else None


def measure(
    backend: TunedBackend,
    network: VGGish,
    runner_for: Callable[[Plan], Callable[[np.ndarray], object]],
    *,
    precision: str,
    threads: int,
    key: TuningKey | None = None,
) -> Tuning:
    """Times every candidate per layer and the batch sizes; see the module docstring."""
    started = time.perf_counter()
    default = default_plan(backend, precision)
    candidates = candidates_for(backend, precision)
    with contextlib.ExitStack() as stack, torch.inference_mode():
        if backend == "torch":
            fns, errors = _torch_layers(network, candidates)
        else:
            fns, errors = _onnx_layers(network, candidates, threads, stack)
        times = _race(fns, default)
    timings = _timings(candidates, times, errors)
    plan = choose(default, timings)
    batches = batch_speeds(runner_for(plan))
    batch = choose_batch(batches)
    seconds = time.perf_counter() - started
    return Tuning(backend, plan, batch, "measured", key, timings, batches, seconds)


def candidates_for(backend: TunedBackend, precision: str) -> dict[str, tuple[str, ...]]:
    """Layer (and ``"fc"``) -> the algorithms worth timing there.

    PyTorch float32: every convolution algorithm, ``F.linear`` and oneDNN; bf16: direct
    convolutions whole or chunked (Winograd loses in bf16), ``F.linear`` (already oneDNN in
    bf16). ONNX Runtime: ``Conv`` or F(4x4) from conv2 on, each layer one exported graph (~2 s of
    export each, the bulk of the tuning's time); not F(2x2), which never beat F(4x4) in ONNX
    Runtime (docs/winograd.md, and 1.3-1.5x slower per layer in the first measurement of this module),
    nor conv1 (one input channel), whose Winograd transforms are whole-tensor copies in a graph,
    10x slower than its ``Conv``: conv1 is not timed. int8 graphs: none (every layer a quantized
    ``Conv``/``Gemm``; only the batch size is timed).
    """
    if backend == "onnx" and precision == "int8":
        return {}
    if backend == "onnx":
        return dict.fromkeys(plans.CONV_NAMES[1:], ("direct", "winograd4"))
    if precision == "fp32":
        fc: tuple[str, ...] = ("dense", "onednn") if plans.onednn_available() else ("dense",)
        return {**dict.fromkeys(plans.CONV_NAMES, plans.CONV_ALGORITHMS), FC_ROW: fc}
    return {**dict.fromkeys(plans.CONV_NAMES, ("direct", "direct_chunked")), FC_ROW: ("dense",)}


# --- PyTorch ------------------------------------------------------------------------------------

Fn = Callable[[], object]


def layer_input(name: str, batch: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Synthetic NHWC activations of the layer's input shape: ReLU'd Gaussian noise."""
    c_in = next(c for n, c, _ in CONV_LAYERS if n == name)
    h, w = LAYER_SIZES[name]
    x = torch.randn(batch, h, w, c_in, generator=torch.Generator().manual_seed(seed)).relu_()
    return x.to(dtype)


def _torch_layers(
    network: VGGish, candidates: Mapping[str, Sequence[str]]
) -> tuple[dict[tuple[str, str], Fn], dict[tuple[str, str], float]]:
    """A timed call per (layer, algorithm) in eager PyTorch, and each one's float32 error."""
    fns: dict[tuple[str, str], Fn] = {}
    errors: dict[tuple[str, str], float] = {}
    dtype = network.conv1.weight.dtype
    for name in plans.CONV_NAMES:
        conv, pool = getattr(network, name), name in POOL_AFTER
        x = layer_input(name, TUNING_BATCH, dtype)
        reference = _float64_layer(conv, x[:ACCURACY_EXAMPLES], pool)
        for algo in candidates[name]:
            kernels = plans.transform_kernel(conv.weight, algo) if algo in plans.TILES else None  # type: ignore[arg-type]
            layer = plans.layer_function(algo, conv, kernels)  # type: ignore[arg-type]
            if dtype == torch.float32:
                errors[name, algo] = _relative_error(layer(x[:ACCURACY_EXAMPLES], pool), reference)
            fns[name, algo] = _bind(layer, x, pool)
    fc_input = torch.randn(
        TUNING_BATCH, network.fc1_1.in_features, generator=torch.Generator().manual_seed(1)
    )
    fc_input = fc_input.relu_().to(dtype)
    reference = _float64_fc(network, fc_input[:ACCURACY_EXAMPLES])
    for algo in candidates.get(FC_ROW, ()):
        fc = _fc_function(network, algo)  # type: ignore[arg-type]
        if dtype == torch.float32:
            errors[FC_ROW, algo] = _relative_error(fc(fc_input[:ACCURACY_EXAMPLES]), reference)
        fns[FC_ROW, algo] = _bind_fc(fc, fc_input)
    return fns, errors


def _bind(layer: Callable[[torch.Tensor, bool], torch.Tensor], x: torch.Tensor, pool: bool) -> Fn:
    return lambda: layer(x, pool)


def _bind_fc(fc: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Fn:
    return lambda: fc(x)


def _fc_function(network: VGGish, algo: FcAlgorithm) -> Callable[[torch.Tensor], torch.Tensor]:
    """fc1_1 -> ReLU -> fc1_2 -> ReLU -> fc2 with ``algo``."""
    names = plans.FC_NAMES
    layers = (
        [plans.onednn_linear(getattr(network, n)) for n in names]
        if algo == "onednn"
        else [getattr(network, n) for n in names]
    )

    def run(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = layers[2](F.relu(layers[1](F.relu(layers[0](x)))))
        return out

    return run


def _float64_layer(conv: torch.nn.Conv2d, x: torch.Tensor, pool: bool) -> torch.Tensor:
    """The reference: float64 ``relu(conv2d + b)`` (+ pool), NHWC."""
    bias = None if conv.bias is None else conv.bias.double()
    y = F.relu(F.conv2d(x.double().permute(0, 3, 1, 2), conv.weight.double(), bias, padding=1))
    return (F.max_pool2d(y, 2) if pool else y).permute(0, 2, 3, 1)


def _float64_fc(network: VGGish, x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    for i, name in enumerate(plans.FC_NAMES):
        layer = getattr(network, name)
        x = F.linear(x, layer.weight.double(), layer.bias.double())
        x = F.relu(x) if i < len(plans.FC_NAMES) - 1 else x
    return x


def _relative_error(got: torch.Tensor | np.ndarray, reference: torch.Tensor) -> float:
    ref = reference.detach().double().cpu().numpy()
    diff = np.abs(np.asarray(torch.as_tensor(got).double().cpu()) - ref).max()
    return float(diff / max(float(np.abs(ref).max()), 1e-30))


# --- ONNX Runtime -------------------------------------------------------------------------------


class _OneLayer(torch.nn.Module):
    """One convolution (+ ReLU, + pool) as the ONNX graph computes it with ``algo``: NCHW in and
    out for ``direct`` (a ``Conv``), NHWC for Winograd."""

    def __init__(self, conv: torch.nn.Conv2d, algo: ConvAlgorithm, pool: bool) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(conv.in_channels, conv.out_channels, 3, padding=1)
        self.conv.load_state_dict({k: v.detach().float().contiguous() for k, v in conv.state_dict().items()})
        self.algo, self.pool = algo, pool
        if algo in plans.TILES:
            self.register_buffer("kernels", plans.transform_kernel(self.conv.weight, algo))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.algo in plans.TILES:
            return plans.layer_function(self.algo, self.conv, self.get_buffer("kernels"))(x, self.pool)
        y = F.relu(self.conv(x))
        return F.max_pool2d(y, 2) if self.pool else y


def _onnx_layers(
    network: VGGish, candidates: Mapping[str, Sequence[str]], threads: int, stack: contextlib.ExitStack
) -> tuple[dict[tuple[str, str], Fn], dict[tuple[str, str], float]]:
    """A timed ONNX Runtime call per (layer, algorithm), each its own exported graph (static
    shapes, in a temporary folder), and each one's float32 error."""
    from vggish import onnx_export

    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vggish-tuning-")))
    fns: dict[tuple[str, str], Fn] = {}
    errors: dict[tuple[str, str], float] = {}
    for name in plans.CONV_NAMES:
        if not candidates.get(name):
            continue
        conv, pool = getattr(network, name), name in POOL_AFTER
        nhwc = layer_input(name, TUNING_BATCH, torch.float32)
        reference = _float64_layer(conv, nhwc[:ACCURACY_EXAMPLES], pool)
        for algo in candidates[name]:
            winograd = algo in plans.TILES
            x = nhwc if winograd else nhwc.permute(0, 3, 1, 2).contiguous()
            with torch.inference_mode(False):  # the exporter traces ordinary tensors
                module = _OneLayer(conv, algo, pool).eval()  # type: ignore[arg-type]
                path = onnx_export.export_module(module, x.clone(), folder / f"{name}-{algo}.onnx")
            session = onnx_export.ort_session(path, threads, spinning=False)
            feed = {"x": x.numpy()}
            y = session.run(["y"], feed)[0][:ACCURACY_EXAMPLES]
            errors[name, algo] = _relative_error(y if winograd else y.transpose(0, 2, 3, 1), reference)
            fns[name, algo] = _bind_session(session, feed)
    return fns, errors


def _bind_session(session: Any, feed: dict[str, np.ndarray]) -> Fn:
    return lambda: session.run(["y"], feed)


# --- choosing -----------------------------------------------------------------------------------


def _race(fns: Mapping[tuple[str, str], Fn], default: Plan) -> dict[tuple[str, str], list[float]]:
    """Seconds per call of every candidate, taking turns for :data:`ROUNDS` rounds after a warm-up.

    After :data:`DROP_AFTER` rounds a candidate whose best time is :data:`DROP_FACTOR` times its
    layer's best median is no longer timed (the default never drops: it is what others must beat).
    """
    for fn in fns.values():
        fn()
    times: dict[tuple[str, str], list[float]] = {key: [] for key in fns}
    active = dict(fns)
    defaults = {(name, algo) for name, algo in default.as_dict().items()}
    for round_ in range(ROUNDS):
        for key, fn in active.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
        if round_ + 1 == DROP_AFTER:
            best: dict[str, float] = {}
            for (layer, _), t in times.items():
                best[layer] = min(best.get(layer, float("inf")), statistics.median(t))
            active = {
                key: fn
                for key, fn in active.items()
                if key in defaults or min(times[key]) <= DROP_FACTOR * best[key[0]]
            }
    return {key: t for key, t in times.items() if key in active}


def _timings(
    candidates: Mapping[str, Sequence[str]],
    times: Mapping[tuple[str, str], list[float]],
    errors: Mapping[tuple[str, str], float],
) -> tuple[Timing, ...]:
    out = []
    for layer, algos in candidates.items():
        for algo in algos:
            t, error = times.get((layer, algo)), errors.get((layer, algo))
            accurate = error is None or error <= ACCURACY_BOUND
            ms = 1000 * statistics.median(t) if t and accurate else None
            out.append(Timing(layer, algo, ms, error))
    return tuple(out)


def choose(default: Plan, timings: Sequence[Timing]) -> Plan:
    """Per layer, the fastest accurate candidate if it beats the default by :data:`MARGIN`."""
    plan = default
    wanted = default.as_dict()
    for layer in dict.fromkeys(t.layer for t in timings):
        row = {t.algorithm: t.ms for t in timings if t.layer == layer and t.ms is not None}
        if not row:
            continue
        best = min(row, key=lambda a: row[a])
        base = row.get(wanted[layer])
        if base is None or row[best] <= (1 - MARGIN) * base:
            plan = plan.replace(layer, best)
    return plan


def batch_speeds(run: Callable[[np.ndarray], object], rounds: int = 3) -> tuple[tuple[int, float], ...]:
    """Examples/s of the whole network at each of :data:`BATCH_SIZES` (about :data:`BATCH_EXAMPLES`
    examples per measurement, batch sizes taking turns, medians)."""
    x = np.random.default_rng(0).standard_normal((max(BATCH_SIZES), 96, 64)).astype(np.float32)
    for b in BATCH_SIZES:
        run(x[:b])
    speeds: dict[int, list[float]] = {b: [] for b in BATCH_SIZES}
    for _ in range(rounds):
        for b in BATCH_SIZES:
            calls = max(1, BATCH_EXAMPLES // b)
            start = time.perf_counter()
            for _ in range(calls):
                run(x[:b])
            speeds[b].append(calls * b / (time.perf_counter() - start))
    return tuple((b, statistics.median(s)) for b, s in speeds.items())


def choose_batch(speeds: Sequence[tuple[int, float]]) -> int:
    """The fastest batch size if it beats :data:`DEFAULT_BATCH_SIZE` by :data:`MARGIN`."""
    table = dict(speeds)
    best = max(table, key=lambda b: table[b])
    base = table.get(DEFAULT_BATCH_SIZE)
    return best if base is None or table[best] * (1 - MARGIN) >= base else DEFAULT_BATCH_SIZE


def _ort_version() -> str:
    try:
        import onnxruntime

        return str(onnxruntime.__version__)
    except ImportError:
        return "not installed"
