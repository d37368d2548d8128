"""How each layer is computed on the CPU, a :class:`Plan`: convolutions ``direct`` (the module's
``nn.Conv2d``; ONNX ``Conv``), ``direct_chunked`` (the same a few examples at a time, so ReLU and
pool read from cache) or ``winograd4`` (F(4x4, 3x3)); fully connected layers ``dense``
(``F.linear``) or ``onednn`` (eager PyTorch only). :data:`TORCH_DEFAULT` and :data:`ONNX_DEFAULT`
are the plans measured fastest."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from vggish.network import winograd
from vggish.network.model import CONV_LAYERS, FC_LAYERS, LayerFn, LinearFn, VGGish

ConvAlgorithm = Literal["direct", "direct_chunked", "winograd4"]
FcAlgorithm = Literal["dense", "onednn"]

CONV_ALGORITHMS: tuple[ConvAlgorithm, ...] = get_args(ConvAlgorithm)
FC_ALGORITHMS: tuple[FcAlgorithm, ...] = get_args(FcAlgorithm)
TILES: Mapping[str, int] = {"winograd4": 4}  # the Winograd algorithms and their output tile size m
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
    conv = tuple(direct if tiles[name] == 0 else f"winograd{tiles[name]}" for name in CONV_NAMES)
    return Plan(conv, fc)  # type: ignore[arg-type]


DIRECT = Plan()  # every layer as the module computes it
TORCH_DEFAULT = _plan_of_tiles(winograd.TORCH_TILES, "direct_chunked", "onednn")
ONNX_DEFAULT = _plan_of_tiles(winograd.ONNX_TILES, "direct", "dense")


def conv_layers(network: VGGish, plan: Plan, kernels: Mapping[str, torch.Tensor]) -> dict[str, LayerFn]:
    """The layer functions of ``plan``'s convolutions that do not run as the module's
    ``nn.Conv2d``; ``kernels``: each Winograd layer's transformed kernels."""
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
    """Whether this build of PyTorch has oneDNN."""
    return bool(torch.backends.mkldnn.is_available())  # type: ignore[no-untyped-call]


def onednn_linear(linear: torch.nn.Linear) -> LinearFn:
    """``linear`` computed by oneDNN (float32) on a oneDNN copy of its weights, dense in and out."""
    weight = linear.weight.detach().to_mkldnn()
    bias = linear.bias.detach().to_mkldnn()

    def forward(x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = torch.ops.aten.mkldnn_linear(x.to_mkldnn(), weight, bias).to_dense()
        return y

    return forward
