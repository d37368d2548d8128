"""What computes the network: PyTorch (any device) or ONNX Runtime (CPU).

A backend is a callable ``(N, 96, 64) examples -> (N, 128) float32 NumPy embeddings``, with a
``name``. :class:`TorchBackend` also owns the per-layer choice of convolution algorithm (direct,
or Winograd on the CPU; :mod:`vggish.winograd`) and the transformed kernels that choice needs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Literal, Protocol

import numpy as np
import torch

from vggish import winograd
from vggish.frontend_torch import to_device
from vggish.model import LayerFn, VGGish

Algorithm = Literal["direct", "winograd2"]
"""How one convolution layer is computed: ``nn.Conv2d`` (oneDNN / cuDNN), or Winograd F(2x2, 3x3)."""

DEFAULT_PLAN: Mapping[str, Algorithm] = dict.fromkeys(sorted(winograd.LAYERS), "winograd2")
"""Layers that do not run directly by default: conv3_1 ... conv4_2 as Winograd F(2x2, 3x3)."""


class Backend(Protocol):
    """Computes the network: (N, 96, 64) float examples -> (N, 128) float32 NumPy embeddings."""

    name: str

    def __call__(self, examples: np.ndarray | torch.Tensor) -> np.ndarray: ...


class TorchBackend:
    """The network in PyTorch, with Winograd convolutions where they pay (CPU, float32, no grad).

    Args:
        network: the module, on its device and in its dtype.
        plan: algorithm per convolution layer (missing layers run directly).
    """

    name = "torch"

    def __init__(self, network: VGGish, plan: Mapping[str, Algorithm] = DEFAULT_PLAN) -> None:
        self.network = network
        self.plan = dict(plan)
        self.winograd = True  # False: every layer direct (``model.winograd = False``)
        self._kernels: dict[str, tuple[tuple[object, ...], torch.Tensor]] = {}

    @property
    def device(self) -> torch.device:
        return self.network.conv1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.network.conv1.weight.dtype

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """The network on a tensor, with gradients when recorded (then every layer is direct)."""
        out: torch.Tensor = self.network(examples, self.layers(examples))
        return out

    def __call__(self, examples: np.ndarray | torch.Tensor) -> np.ndarray:
        """Embeds examples without autograd; NumPy input reaches a GPU through pinned memory."""
        with torch.inference_mode():
            if isinstance(examples, torch.Tensor):
                batch = examples.to(self.device, dtype=self.dtype)
            else:
                batch = to_device(np.asarray(examples, dtype=np.float32), self.device, self.dtype)
            out: np.ndarray = self.forward(batch).float().cpu().numpy()
        return out

    def layers(self, examples: torch.Tensor) -> dict[str, LayerFn] | None:
        """The replaced layers for this input, or None when every layer runs directly.

        Winograd runs on the CPU in float32 when no weight gradient is recorded
        (``inference_mode``, ``no_grad`` or frozen weights), so fine-tuning keeps exact gradients.
        """
        weight = self.network.conv3_1.weight
        usable = (
            self.winograd
            and examples.device.type == "cpu"
            and examples.dtype == weight.dtype == torch.float32
            and not (torch.is_grad_enabled() and weight.requires_grad)
        )
        if not usable:
            return None
        kernels = {
            name: self._transformed(name, algo) for name, algo in self.plan.items() if algo != "direct"
        }
        return plan_layers(self.network, self.plan, kernels) or None

    def _transformed(self, name: str, algo: Algorithm) -> torch.Tensor:
        """The layer's transformed kernels, recomputed when its weights change (even in place)."""
        weight = getattr(self.network, name).weight
        key = (algo, weight.data_ptr(), weight._version, weight.dtype, weight.device)
        cached = self._kernels.get(name)
        if cached is None or cached[0] != key:
            cached = (key, transform_kernel(weight, algo))
            self._kernels[name] = cached
        return cached[1]


def transform_kernel(weight: torch.Tensor, algo: Algorithm) -> torch.Tensor:
    """A layer's (K, C, 3, 3) weights in the form ``algo`` multiplies with."""
    if algo == "winograd2":
        return winograd.transform_kernel(weight)
    raise ValueError(f"no kernel transform for algorithm {algo!r}")


def plan_layers(
    network: VGGish, plan: Mapping[str, Algorithm], kernels: Mapping[str, torch.Tensor]
) -> dict[str, LayerFn]:
    """The layer functions of ``plan``'s non-direct layers, given their transformed ``kernels``."""
    layers: dict[str, LayerFn] = {}
    for name, algo in plan.items():
        if algo == "direct":
            continue
        bias = getattr(network, name).bias
        layers[name] = functools.partial(_winograd_layer, kernels=kernels[name], bias=bias)
    return layers


def _winograd_layer(
    x: torch.Tensor, pool: bool, *, kernels: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    return winograd.conv3x3_relu(x, kernels, bias, pool)


class OnnxBackend:
    """The network as an exported graph in ONNX Runtime (CPU, float32).

    Args:
        session: the loaded graph, (N, 96, 64) float32 -> (N, 128) float32 (see
            :class:`vggish.onnx_export.OnnxVGGish`).
    """

    name = "onnx"

    def __init__(self, session: Callable[[np.ndarray], np.ndarray]) -> None:
        self.session = session

    def __call__(self, examples: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(examples, torch.Tensor):
            examples = examples.detach().float().cpu().numpy()
        return self.session(examples)
