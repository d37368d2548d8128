"""VGGish weights: the file format (:mod:`.format`), conversion from TensorFlow checkpoints and
other ports (:mod:`.convert`, :mod:`.tf_checkpoint`), downloads (:mod:`.download`), the official
install (:mod:`.install`) and Google's smoke test (:mod:`.verify`). This namespace re-exports the
format and the location, each name imported on first use (asking where the weights live does not
import PyTorch).
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

_LOCATION = "vggish.weights.location"
_FORMAT = "vggish.weights.format"
_HOMES = {
    "DEFAULT_WEIGHTS_NAME": _LOCATION,
    "OFFICIAL_CHECKPOINT_NAME": _LOCATION,
    "OFFICIAL_PCA_NAME": _LOCATION,
    "RANDOM": _LOCATION,
    "default_weights_dir": _LOCATION,
    "default_weights_path": _LOCATION,
    "sha256_file": "vggish.fileio",
}
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
    if name not in __all__:
        raise AttributeError(f"module 'vggish.weights' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES.get(name, _FORMAT)), name)
    globals()[name] = value
    return value
