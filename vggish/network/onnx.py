"""VGGish as an ONNX graph: export it, and run it with ONNX Runtime.

The graph is the network only, ``examples`` (batch, 96, 64) float32 -> ``embeddings`` (batch, 128)
float32, with a dynamic batch axis; PCA postprocessing stays in NumPy (``vggish.network.postprocess``).
The weights' provenance (``weights_info``: SHA-256, source) goes into the model's metadata, so an
``.onnx`` file can be traced back to the weights it came from.

Needs the ``onnx`` extra (``pip install 'vggish[onnx]'``: onnx, onnxscript for the exporter,
onnxruntime to run it); the rest of the package does not.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from vggish import params
from vggish.fileio import atomic_output
from vggish.network import plans
from vggish.network.model import VGGish
from vggish.network.plans import Plan
from vggish.version import __version__

logger = logging.getLogger(__name__)

INPUT_NAME = "examples"
OUTPUT_NAME = "embeddings"
OPSET = 18
MAX_EXPORT_BATCH = 65536  # the batch axis's upper bound in the exported graph
GRAPH_REVISION = "g3"  # bumped when the exported graph changes (g2: Winograd; g3: per-layer plans)
CACHE_SUBDIR = "onnx"  # exported graphs live in CACHE_DIR/onnx
_INSTALL = "pip install 'vggish[onnx]'"


def require(module: str, what: str) -> Any:
    """Imports ``module`` or raises ``RuntimeError`` saying that ``what`` needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(f"{what} needs the {module.split('.')[0]!r} package: {_INSTALL}") from e


def export_onnx(
    network: VGGish,
    output: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    plan: Plan = plans.ONNX_DEFAULT,
) -> Path:
    """Writes the network as an ONNX file (one file, weights inside), atomically.

    Args:
        network: the module (its weights are exported as they are; it is not changed).
        output: the ``.onnx`` file to write; its folder must exist.
        metadata: provenance stored as ``vggish.KEY`` entries (e.g. the weights' SHA-256).
        plan: algorithm per convolution layer (``direct`` and ``direct_chunked`` become ``Conv``;
            Winograd kernels become constants of the graph; ``fc`` is ignored: ``Gemm``). Its
            :attr:`~vggish.network.plans.Plan.tag` is stored as ``vggish.plan``.

    Returns:
        The path written.

    Raises:
        RuntimeError: ``onnx``/``onnxscript`` are not installed, or the export failed.
        FileNotFoundError: the output's folder does not exist.
    """
    require("onnxscript", "exporting to ONNX")
    onnx = require("onnx", "exporting to ONNX")
    out = Path(output)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: folder {out.parent} does not exist")
    # The exporter traces a CPU copy in the default layout, float32.
    cpu = VGGish()
    cpu.load_state_dict({k: v.detach().cpu().float().contiguous() for k, v in network.state_dict().items()})
    cpu.eval()
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    dummy = torch.zeros(2, params.NUM_FRAMES, params.NUM_BANDS)
    try:
        with atomic_output(out) as tmp:
            with warnings.catch_warnings(), _quiet_exporter():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    _Graph(cpu, plan),
                    (dummy,),
                    str(tmp),
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_shapes={INPUT_NAME: {0: batch}},
                    opset_version=OPSET,
                    dynamo=True,
                    # onnxscript's optimizer makes the export much slower, and ONNX Runtime
                    # optimizes the graph itself at load: the same numbers, load and run times.
                    optimize=False,
                    external_data=False,
                    verbose=False,
                )
            graph = onnx.load(str(tmp))
            provenance = {
                **(metadata or {}),
                "producer": "vggish.network.onnx",
                "graph": GRAPH_REVISION,
                "plan": plan.tag,
            }
            for key, value in provenance.items():
                entry = graph.metadata_props.add()
                entry.key, entry.value = f"vggish.{key}", str(value)
            onnx.save(graph, str(tmp))
    except Exception as e:
        raise RuntimeError(f"ONNX export failed: {' '.join(str(e).split())[:500]}") from e
    return out


