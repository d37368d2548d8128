"""How each layer of the network is computed on the CPU: a :class:`Plan`.

A plan names one algorithm per convolution layer and one for the fully connected layers:

- ``direct``: the module's own ``nn.Conv2d`` (oneDNN on the CPU, channels_last), the whole batch
  at once; in an ONNX graph, ``Conv``.
- ``direct_chunked``: the same convolution a few examples at a time, so that its ReLU and pool
  read the output from cache (:func:`vggish.network.winograd.conv3x3_relu_direct`); in an ONNX
  graph, ``Conv``.
- ``winograd4``: Winograd F(4x4, 3x3) (:func:`vggish.network.winograd.conv3x3_relu`), 4x fewer
  multiplications, chunked in eager PyTorch, one graph in ONNX.
- fully connected layers: ``dense`` (``F.linear``: the BLAS torch was built with, MKL in the
  PyPI wheels) or ``onednn`` (``torch.utils.mkldnn``, eager PyTorch only: faster on the skinny
  products of a batch, at the cost of a packed copy of the fc weights, ~270 MB).

Which plan wins depends on the CPU; :data:`TORCH_DEFAULT` and :data:`ONNX_DEFAULT` are the
built-in ones (docs/design.md says why; ``benchmarks/bench_winograd.py`` measures another machine).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch.nn import functional as F

from vggish.network import winograd
from vggish.network.model import CONV_LAYERS, FC_LAYERS, LayerFn, LinearFn, VGGish

ConvAlgorithm = Literal["direct", "direct_chunked", "winograd4"]
"""How one 3x3 convolution layer (+ ReLU, + its 2x2 pool) is computed; see the module docstring."""
Algorithm = ConvAlgorithm  # the name earlier releases used
FcAlgorithm = Literal["dense", "onednn"]
"""How the fully connected layers are computed: ``F.linear`` or oneDNN (eager PyTorch, float32)."""

CONV_ALGORITHMS: tuple[ConvAlgorithm, ...] = get_args(ConvAlgorithm)
FC_ALGORITHMS: tuple[FcAlgorithm, ...] = get_args(FcAlgorithm)
TILES: Mapping[str, int] = {"winograd4": 4}
"""The Winograd algorithms and their output tile size m."""
CONV_NAMES: tuple[str, ...] = tuple(name for name, _, _ in CONV_LAYERS)
FC_NAMES: tuple[str, ...] = tuple(name for name, _, _ in FC_LAYERS)
FC_KEY = "fc"  # the fully connected layers' entry in Plan.as_dict()
_SHORT = {
    "direct": "d",
    "direct_chunked": "c",
    "winograd4": "w4",
    "dense": "fd",
    "onednn": "fo",
}


@dataclass(frozen=True)
class Plan:
    """One algorithm per convolution layer (in :data:`CONV_NAMES` order) and one for the fully
    connected layers.

    Attributes:
        conv: the six convolution layers' algorithms, conv1 first.
        fc: the fully connected layers' algorithm.

    Raises:
        ValueError: a wrong number of layers or an unknown algorithm.
    """

    conv: tuple[ConvAlgorithm, ...] = ("direct",) * 6
    fc: FcAlgorithm = "dense"

    def __post_init__(self) -> None:
        if len(self.conv) != len(CONV_NAMES):
            raise ValueError(
                f"a plan names {len(CONV_NAMES)} convolution algorithms ({CONV_NAMES}); got {self.conv}"
            )
        for algo in self.conv:
            if algo not in CONV_ALGORITHMS:
                raise ValueError(f"convolution algorithm must be one of {CONV_ALGORITHMS}; got {algo!r}")
        if self.fc not in FC_ALGORITHMS:
            raise ValueError(f"fully connected algorithm must be one of {FC_ALGORITHMS}; got {self.fc!r}")

    @classmethod
    def from_dict(cls, layers: Mapping[str, str]) -> Plan:
        """A plan from ``{"conv1": "direct_chunked", ..., "fc": "onednn"}``; missing layers run
        ``direct`` (``dense``).

        Raises:
            ValueError: an unknown layer or algorithm.
        """
        unknown = set(layers) - {*CONV_NAMES, FC_KEY}
        if unknown:
            raise ValueError(f"unknown layers in a plan: {sorted(unknown)} (known: {[*CONV_NAMES, FC_KEY]})")
        conv = tuple(layers.get(name, "direct") for name in CONV_NAMES)
        return cls(conv, layers.get(FC_KEY, "dense"))  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, str]:
        """``{"conv1": ..., "conv4_2": ..., "fc": ...}``."""
        return {**dict(zip(CONV_NAMES, self.conv, strict=True)), FC_KEY: self.fc}

    def algorithm(self, layer: str) -> ConvAlgorithm:
        """The algorithm of convolution layer ``layer`` (``"conv3_1"``...)."""
        return self.conv[CONV_NAMES.index(layer)]

    def replace(self, layer: str, algorithm: str) -> Plan:
        """This plan with ``layer`` (a convolution's name, or ``"fc"``) computed by ``algorithm``."""
        return Plan.from_dict({**self.as_dict(), layer: algorithm})

    @property
    def tag(self) -> str:
        """A short code of the convolution algorithms for file names: ``c-w4-w4-w4-w4-w4``
        (the fully connected layers do not change an ONNX graph)."""
        return "-".join(_SHORT[a] for a in self.conv)

    def __str__(self) -> str:
        return ", ".join(f"{name} {algo}" for name, algo in self.as_dict().items())


def _plan_of_tiles(tiles: Mapping[str, int], direct: ConvAlgorithm, fc: FcAlgorithm) -> Plan:
    """A plan from a measured table of tile sizes (0: a direct convolution)."""
    conv = tuple(direct if tiles[name] == 0 else f"winograd{tiles[name]}" for name in CONV_NAMES)
    return Plan(conv, fc)  # type: ignore[arg-type]


DIRECT = Plan()
"""Every layer as the module computes it (``nn.Conv2d``, ``F.linear``)."""
TORCH_DEFAULT = _plan_of_tiles(winograd.TORCH_TILES, "direct_chunked", "onednn")
"""Eager PyTorch's built-in plan (docs/design.md, "Per-layer plans"): conv1 direct in
chunks, F(4x4) from conv2 on, fully connected layers through oneDNN."""
ONNX_DEFAULT = _plan_of_tiles(winograd.ONNX_TILES, "direct", "dense")
"""The ONNX graph's built-in plan: ``Conv`` for
conv1 and conv2, F(4x4) from conv3_1 on."""


def transform_kernel(weight: torch.Tensor, algo: ConvAlgorithm) -> torch.Tensor:
    """A layer's (K, C, 3, 3) weights in the form ``algo`` multiplies with (Winograd only)."""
    if algo not in TILES:
        raise ValueError(f"no kernel transform for algorithm {algo!r}")
    return winograd.transform_kernel(weight, TILES[algo])


def conv_layers(network: VGGish, plan: Plan, kernels: Mapping[str, torch.Tensor]) -> dict[str, LayerFn]:
    """The layer functions of ``plan``'s convolutions that do not run as the module's ``nn.Conv2d``.

    Args:
        network: the module (biases, and weights of ``direct_chunked`` layers).
        plan: the plan.
        kernels: the transformed kernels of each Winograd layer (:func:`transform_kernel`).
    """
    return {
        name: layer_function(algo, getattr(network, name), kernels.get(name))
        for name, algo in zip(CONV_NAMES, plan.conv, strict=True)
        if algo != "direct"
    }


def layer_function(
    algo: ConvAlgorithm, conv: torch.nn.Conv2d, kernels: torch.Tensor | None = None
) -> LayerFn:
    """One convolution layer computed by ``algo``: NHWC ``(x, pool) -> relu(conv(x) + b)`` (+ pool).

    Args:
        algo: the algorithm.
        conv: the layer (its weights for direct convolutions, its bias for all).
        kernels: its transformed kernels, for a Winograd ``algo`` (:func:`transform_kernel`).
    """
    bias = conv.bias
    if bias is None:
        raise ValueError("VGGish's convolutions have biases; got a layer without one")
    if algo == "direct":
        return functools.partial(_module_layer, conv=conv)
    if algo == "direct_chunked":
        return functools.partial(_direct_layer, weight=conv.weight, bias=bias)
    if kernels is None:
        raise ValueError(f"{algo} needs the layer's transformed kernels (transform_kernel)")
    return functools.partial(_winograd_layer, kernels=kernels, bias=bias, tile=TILES[algo])


def _module_layer(x: torch.Tensor, pool: bool, *, conv: torch.nn.Conv2d) -> torch.Tensor:
    """What :class:`~.model.VGGish` computes for a direct layer, on NHWC (a channels_last view)."""
    y = F.relu(conv(x.permute(0, 3, 1, 2)))
    return (F.max_pool2d(y, 2) if pool else y).permute(0, 2, 3, 1)


def _winograd_layer(
    x: torch.Tensor, pool: bool, *, kernels: torch.Tensor, bias: torch.Tensor, tile: int
) -> torch.Tensor:
    return winograd.conv3x3_relu(x, kernels, bias, pool, tile)


def _direct_layer(x: torch.Tensor, pool: bool, *, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return winograd.conv3x3_relu_direct(x, weight, bias, pool)


def onednn_available() -> bool:
    """Whether this build of PyTorch has oneDNN (every x86 and ARM wheel does)."""
    return bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]


def onednn_linear(linear: torch.nn.Linear) -> LinearFn:
    """``linear`` computed by oneDNN (float32): a oneDNN copy of its weights, dense in and out.

    The same arithmetic as ``F.linear`` to float32 rounding (summation order); on skinny products
    (a batch of 32 against 12288 x 4096) oneDNN runs faster than MKL on AVX-512 CPUs.
    """
    weight = linear.weight.detach().to_mkldnn()
    bias = linear.bias.detach().to_mkldnn()

    def forward(x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = torch.ops.aten.mkldnn_linear(x.to_mkldnn(), weight, bias).to_dense()
        return y

    return forward
