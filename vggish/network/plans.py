"""How each layer of the network is computed on the CPU: a :class:`Plan`.

A plan names one algorithm per convolution layer and one for the fully connected layers:

- ``direct``: the module's own ``nn.Conv2d`` (oneDNN on the CPU, channels_last), the whole batch
  at once; in an ONNX graph, ``Conv``.
- ``direct_chunked``: the same convolution a few examples at a time, so that its ReLU and pool
  read the output from cache (:func:`vggish.network.winograd.conv3x3_relu_direct`); in an ONNX
  graph, ``Conv``.
- ``winograd4``: Winograd F(4x4, 3x3) (:func:`vggish.network.winograd.conv3x3_relu`), 4x fewer
  multiplications, chunked in eager PyTorch, one graph in ONNX.
- fully connected layers: ``dense`` (``F.linear``: the BLAS torch was built with) or ``onednn``
  (``torch.utils.mkldnn``, eager PyTorch only: faster on skinny products, at the cost of a packed
  copy of the fc weights).

Which plan wins depends on the CPU; :data:`TORCH_DEFAULT` and :data:`ONNX_DEFAULT` are the ones
measured fastest (docs/winograd.md; ``benchmarks/bench_winograd.py`` measures another machine).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from vggish.network import winograd
from vggish.network.model import CONV_LAYERS, FC_LAYERS, LayerFn, LinearFn, VGGish

ConvAlgorithm = Literal["direct", "direct_chunked", "winograd4"]
"""How one 3x3 convolution layer (+ ReLU, + its 2x2 pool) is computed; see the module docstring."""
FcAlgorithm = Literal["dense", "onednn"]
"""How the fully connected layers are computed: ``F.linear`` or oneDNN (eager PyTorch, float32)."""

CONV_ALGORITHMS: tuple[ConvAlgorithm, ...] = get_args(ConvAlgorithm)
FC_ALGORITHMS: tuple[FcAlgorithm, ...] = get_args(FcAlgorithm)
TILES: Mapping[str, int] = {"winograd4": 4}
"""The Winograd algorithms and their output tile size m."""
CONV_NAMES: tuple[str, ...] = tuple(name for name, _, _ in CONV_LAYERS)
FC_NAMES: tuple[str, ...] = tuple(name for name, _, _ in FC_LAYERS)
_SHORT = {"direct": "d", "direct_chunked": "c", "winograd4": "w4"}


@dataclass(frozen=True)
class Plan:
    """The six convolution layers' algorithms (``conv``, conv1 first) and the fully connected
    layers' (``fc``); ValueError for a wrong number of layers or an unknown algorithm."""

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

    def algorithm(self, layer: str) -> ConvAlgorithm:
        """The algorithm of convolution layer ``layer`` (``"conv3_1"``...)."""
        return self.conv[CONV_NAMES.index(layer)]

    @property
    def tag(self) -> str:
        """A short code of the convolution algorithms, ``c-w4-w4-w4-w4-w4`` (ONNX metadata)."""
        return "-".join(_SHORT[a] for a in self.conv)


def _plan_of_tiles(tiles: Mapping[str, int], direct: ConvAlgorithm, fc: FcAlgorithm) -> Plan:
    """A plan from a measured table of tile sizes (0: a direct convolution)."""
    conv = tuple(direct if tiles[name] == 0 else f"winograd{tiles[name]}" for name in CONV_NAMES)
    return Plan(conv, fc)  # type: ignore[arg-type]


DIRECT = Plan()
"""Every layer as the module computes it (``nn.Conv2d``, ``F.linear``)."""
TORCH_DEFAULT = _plan_of_tiles(winograd.TORCH_TILES, "direct_chunked", "onednn")
"""Eager PyTorch: conv1 direct in chunks, F(4x4) from conv2 on, fully connected layers through oneDNN."""
ONNX_DEFAULT = _plan_of_tiles(winograd.ONNX_TILES, "direct", "dense")
"""The ONNX graph: ``Conv`` for conv1 and conv2, F(4x4) from conv3_1 on."""


def transform_kernel(weight: torch.Tensor, algo: ConvAlgorithm) -> torch.Tensor:
    """A layer's (K, C, 3, 3) weights in the form ``algo`` multiplies with (Winograd only)."""
    if algo not in TILES:
        raise ValueError(f"no kernel transform for algorithm {algo!r}")
    return winograd.transform_kernel(weight, TILES[algo])


def conv_layers(network: VGGish, plan: Plan, kernels: Mapping[str, torch.Tensor]) -> dict[str, LayerFn]:
    """The layer functions, NHWC ``(x, pool) -> relu(conv(x) + b)`` (+ pool), of ``plan``'s
    convolutions that do not run as the module's ``nn.Conv2d``; ``kernels``: each Winograd layer's
    transformed kernels (:func:`transform_kernel`)."""
    layers: dict[str, LayerFn] = {}
    for name, algo in zip(CONV_NAMES, plan.conv, strict=True):
        conv = getattr(network, name)
        if algo == "direct_chunked":
            layers[name] = functools.partial(_direct_layer, weight=conv.weight, bias=conv.bias)
        elif algo in TILES:
            layers[name] = functools.partial(
                _winograd_layer, kernels=kernels[name], bias=conv.bias, tile=TILES[algo]
            )
    return layers


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
    """``linear`` computed by oneDNN (float32) on a oneDNN copy of its weights, dense in and out:
    ``F.linear``'s arithmetic to float32 rounding (summation order)."""
    weight = linear.weight.detach().to_mkldnn()
    bias = linear.bias.detach().to_mkldnn()

    def forward(x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = torch.ops.aten.mkldnn_linear(x.to_mkldnn(), weight, bias).to_dense()
        return y

    return forward
