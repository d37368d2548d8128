"""Classifier heads: small fully-connected classifiers over clip-level VGGish embeddings.

By job: :mod:`.head` (limits and scores), :mod:`.identity` (the weights a head is bound to),
:mod:`.training` (fit and cross-validation), :mod:`.format` (its safetensors file), :mod:`.store`
(SQLite or PostgreSQL). Training is imported on first use: reading, scoring and storing heads do
not import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vggish.heads.format import MAX_ABS_WEIGHT, MAX_HEADER_BYTES, MIN_STD, from_safetensors, to_safetensors
from vggish.heads.head import (
    MAX_ABS_FEATURE,
    MAX_CLASS_CHARS,
    MAX_CLASSES,
    MAX_FOLDS,
    MAX_NUM_EXAMPLES,
    Head,
    HeadKind,
    HeadMetrics,
    check_label,
    clip_mean,
    ranked,
    validate_name,
)
from vggish.heads.identity import UNKNOWN_FEATURES, FeatureSpec, WeightsMismatchError, check_compatible

if TYPE_CHECKING:
    from vggish.heads.training import TRAIN_STEPS, stratified_folds, train

_TRAINING = ("TRAIN_STEPS", "stratified_folds", "train")
__all__ = [
    "MAX_ABS_FEATURE",
    "MAX_ABS_WEIGHT",
    "MAX_CLASSES",
    "MAX_CLASS_CHARS",
    "MAX_FOLDS",
    "MAX_HEADER_BYTES",
    "MAX_NUM_EXAMPLES",
    "MIN_STD",
    "TRAIN_STEPS",
    "UNKNOWN_FEATURES",
    "FeatureSpec",
    "Head",
    "HeadKind",
    "HeadMetrics",
    "WeightsMismatchError",
    "check_compatible",
    "check_label",
    "clip_mean",
    "from_safetensors",
    "ranked",
    "stratified_folds",
    "to_safetensors",
    "train",
    "validate_name",
]


def __getattr__(name: str) -> Any:
    if name not in _TRAINING:
        raise AttributeError(f"module 'vggish.heads' has no attribute {name!r}")
    value = getattr(importlib.import_module("vggish.heads.training"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
