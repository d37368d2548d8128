"""VGGish weights: the file format (:mod:`.format`), conversion from TensorFlow checkpoints and
other ports (:mod:`.convert`, :mod:`.tf_checkpoint`), downloads (:mod:`.download`), the official
install (:mod:`.install`) and Google's smoke test (:mod:`.verify`). This namespace re-exports the
location, and the format's names on first use (asking where the weights live does not import
PyTorch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vggish.fileio import sha256_file
from vggish.weights.location import (
    DEFAULT_WEIGHTS_NAME,
    OFFICIAL_CHECKPOINT_NAME,
    OFFICIAL_PCA_NAME,
    RANDOM,
    default_weights_path,
)

if TYPE_CHECKING:
    from vggish.weights.format import (
        EXPECTED_SHAPES,
        LoadedWeights,
        PCAParams,
        load_weights,
        random_weights,
        save_weights,
    )

__all__ = [
    "DEFAULT_WEIGHTS_NAME",
    "EXPECTED_SHAPES",
    "OFFICIAL_CHECKPOINT_NAME",
    "OFFICIAL_PCA_NAME",
    "RANDOM",
    "LoadedWeights",
    "PCAParams",
    "default_weights_path",
    "load_weights",
    "random_weights",
    "save_weights",
    "sha256_file",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'vggish.weights' has no attribute {name!r}")
    value = getattr(importlib.import_module("vggish.weights.format"), name)  # imports PyTorch
    globals()[name] = value
    return value
