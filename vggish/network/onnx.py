"""VGGish as an ONNX graph for ONNX Runtime (the ``onnx`` extra), written by :func:`build_graph`
with ``onnx.helper`` from the network's weights: ``examples`` (batch, 96, 64) -> ``embeddings``
(batch, 128) float32, opset 18, the weights' provenance in ``vggish.*`` metadata. Each convolution
is computed as its :class:`~.plans.Plan` says: ``Conv`` (NCHW), or Winograd F(4x4, 3x3) on
activations stored positions first, ``(positions, batch, channels)``: ``Pad`` one zero position,
``Gather`` every 6 x 6 tile by a constant table (which also undoes the previous layer's order of
positions), ``MatMul`` with ``B^T``, the kernels and ``A^T``, ``ReduceMax`` for the pool, then bias
and ``Relu``; no transpose is ever made."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

try:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
except ImportError as e:  # the onnx extra is not installed
    raise RuntimeError(f"the ONNX backend needs the {e.name!r} package: pip install 'vggish[onnx]'") from e

from vggish import params
from vggish.fileio import atomic_output
from vggish.network import plans, winograd
from vggish.network.model import CONV_LAYERS, FC_LAYERS, POOL_AFTER, VGGish
from vggish.network.plans import Plan

INPUT_NAME = "examples"
OUTPUT_NAME = "embeddings"
OPSET = 18
IR_VERSION = 10  # ONNX Runtime >= 1.16 reads it
PRODUCER = "vggish.network.onnx"
GRAPH_REVISION = "g4"  # g3: the exporter's graph; g4: built directly
METADATA_PREFIX = "vggish."
EXTERNAL_BYTES = 1024  # constants this large go to ONNX Runtime as arrays (OnnxVGGish.from_network)
IN_MEMORY = "vggish-in-memory"  # the location of those constants' external-data stubs

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class _Activation:
    """A feature map between two layers; ``positions``: None for NCHW, else for ``(P, N, C)`` the
    (height, width) table of each pixel's index along the first axis."""

    name: str
    height: int
    width: int
    channels: int
    positions: IndexArray | None = None


class _GraphBuilder:
    """Collects the nodes and constants (NumPy until :func:`_assemble`) of one graph."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.constants: dict[str, np.ndarray] = {}
        self._names: set[str] = {INPUT_NAME, OUTPUT_NAME}

    def name(self, hint: str) -> str:
        name, n = hint, 1
        while name in self._names:
            n += 1
            name = f"{hint}_{n}"
        self._names.add(name)
        return name

    def constant(self, hint: str, value: np.ndarray) -> str:
        """Adds ``value`` as an initializer; returns its name."""
        name = self.name(hint)
        self.constants[name] = np.ascontiguousarray(value)
        return name

    def ints(self, hint: str, values: Sequence[int]) -> str:
        return self.constant(hint, np.asarray(values, dtype=np.int64))

    def op(
        self, op_type: str, inputs: Sequence[str], hint: str, *, output: str | None = None, **attrs: Any
    ) -> str:
        out = output if output is not None else self.name(hint)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def reshape(self, x: str, shape: Sequence[int], hint: str) -> str:
        return self.op("Reshape", [x, self.ints(f"{hint}_shape", shape)], hint)


def _float32(tensor: torch.Tensor) -> FloatArray:
    return tensor.detach().to("cpu", torch.float32).contiguous().numpy()


def _winograd_kernels(weight: torch.Tensor, t: winograd.Transforms) -> FloatArray:
    """(K, C, 3, 3) weights -> (alpha^2, C, K) kernels ``G g G^T`` in float64, rounded once, in
    :func:`~vggish.network.winograd.transform_kernel`'s order."""
    k, c = weight.shape[:2]
    g_matrix = np.array(t.g, dtype=np.float64)
    w = weight.detach().to("cpu", torch.float64).numpy()
    taps = w.transpose(3, 2, 1, 0).reshape(winograd.KERNEL_SIZE**2, c * k)  # [j * 3 + i, c * K + k]
    u = np.kron(g_matrix, g_matrix) @ taps  # kron(G, G)[b * alpha + a, j * 3 + i] = G[b, j] G[a, i]
    kernels: FloatArray = u.reshape(t.alpha**2, c, k).astype(np.float32)
    return kernels


