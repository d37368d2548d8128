"""VGGish weights: the file format (:mod:`.format`), conversion from TensorFlow checkpoints and
other ports (:mod:`.convert`, :mod:`.tf_checkpoint`), downloads (:mod:`.download`), the official
install (:mod:`.install`) and Google's smoke test (:mod:`.verify`). Imports point one way:
location <- format <- convert <- install; download <- install.

This package namespace re-exports the format, what most callers need; each name is imported on
first use, so asking where the weights live (:mod:`.location`) does not import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vggish.fileio import sha256_file
    from vggish.weights.format import (
        EXPECTED_SHAPES,
        FORMAT_NAME,
        FORMAT_VERSION,
        PCA_EIGEN_VECTORS_KEY,
        PCA_MEANS_KEY,
        RANDOM_SEED,
        LoadedWeights,
        PCAParams,
        load_weights,
        missing_weights_message,
        random_weights,
        save_weights,
    )
    from vggish.weights.location import (
        DEFAULT_WEIGHTS_NAME,
        OFFICIAL_CHECKPOINT_NAME,
        OFFICIAL_PCA_NAME,
        RANDOM,
        default_weights_dir,
        default_weights_path,
    )

_LOCATION = (
    "DEFAULT_WEIGHTS_NAME",
    "OFFICIAL_CHECKPOINT_NAME",
    "OFFICIAL_PCA_NAME",
    "RANDOM",
    "default_weights_dir",
    "default_weights_path",
)
_FORMAT = (
    "EXPECTED_SHAPES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PCA_EIGEN_VECTORS_KEY",
    "PCA_MEANS_KEY",
    "RANDOM_SEED",
    "LoadedWeights",
    "PCAParams",
    "load_weights",
    "missing_weights_message",
    "random_weights",
    "save_weights",
)
__all__ = [
    "DEFAULT_WEIGHTS_NAME",
    "EXPECTED_SHAPES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "OFFICIAL_CHECKPOINT_NAME",
    "OFFICIAL_PCA_NAME",
    "PCA_EIGEN_VECTORS_KEY",
    "PCA_MEANS_KEY",
    "RANDOM",
    "RANDOM_SEED",
    "LoadedWeights",
    "PCAParams",
    "default_weights_dir",
    "default_weights_path",
    "load_weights",
    "missing_weights_message",
    "random_weights",
    "save_weights",
    "sha256_file",
]


def __getattr__(name: str) -> Any:
    if name == "sha256_file":
        module = "vggish.fileio"
    elif name in _LOCATION:
        module = "vggish.weights.location"
    elif name in _FORMAT:
        module = "vggish.weights.format"
    else:
        raise AttributeError(f"module 'vggish.weights' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