def export_module(module: torch.nn.Module, example: torch.Tensor, output: str | os.PathLike[str]) -> Path:
    """Writes a one-input, one-output module as an ONNX file with static shapes (``example``'s),
    input ``x`` and output ``y``: the per-layer graphs :mod:`vggish.tuning` times.

    Raises:
        RuntimeError: ``onnx``/``onnxscript`` are not installed, or the export failed.
    """
    require("onnxscript", "exporting to ONNX")
    out = Path(output)
    try:
        with warnings.catch_warnings(), _quiet_exporter(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(out),
                input_names=["x"],
                output_names=["y"],
                opset_version=OPSET,
                dynamo=True,
                optimize=False,  # as in export_onnx
                external_data=False,
                verbose=False,
            )
    except Exception as e:
        raise RuntimeError(f"ONNX export failed: {' '.join(str(e).split())[:500]}") from e
    return out


class _Graph(torch.nn.Module):
    """What is exported: the network with the plan's Winograd layers replaced (their transformed
    kernels are constants of the graph); every direct layer is a ``Conv``."""

    def __init__(self, network: VGGish, plan: Plan) -> None:
        super().__init__()
        self.network = network
        # A chunked direct convolution is one Conv in a graph (ONNX Runtime runs it whole).
        self.plan = Plan(tuple("direct" if a == "direct_chunked" else a for a in plan.conv))
        self.winograd = [name for name in plans.CONV_NAMES if self.plan.algorithm(name) in plans.TILES]
        for name in self.winograd:
            kernels = plans.transform_kernel(getattr(network, name).weight, self.plan.algorithm(name))
            self.register_buffer(f"kernels_{name}", kernels)

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        kernels = {name: getattr(self, f"kernels_{name}") for name in self.winograd}
        x = examples.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        out: torch.Tensor = self.network(x, plans.conv_layers(self.network, self.plan, kernels))
        return out


@contextlib.contextmanager
def _quiet_exporter() -> Any:
    """Silences the exporter's progress lines and warnings (they go to logging at INFO/WARNING)."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir")
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    for lg, _ in saved:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


def available() -> bool:
    """Whether the ONNX backend can run here (``onnx``, ``onnxscript`` and ``onnxruntime``)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


def onnx_session(
    network: VGGish,
    weights_sha256: str,
    cache_dir: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    threads: int | None = None,
    plan: Plan = plans.ONNX_DEFAULT,
) -> OnnxVGGish:
    """An ONNX Runtime session computing ``network``, exported on first use and cached.

    The cache file's name carries this package's version, the graph revision, the plan's
    convolution algorithms and the weights' SHA-256 (:func:`graph_path`), so a graph is never
    reused for other weights or another plan; a cached file whose recorded SHA-256 or plan
    differs is exported again.

    Args:
        network: the module with the weights to export.
        weights_sha256: the weights file's SHA-256 (``"random"`` for the demo weights).
        cache_dir: the cache root; graphs go to ``cache_dir/onnx``.
        metadata: provenance stored in the graph (the weights file's metadata).
        threads: ONNX Runtime's intra-op threads.
        plan: the convolution algorithms of the graph.
    """
    path = graph_path(cache_dir, weights_sha256, plan.tag)

    def export() -> None:
        logger.warning("exporting VGGish to ONNX (once per weights file and plan): %s", path)
        export_onnx(network, path, metadata={**(metadata or {}), "sha256": weights_sha256}, plan=plan)

    return cached_or_built(path, threads, export, sha256=weights_sha256, plan=plan.tag)


