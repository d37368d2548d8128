"""The project's weights file format: save, load (memory-mapped) and validate; random weights.

safetensors, version 1: the :class:`vggish.network.model.VGGish` state dict in PyTorch layouts,
float32, keys exactly :data:`EXPECTED_SHAPES` (``fc1_1.weight`` in TensorFlow's NHWC flatten
order); optionally both PCA tensors, float64; metadata ``format``, ``format_version`` and the
converter's provenance. Files are refused, with the reason, when a key, shape or dtype is off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from vggish import params
from vggish.fileio import atomic_output, sha256_file
from vggish.network.model import CONV_LAYERS, FC_LAYERS
from vggish.weights.location import OFFICIAL_CHECKPOINT_NAME, OFFICIAL_PCA_NAME, RANDOM

FORMAT_NAME = "vggish-weights"
FORMAT_VERSION = "1"
RANDOM_SEED = 20200817  # fixed: "random" weights are the same on every machine and run

PCA_EIGEN_VECTORS_KEY = "pca.eigen_vectors"
PCA_MEANS_KEY = "pca.means"
PCA_SHAPES = {
    PCA_EIGEN_VECTORS_KEY: (params.EMBEDDING_SIZE, params.EMBEDDING_SIZE),
    PCA_MEANS_KEY: (params.EMBEDDING_SIZE,),
}


EXPECTED_SHAPES: dict[str, tuple[int, ...]] = {
    key: shape
    for name, n_in, n_out in CONV_LAYERS + FC_LAYERS
    for key, shape in (
        (f"{name}.weight", (n_out, n_in, 3, 3) if name.startswith("conv") else (n_out, n_in)),
        (f"{name}.bias", (n_out,)),
    )
}


@dataclass(frozen=True)
class PCAParams:
    """AudioSet's PCA parameters: ``eigen_vectors`` (128, 128) and ``means`` (128,), float64."""

    eigen_vectors: np.ndarray
    means: np.ndarray

    def __post_init__(self) -> None:
        size = params.EMBEDDING_SIZE
        if self.eigen_vectors.shape != (size, size):
            raise ValueError(f"PCA eigen vectors must be ({size}, {size}); got {self.eigen_vectors.shape}")
        if self.means.shape != (size,):
            raise ValueError(f"PCA means must be ({size},); got {self.means.shape}")
        if not (np.isfinite(self.eigen_vectors).all() and np.isfinite(self.means).all()):
            raise ValueError("PCA parameters contain NaN or Inf")


@dataclass(frozen=True)
class LoadedWeights:
    """A validated weights file: tensors, optional PCA, metadata and the file's SHA-256."""

    state_dict: dict[str, torch.Tensor]
    pca: PCAParams | None
    metadata: dict[str, str] = field(default_factory=dict)
    sha256: str = ""


def missing_weights_message(path: Path) -> str:
    """One line that says how to get the official weights into ``path``."""
    return (
        f"no VGGish weights at {path}: run `vggish download --dir {path.parent}` (needs internet), "
        f"or put Google's {OFFICIAL_CHECKPOINT_NAME} and {OFFICIAL_PCA_NAME} in {path.parent}, "
        'or try random demo weights: vggish.load_model("random") in Python, --weights random '
        "on the command line"
    )


def _validate_tensors(tensors: Mapping[str, torch.Tensor], where: str) -> None:
    keys = set(tensors)
    pca_keys = keys & set(PCA_SHAPES)
    problems = [f"missing {k}" for k in EXPECTED_SHAPES if k not in keys]
    problems += [f"unexpected {k}" for k in sorted(keys - set(EXPECTED_SHAPES) - set(PCA_SHAPES))]
    if len(pca_keys) == 1:
        problems.append(f"{next(iter(pca_keys))} without its PCA partner")
    for key, tensor in tensors.items():
        shape = EXPECTED_SHAPES.get(key) or PCA_SHAPES.get(key)
        dtype = torch.float64 if key in PCA_SHAPES else torch.float32
        if shape is not None and tuple(tensor.shape) != shape:
            problems.append(f"{key} has shape {tuple(tensor.shape)}, expected {shape}")
        if shape is not None and tensor.dtype != dtype:
            problems.append(f"{key} has dtype {tensor.dtype}, expected {dtype}")
    if problems:
        raise ValueError(f"{where} is not a VGGish weights file: " + "; ".join(problems))


def save_weights(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor | np.ndarray],
    pca: PCAParams | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Validates and writes a ``.safetensors`` weights file atomically (its folder created if
    needed); ``metadata``: provenance strings, stored beside ``format`` and ``format_version``."""
    tensors = {
        k: torch.as_tensor(np.asarray(v), dtype=torch.float32).contiguous() for k, v in state_dict.items()
    }
    if pca is not None:
        tensors[PCA_EIGEN_VECTORS_KEY] = torch.from_numpy(np.ascontiguousarray(pca.eigen_vectors, np.float64))
        tensors[PCA_MEANS_KEY] = torch.from_numpy(np.ascontiguousarray(pca.means, np.float64))
    _validate_tensors(tensors, "the state dict to save")
    meta = {**(metadata or {}), "format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return out


def load_weights(path: str | os.PathLike[str]) -> LoadedWeights:
    """Reads and validates a weights file by memory map.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not a safetensors file or its keys, shapes or dtypes are off.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(missing_weights_message(file))
    try:
        with safe_open(str(file), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except Exception as e:  # safetensors raises its own error types for malformed headers
        raise ValueError(f"{file} is not a readable safetensors file ({e})") from e
    if metadata.get("format") != FORMAT_NAME:
        raise ValueError(
            f"{file} is not a VGGish weights file (metadata format={metadata.get('format')!r}); "
            "convert checkpoints with `vggish convert`"
        )
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{file} has weights format version {metadata.get('format_version')!r}; "
            f"this vggish reads version {FORMAT_VERSION}"
        )
    _validate_tensors(tensors, str(file))
    pca = None
    if PCA_EIGEN_VECTORS_KEY in tensors:
        pca = PCAParams(tensors.pop(PCA_EIGEN_VECTORS_KEY).numpy(), tensors.pop(PCA_MEANS_KEY).numpy())
    return LoadedWeights(tensors, pca, metadata, sha256_file(file))


def random_weights() -> LoadedWeights:
    """Deterministic random weights (He-normal) and PCA parameters (orthogonal), for demos and tests."""
    gen = torch.Generator().manual_seed(RANDOM_SEED)
    state: dict[str, torch.Tensor] = {}
    for key, shape in EXPECTED_SHAPES.items():
        fan_in = int(np.prod(shape[1:]))
        if key.endswith(".bias"):
            state[key] = 0.01 * torch.randn(shape, generator=gen)
        else:
            gain = 1.0 if key.startswith("fc2.") else 2.0
            state[key] = torch.randn(shape, generator=gen) * float(np.sqrt(gain / fan_in))
    rng = np.random.default_rng(RANDOM_SEED)
    q, _ = np.linalg.qr(rng.standard_normal((params.EMBEDDING_SIZE, params.EMBEDDING_SIZE)))
    pca = PCAParams(q.T.copy(), 0.1 * rng.standard_normal(params.EMBEDDING_SIZE))
    return LoadedWeights(state, pca, {"source": RANDOM, "seed": str(RANDOM_SEED)}, RANDOM)