def _direct_layer(
    g: _GraphBuilder, x: _Activation, conv: torch.nn.Conv2d, name: str, pool: bool
) -> _Activation:
    assert conv.bias is not None
    weight = g.constant(f"{name}.weight", _float32(conv.weight))
    bias = g.constant(f"{name}.bias", _float32(conv.bias))
    y = g.op("Conv", [x.name, weight, bias], f"{name}_conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = g.op("Relu", [y], f"{name}_relu")
    if not pool:
        return _Activation(y, x.height, x.width, conv.out_channels)
    y = g.op("MaxPool", [y], f"{name}_pool", kernel_shape=[2, 2], strides=[2, 2])
    return _Activation(y, x.height // 2, x.width // 2, conv.out_channels)


def _tile_index(x: _Activation, t: winograd.Transforms, padding: int) -> IndexArray:
    """The gather table: ``[b, a, tile row, tile column]`` -> the position of input pixel
    ``(m * tile row + a - 1, m * tile column + b - 1)``, or ``padding`` outside the map."""
    assert x.positions is not None
    offsets = np.arange(t.alpha) - 1
    rows = t.m * np.arange(x.height // t.m)[None, :] + offsets[:, None]  # (a, tile row)
    cols = t.m * np.arange(x.width // t.m)[None, :] + offsets[:, None]  # (b, tile column)
    r = rows[None, :, :, None]
    c = cols[:, None, None, :]
    inside = (r >= 0) & (r < x.height) & (c >= 0) & (c < x.width)
    index = np.where(inside, x.positions[r.clip(0, x.height - 1), c.clip(0, x.width - 1)], padding)
    return index.astype(np.int64)


def _output_positions(th: int, tw: int, n: int) -> IndexArray:
    """The (n th, n tw) table of positions of a Winograd layer's ``(n, n, th, tw)`` outputs."""
    j, i, t, u = np.meshgrid(np.arange(n), np.arange(n), np.arange(th), np.arange(tw), indexing="ij")
    table = np.empty((n * th, n * tw), dtype=np.int64)
    table[n * t + i, n * u + j] = np.arange(table.size).reshape(n, n, th, tw)
    return table


def _input_transform(g: _GraphBuilder, x: _Activation, t: winograd.Transforms, name: str) -> str:
    """``V = B^T d B`` of every input tile: ``(alpha^2, tiles * N, C)``."""
    assert x.positions is not None
    alpha = t.alpha
    padded = g.op("Pad", [x.name, g.ints(f"{name}_pads", [0, 0, 0, 1, 0, 0])], f"{name}_padded")
    index = g.constant(f"{name}_tile_index", _tile_index(x, t, padding=x.positions.size))
    tiles = g.op("Gather", [padded, index], f"{name}_tiles", axis=0)  # (b, a, th, tw, N, C)
    bt = g.constant(f"{name}_bt", np.array(t.bt, dtype=np.float32))  # small integers: exact
    cols = g.op("MatMul", [bt, g.reshape(tiles, [alpha, -1], f"{name}_d")], f"{name}_v_cols")
    v = g.op("MatMul", [bt, g.reshape(cols, [alpha, alpha, -1], f"{name}_v_cols3")], f"{name}_v")
    return g.reshape(v, [alpha * alpha, -1, x.channels], f"{name}_v3")


def _output_transform(g: _GraphBuilder, products: str, t: winograd.Transforms, pool: bool, name: str) -> str:
    """``Y = A^T M A`` of every tile, then the 2x2 max pool: ``(n, n, tiles * N * K)``."""
    alpha, m = t.alpha, t.m
    at = g.constant(f"{name}_at", np.array(t.at, dtype=np.float32))
    y = g.op("MatMul", [at, g.reshape(products, [alpha, -1], f"{name}_m")], f"{name}_y_cols")
    y = g.op("MatMul", [at, g.reshape(y, [m, alpha, -1], f"{name}_y_cols3")], f"{name}_y")
    if not pool:
        return y
    windows = g.reshape(y, [m // 2, 2, m // 2, 2, -1], f"{name}_windows")  # (j2, j1, i2, i1, ...)
    return g.op("ReduceMax", [windows, g.ints(f"{name}_pool_axes", [1, 3])], f"{name}_pool", keepdims=0)


def _winograd_layer(
    g: _GraphBuilder, x: _Activation, conv: torch.nn.Conv2d, name: str, pool: bool, m: int
) -> _Activation:
    assert conv.bias is not None
    t = winograd.transforms(m)
    if x.height % m or x.width % m or (pool and m % 2):
        raise ValueError(f"F({m}x{m}, 3x3) cannot compute {name} on a {x.height}x{x.width} map")
    v = _input_transform(g, x, t, name)
    kernels = g.constant(f"{name}_kernels", _winograd_kernels(conv.weight, t))
    products = g.op("MatMul", [v, kernels], f"{name}_products")  # (alpha^2, tiles * N, K)
    y = _output_transform(g, products, t, pool, name)
    th, tw, n = x.height // m, x.width // m, m // 2 if pool else m
    y = g.reshape(y, [n * n * th * tw, -1, conv.out_channels], f"{name}_y3")
    y = g.op("Add", [y, g.constant(f"{name}.bias", _float32(conv.bias))], f"{name}_biased")
    y = g.op("Relu", [y], f"{name}_relu")
    return _Activation(y, n * th, n * tw, conv.out_channels, _output_positions(th, tw, n))


def _to_positions(g: _GraphBuilder, x: _Activation) -> _Activation:
    if x.positions is not None:
        return x
    hwnc = g.op("Transpose", [x.name], f"{x.name}_hwnc", perm=[2, 3, 0, 1])
    y = g.reshape(hwnc, [x.height * x.width, -1, x.channels], f"{x.name}_positions")
    positions = np.arange(x.height * x.width).reshape(x.height, x.width)  # row-major
    return _Activation(y, x.height, x.width, x.channels, positions)


def _row_major(g: _GraphBuilder, x: _Activation) -> str:
    assert x.positions is not None
    order = x.positions.reshape(-1)
    if np.array_equal(order, np.arange(order.size)):
        return x.name
    return g.op("Gather", [x.name, g.constant(f"{x.name}_order", order)], f"{x.name}_row_major", axis=0)


def _to_nchw(g: _GraphBuilder, x: _Activation) -> _Activation:
    if x.positions is None:
        return x
    hwnc = g.reshape(_row_major(g, x), [x.height, x.width, -1, x.channels], f"{x.name}_hwnc")
    y = g.op("Transpose", [hwnc], f"{x.name}_nchw", perm=[2, 3, 0, 1])
    return _Activation(y, x.height, x.width, x.channels)


def _flatten(g: _GraphBuilder, x: _Activation) -> str:
    """(N, H * W * C) features in TensorFlow's NHWC order."""
    if x.positions is None:
        nhwc = g.op("Transpose", [x.name], "features_nhwc", perm=[0, 2, 3, 1])
    else:
        nhwc = g.op("Transpose", [_row_major(g, x)], "features_nhwc", perm=[1, 0, 2])
    return g.reshape(nhwc, [-1, x.height * x.width * x.channels], "features")


def _fully_connected(g: _GraphBuilder, x: str, network: VGGish) -> str:
    for index, (name, _, _) in enumerate(FC_LAYERS):
        linear: torch.nn.Linear = getattr(network, name)
        weight = g.constant(f"{name}.weight", _float32(linear.weight))
        bias = g.constant(f"{name}.bias", _float32(linear.bias))
        last = index == len(FC_LAYERS) - 1
        x = g.op("Gemm", [x, weight, bias], name, output=OUTPUT_NAME if last else None, transB=1)
        if not last:
            x = g.op("Relu", [x], f"{name}_relu")
    return x


def _trace(network: VGGish, plan: Plan) -> _GraphBuilder:
    g = _GraphBuilder()
    frames, bands = params.NUM_FRAMES, params.NUM_BANDS
    x = _Activation(g.reshape(INPUT_NAME, [-1, 1, frames, bands], "examples_nchw"), frames, bands, 1)
    with torch.no_grad():
        for (name, _, _), algorithm in zip(CONV_LAYERS, plan.conv, strict=True):
            conv: torch.nn.Conv2d = getattr(network, name)
            pool = name in POOL_AFTER
            if algorithm in plans.TILES:
                x = _winograd_layer(g, _to_positions(g, x), conv, name, pool, plans.TILES[algorithm])
            else:
                x = _direct_layer(g, _to_nchw(g, x), conv, name, pool)
        _fully_connected(g, _flatten(g, x), network)
    return g


def _add_initializer(graph: onnx.GraphProto, name: str, array: np.ndarray, *, external: bool) -> None:
    """Adds ``array`` to ``graph``'s initializers: its bytes, or a reference to data handed to ONNX
    Runtime separately."""
    tensor = graph.initializer.add()
    tensor.name = name
    tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
    tensor.dims.extend(array.shape)
    if not external:
        tensor.raw_data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        return
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", IN_MEMORY), ("offset", "0"), ("length", str(array.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _assemble(
    g: _GraphBuilder, plan: Plan, metadata: Mapping[str, str] | None, external: Sequence[str] = ()
) -> onnx.ModelProto:
    """The model of a traced graph, with provenance metadata."""
    value = helper.make_tensor_value_info
    inputs = [value(INPUT_NAME, TensorProto.FLOAT, ["batch", params.NUM_FRAMES, params.NUM_BANDS])]
    outputs = [value(OUTPUT_NAME, TensorProto.FLOAT, ["batch", params.EMBEDDING_SIZE])]
    model = helper.make_model(
        helper.make_graph(g.nodes, "vggish", inputs, outputs),
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name=PRODUCER,
    )
    outside = set(external)
    for name, array in g.constants.items():
        _add_initializer(model.graph, name, array, external=name in outside)
    provenance = {**(metadata or {}), "producer": PRODUCER, "graph": GRAPH_REVISION, "plan": plan.tag}
    helper.set_model_props(model, {f"{METADATA_PREFIX}{k}": str(v) for k, v in provenance.items()})
    return model


def build_graph(
    network: VGGish, plan: Plan = plans.ONNX_DEFAULT, metadata: Mapping[str, str] | None = None
) -> onnx.ModelProto:
    """The network (any device or dtype, not changed) as a self-contained float32 ONNX model, with
    ``metadata`` stored as ``vggish.KEY`` beside ``vggish.producer``, ``.graph`` and ``.plan``.

    Raises:
        ValueError: a Winograd tile that does not divide a layer's feature map.
    """
    return _assemble(_trace(network, plan), plan, metadata)


def export_onnx(
    network: VGGish,
    output: str | os.PathLike[str],
    *,
    metadata: Mapping[str, str] | None = None,
    plan: Plan = plans.ONNX_DEFAULT,
) -> Path:
    """Writes :func:`build_graph`'s model as one ``.onnx`` file (weights inside), atomically.

    Raises:
        FileNotFoundError: the output's folder does not exist.
    """
    out = Path(output)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"cannot write {out}: folder {out.parent} does not exist")
    model = build_graph(network, plan, metadata)
    with atomic_output(out) as tmp:
        onnx.save(model, str(tmp))
    return out


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """ONNX Runtime CPU session options: every graph optimisation, ``threads`` threads."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    return options


class OnnxVGGish:
    """A VGGish graph in an ONNX Runtime CPU session: (N, 96, 64) examples -> (N, 128) embeddings."""

    name = "onnx"  # a Backend (vggish.network.backends): what Runtime.backend reports

    def __init__(self, session: ort.InferenceSession) -> None:
        # InferenceSession keeps the serialised model (with the weights) only to re-create itself
        # for another execution provider, which a CPU session never does.
        if getattr(session, "_model_bytes", None) is not None:
            session._model_bytes = None
        self.session = session
        meta = session.get_modelmeta().custom_metadata_map
        self.weights_info = {
            k.removeprefix(METADATA_PREFIX): v for k, v in meta.items() if k.startswith(METADATA_PREFIX)
        }

    @classmethod
    def from_network(
        cls,
        network: VGGish,
        *,
        plan: Plan = plans.ONNX_DEFAULT,
        metadata: Mapping[str, str] | None = None,
        threads: int | None = None,
    ) -> OnnxVGGish:
        """The graph of ``network``, its large constants handed to ONNX Runtime as arrays (copied:
        later changes to the network do not reach it)."""
        g = _trace(network, plan)
        external = [name for name, array in g.constants.items() if array.nbytes >= EXTERNAL_BYTES]
        model = _assemble(g, plan, metadata, external)
        options = session_options(threads)
        values = [ort.OrtValue.ortvalue_from_numpy(g.constants[name]) for name in external]
        options.add_external_initializers(external, values)
        return cls(_session(model.SerializeToString(), options, "the graph built from the network"))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], threads: int | None = None) -> OnnxVGGish:
        """The graph in an ``.onnx`` file (RuntimeError if it cannot be loaded or is not VGGish)."""
        runner = cls(_session(str(path), session_options(threads), str(path)))
        inputs = runner.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or list(inputs[0].shape[1:]) != [96, 64]:
            raise RuntimeError(f"{path} is not a VGGish graph (input (batch, 96, 64) named {INPUT_NAME!r})")
        return runner

    def __call__(self, examples: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, 96, 64) or (N, 1, 96, 64) float log-mel examples -> (N, 128) float32 embeddings."""
        if isinstance(examples, torch.Tensor):
            examples = examples.detach().float().cpu().numpy()
        x = np.asarray(examples, dtype=np.float32)
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3 or x.shape[1:] != (params.NUM_FRAMES, params.NUM_BANDS):
            raise ValueError(f"examples must be (N, 96, 64) or (N, 1, 96, 64); got shape {x.shape}")
        if x.shape[0] == 0:
            return np.empty((0, params.EMBEDDING_SIZE), dtype=np.float32)
        out: np.ndarray = self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x)})[0]
        return out


def _session(model: str | bytes, options: ort.SessionOptions, what: str) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types
        raise RuntimeError(f"ONNX Runtime cannot load {what}: {' '.join(str(e).split())}") from e