def cached_or_built(
    path: Path, threads: int | None, build: Callable[[], object], **expected: str
) -> OnnxVGGish:
    """A session of the graph at ``path``: the cached one (:func:`cached_graph`), else ``build()``
    writes it, under a file lock (``PATH.lock``) so that processes starting together (service
    workers) build it once: the others wait, then load it."""
    runner = cached_graph(path, threads, **expected)
    if runner is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_suffix(".lock")):
            runner = cached_graph(path, threads, **expected)  # built while this one waited
            if runner is None:
                build()
                runner = OnnxVGGish(path, threads)
    return runner


def cached_graph(path: Path, threads: int | None = None, **expected: str) -> OnnxVGGish | None:
    """A session of the cached graph at ``path`` if it is there and its ``vggish.*`` metadata has
    the ``expected`` values; None otherwise (a graph that cannot be loaded is built again)."""
    if not path.is_file():
        return None
    try:
        runner = OnnxVGGish(path, threads)
    except RuntimeError as e:
        logger.warning("ignoring a damaged cached graph (%s): building it again", e)
        return None
    return runner if all(runner.weights_info.get(k) == v for k, v in expected.items()) else None


def graph_path(cache_dir: str | os.PathLike[str], weights_sha256: str, variant: str) -> Path:
    """``cache_dir/onnx/vggish-VERSION-REVISION-VARIANT-SHA.onnx``: where a graph is cached.

    ``variant`` is a plan's tag (``d-d-w4-w4-w4-w4``) or another name for what the graph computes
    (``int8-...``); SHA is the first 16 hex digits of the weights file's SHA-256.

    Raises:
        RuntimeError: no SHA-256 to key the graph by.
    """
    if not weights_sha256:
        raise RuntimeError("the weights have no SHA-256 to key their ONNX graph; load them with load_model")
    name = f"vggish-{__version__}-{GRAPH_REVISION}-{variant}-{weights_sha256[:16]}.onnx"
    return Path(cache_dir) / CACHE_SUBDIR / name


def ort_session(path: str | os.PathLike[str], threads: int | None = None, *, spinning: bool = True) -> Any:
    """An ONNX Runtime CPU session of the graph at ``path`` (every graph optimisation on).

    ``spinning=False`` lets its idle threads sleep at once (sessions taking turns, as in tuning,
    would otherwise take the cores from each other); ONNX Runtime's default spins a while.

    Raises:
        RuntimeError: onnxruntime is not installed, or cannot load the file.
    """
    ort = require("onnxruntime", "the ONNX backend")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise RuntimeError(f"cannot load {path} with ONNX Runtime: {' '.join(str(e).split())}") from e


class OnnxVGGish:
    """Runs an exported VGGish graph with ONNX Runtime on the CPU.

    Args:
        path: an ``.onnx`` file written by :func:`export_onnx`.
        threads: intra-op threads; None lets ONNX Runtime use the machine's cores.

    Raises:
        RuntimeError: onnxruntime is not installed, or the file is not a VGGish graph.
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        self.session = ort_session(path, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape_ok = len(inputs) == 1 and list(inputs[0].shape[1:]) == [params.NUM_FRAMES, params.NUM_BANDS]
        if not shape_ok or len(outputs) != 1 or inputs[0].name != INPUT_NAME:
            raise RuntimeError(f"{path} is not a VGGish graph (input (batch, 96, 64) named {INPUT_NAME!r})")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.weights_info = {k.removeprefix("vggish."): v for k, v in meta.items() if k.startswith("vggish.")}

    def __call__(self, examples: np.ndarray) -> np.ndarray:
        """(N, 96, 64) or (N, 1, 96, 64) float log-mel examples -> (N, 128) float32 embeddings."""
        x = np.asarray(examples, dtype=np.float32)
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3 or x.shape[1:] != (params.NUM_FRAMES, params.NUM_BANDS):
            raise ValueError(f"examples must be (N, 96, 64) or (N, 1, 96, 64); got shape {x.shape}")
        if x.shape[0] == 0:
            return np.empty((0, params.EMBEDDING_SIZE), dtype=np.float32)
        out: np.ndarray = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x)})[0]
        return out
