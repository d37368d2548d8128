"""``load_model``: weights -> network -> placed on a device -> a backend -> a :class:`Runtime`."""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import warnings
from typing import get_args

import torch

from vggish.network import cpus
from vggish.network.backends import Backend, TorchBackend
from vggish.network.model import VGGish
from vggish.network.runtime import PRECISION_DTYPES, BackendName, PrecisionName, Runtime
from vggish.weights.convert import resolve_weights_path
from vggish.weights.format import LoadedWeights, load_weights, random_weights
from vggish.weights.location import RANDOM

logger = logging.getLogger(__name__)


def load_model(
    weights: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    backend: BackendName = "auto",
    precision: PrecisionName = "fp32",
    threads: int | None = None,
) -> Runtime:
    """Builds VGGish with weights, in eval mode, ready for the fastest inference this machine has.

    Args:
        weights: a ``.safetensors`` weights file, ``"random"`` (demos and tests only), or None for
            the official weights at :func:`vggish.default_weights_path`.
        device: where to put the model (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).
        backend: what ``model.infer`` runs: ``"torch"``, ``"onnx"`` (CPU), or ``"auto"``: ONNX
            Runtime on the CPU in fp32 when installed, else PyTorch.
        precision: ``"fp32"`` (Google's numbers), ``"fp16"`` or ``"bf16"`` (PyTorch backend).
        threads: intra-op threads (None: from the CPUs this process may use).

    Raises:
        FileNotFoundError: no weights where asked, with the ways to get them.
        ValueError: an unknown backend, precision or device; ``"onnx"`` on a device other than
            the CPU or in fp16/bf16; a CUDA device PyTorch does not see.
        RuntimeError: ``"onnx"`` without ``vggish[onnx]`` installed, or the graph failing to load.
    """
    on_cpu = check_options(device, backend, precision)
    loaded = read_weights(weights)
    network = build_network(loaded)
    place(network, device, precision)
    if on_cpu:
        threads = cpus.configure_torch_threads(threads)
        warn_if_slow(precision)
    info = {**loaded.metadata, "sha256": loaded.sha256}
    if backend == "onnx" or (backend == "auto" and on_cpu and precision == "fp32"):
        found = onnx_backend(network, info, threads, required=backend == "onnx")
        if found is not None:  # the PyTorch module is made again only if someone asks for it
            pca = None if loaded.pca is None else (loaded.pca.eigen_vectors.copy(), loaded.pca.means.copy())
            rebuild = functools.partial(_rebuilt_network, weights, device, precision)
            return Runtime(
                None, found, precision=precision, threads=threads, weights_info=info,
                build_network=rebuild, pca=pca, device=device,
            )  # fmt: skip
    return Runtime(network, TorchBackend(network), precision=precision, threads=threads, weights_info=info)


def _rebuilt_network(
    weights: str | os.PathLike[str] | None, device: str | torch.device, precision: str
) -> VGGish:
    """The module of ``load_model``'s weights again, placed as it placed it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        network = build_network(read_weights(weights))
    place(network, device, precision)
    return network


def warn_if_slow(precision: str) -> None:
    """Warns when ``precision`` has no instructions on this CPU (it works, emulated, but slowly)."""
    if precision == "bf16" and not cpus.has_bf16():
        warnings.warn(
            "precision='bf16' on a CPU without bfloat16 instructions (AVX512_BF16, AMX or ARM BF16): "
            "it works, but is emulated and slower than fp32; use precision='fp32' here",
            stacklevel=3,
        )


def check_options(device: str | torch.device, backend: str, precision: str) -> bool:
    """Raises ValueError naming the fix for bad runtime options; returns whether ``device`` is the CPU."""
    if backend not in get_args(BackendName):
        raise ValueError(f"backend must be one of {get_args(BackendName)}; got {backend!r}")
    if precision not in get_args(PrecisionName):
        raise ValueError(f"precision must be one of {get_args(PrecisionName)}; got {precision!r}")
    on_cpu = parse_device(device).type == "cpu"
    if backend == "onnx" and not on_cpu:
        raise ValueError(f"the onnx backend runs on the CPU; got device={device!r} (use backend='torch')")
    if backend == "onnx" and precision != "fp32":
        raise ValueError(f"the onnx backend runs in fp32; got precision={precision!r} (use backend='torch')")
    check_device(device)
    return on_cpu


def read_weights(weights: str | os.PathLike[str] | None) -> LoadedWeights:
    """The validated weights file (converting Google's files on first use), or the random ones."""
    if str(weights) == RANDOM:
        warnings.warn(
            "VGGish is using RANDOM weights: embeddings are meaningless (demos and tests only)",
            stacklevel=3,
        )
        return random_weights()
    return load_weights(resolve_weights_path(weights))


def build_network(loaded: LoadedWeights) -> VGGish:
    """The module with ``loaded``'s tensors and PCA parameters, in eval mode, on the CPU."""
    with torch.device("meta"):
        network = VGGish()
    network.load_state_dict(loaded.state_dict, assign=True)
    pca = loaded.pca
    no_pca = torch.empty(0, dtype=torch.float64)
    network.pca_eigen_vectors = torch.from_numpy(pca.eigen_vectors.copy()) if pca else no_pca
    network.pca_means = torch.from_numpy(pca.means.copy()) if pca else no_pca.clone()
    return network.eval()


def place(network: VGGish, device: str | torch.device, precision: str) -> None:
    """Moves the network to ``device`` in channels_last and casts its layers to ``precision``."""
    network.to(device=device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    dtype = PRECISION_DTYPES[precision]
    for module in network.children():
        module.to(dtype=dtype)


def onnx_installed() -> bool:
    """Whether the ``onnx`` extra is installed, without importing it."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def onnx_backend(
    network: VGGish, metadata: dict[str, str], threads: int | None, *, required: bool
) -> Backend | None:
    """ONNX Runtime computing ``network`` (a graph built in memory); unless ``required``, None when
    ONNX Runtime is missing or fails."""
    if not required and not onnx_installed():
        return None
    try:
        from vggish.network.onnx import OnnxVGGish

        return OnnxVGGish.from_network(network, metadata=metadata, threads=cpus.intra_op_threads(threads))
    except RuntimeError as e:
        if required:
            raise
        logger.warning("backend 'auto': ONNX Runtime unavailable (%s); using PyTorch", e)
        return None


def parse_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or ValueError naming the fix."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'") from e


def check_device(device: str | torch.device) -> None:
    """Raises ValueError naming the fix when ``device`` is a CUDA GPU that PyTorch does not see."""
    dev = parse_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise ValueError(
                f"device={str(device)!r}, but PyTorch sees no CUDA GPU here (torch {torch.__version__}, "
                f"{built}); use device='cpu', or install a CUDA build of torch on a machine with a GPU"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={str(device)!r}, but there are {torch.cuda.device_count()} CUDA GPUs")
