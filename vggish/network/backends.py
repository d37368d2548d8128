"""What computes the network: PyTorch (any device, with a :class:`~vggish.network.plans.Plan` and
the kernels it needs) or ONNX Runtime (CPU)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from vggish.features.logmel_torch import to_device
from vggish.network import plans, winograd
from vggish.network.model import LayerFn, LinearFn, VGGish
from vggish.network.plans import ConvAlgorithm, Plan

T = TypeVar("T")


class Backend(Protocol):
    """Computes the network: (N, 96, 64) float examples -> (N, 128) float32 NumPy embeddings."""

    name: str

    def __call__(self, examples: np.ndarray | torch.Tensor) -> np.ndarray: ...


class TorchBackend:
    """The network in PyTorch, each layer computed as a :class:`~.plans.Plan` says (CPU, no grad)."""

    name = "torch"

    def __init__(self, network: VGGish, plan: Plan = plans.TORCH_DEFAULT) -> None:
        self.network = network
        self.plan = plan
        self.winograd = True  # False: every layer as the module computes it (``model.winograd = False``)
        self._cache: dict[str, tuple[tuple[object, ...], Any]] = {}  # layer -> (its key, made for it)

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        """The network on a tensor, with gradients when recorded (then every layer is direct)."""
        out: torch.Tensor = self.network(examples, self.layers(examples), self.linears(examples))
        return out

    def __call__(self, examples: np.ndarray | torch.Tensor) -> np.ndarray:
        """Embeds examples without autograd; NumPy input reaches a GPU through pinned memory."""
        weight = self.network.conv1.weight
        with torch.inference_mode():
            if isinstance(examples, torch.Tensor):
                batch = examples.to(weight.device, dtype=weight.dtype)
            else:
                batch = to_device(np.asarray(examples, dtype=np.float32), weight.device, weight.dtype)
            return self.forward(batch).float().cpu().numpy()

    def effective_plan(self, examples: torch.Tensor) -> Plan:
        """The plan, less what does not apply: all direct off the CPU or with weight gradients;
        Winograd and oneDNN in float32 only."""
        weight = self.network.conv1.weight
        if (
            not self.winograd
            or examples.device.type != "cpu"
            or weight.device.type != "cpu"
            or (torch.is_grad_enabled() and weight.requires_grad)
        ):
            return plans.DIRECT
        if examples.dtype == weight.dtype == torch.float32:
            if self.plan.fc == "onednn" and not plans.onednn_available():
                return dataclasses.replace(self.plan, fc="dense")
            return self.plan
        conv = tuple("direct" if algo in plans.TILES else algo for algo in self.plan.conv)
        return Plan(conv, "dense")

    def layers(self, examples: torch.Tensor) -> dict[str, LayerFn] | None:
        """The replaced convolution layers for this input, or None when every one runs directly."""
        plan = self.effective_plan(examples)
        kernels = {name: self._transformed(name, plan.algorithm(name)) for name in plans.CONV_NAMES
                   if plan.algorithm(name) in plans.TILES}  # fmt: skip
        return plans.conv_layers(self.network, plan, kernels) or None

    def linears(self, examples: torch.Tensor) -> dict[str, LinearFn] | None:
        onednn = self.effective_plan(examples).fc == "onednn"
        return {name: self._onednn(name) for name in plans.FC_NAMES} if onednn else None

    def _transformed(self, name: str, algo: ConvAlgorithm) -> torch.Tensor:
        """The layer's transformed kernels, recomputed when its weights change (even in place)."""
        weight = getattr(self.network, name).weight
        key = (algo, weight.data_ptr(), weight._version, weight.dtype, weight.device)
        return self._cached(name, key, lambda: winograd.transform_kernel(weight, plans.TILES[algo]))

    def _onednn(self, name: str) -> LinearFn:
        """The layer's oneDNN copy, remade when its weights or bias change (even in place)."""
        linear = getattr(self.network, name)
        key = tuple((p.data_ptr(), p._version) for p in (linear.weight, linear.bias))
        return self._cached(name, key, lambda: plans.onednn_linear(linear))

    def _cached(self, name: str, key: tuple[object, ...], make: Callable[[], T]) -> T:
        cached = self._cache.get(name)
        if cached is None or cached[0] != key:
            cached = self._cache[name] = (key, make())
        value: T = cached[1]
        return value
