"""VGGish weights: the file format (:mod:`.format`), conversion from TensorFlow checkpoints and
other ports (:mod:`.convert`, :mod:`.tf_checkpoint`), downloads (:mod:`.download`) and the official
install (:mod:`.install`). Imports point one way: format <- convert <- install; download <- install.

This package namespace re-exports the format, what most callers need.
"""

from vggish.weights.format import (
    DEFAULT_WEIGHTS_NAME,
    EXPECTED_SHAPES,
    FORMAT_NAME,
    FORMAT_VERSION,
    OFFICIAL_CHECKPOINT_NAME,
    OFFICIAL_PCA_NAME,
    PCA_EIGEN_VECTORS_KEY,
    PCA_MEANS_KEY,
    RANDOM,
    RANDOM_SEED,
    LoadedWeights,
    PCAParams,
    default_weights_dir,
    default_weights_path,
    load_weights,
    missing_weights_message,
    random_weights,
    save_weights,
    sha256_file,
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
