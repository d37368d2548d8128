"""What a head is: a small classifier over 128-d VGGish embeddings, its limits and its scores.

A head standardises an embedding with its training set's mean and standard deviation, then
applies ``linear`` (one layer: multinomial logistic regression) or ``mlp`` (a ReLU hidden layer
of :data:`MLP_HIDDEN` units, then the output layer), and a softmax over its classes. Scoring is
NumPy float32, the same for a head just trained and one read from a file.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from vggish import params
from vggish.errors import InvalidInputError
from vggish.heads.identity import UNKNOWN_FEATURES, FeatureSpec

HeadKind = Literal["linear", "mlp"]
MLP_HIDDEN = 64  # units of the mlp head's hidden layer
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Limits of what a head holds; training and importing enforce the same ones.
MAX_CLASSES = 1000  # AudioSet itself has 527
MAX_CLASS_CHARS = 256  # characters of one class label
MAX_NUM_EXAMPLES = 2**63 - 1  # fits a signed 64-bit integer column (SQLite's, PostgreSQL's bigint)
MAX_ABS_FEATURE = 1e6  # training and scoring refuse larger values (VGGish embeddings are far smaller)
STD_FLOOR = 1e-6  # a feature whose training std is below this is only centred, not scaled
MAX_FOLDS = 5  # cross-validation folds at most


def validate_name(name: str) -> str:
    """Returns ``name`` if it is 1-64 characters of ``[A-Za-z0-9_.-]``, other than ``.`` and ``..``.

    Raises:
        InvalidInputError: any other name.
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidInputError(
            f"a head name is 1-64 characters of A-Z a-z 0-9 _ . - (not . or ..); got {name!r}"
        )
    return name


def check_label(label: object) -> str:
    """Returns ``label`` if it can name a class: a string of 1-``MAX_CLASS_CHARS`` characters,
    not blank, without control characters or unpaired surrogates (which no database stores).

    Raises:
        InvalidInputError: any other label.
    """
    if not isinstance(label, str) or not label.strip():
        raise InvalidInputError(f"every label must be a non-empty string; got {label!r}")
    if len(label) > MAX_CLASS_CHARS:
        raise InvalidInputError(f"a label has at most {MAX_CLASS_CHARS} characters; got {len(label)}")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in label):
        raise InvalidInputError(f"a label holds no control characters or lone surrogates; got {label!r}")
    return label


def check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """(N, 128) finite values within ±``MAX_ABS_FEATURE`` (so that a valid head's scores stay
    finite), as float32.

    Raises:
        InvalidInputError: another shape, NaN or infinity, or larger values.
    """
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[1] != params.EMBEDDING_SIZE:
        raise InvalidInputError(f"embeddings must be (N, {params.EMBEDDING_SIZE}); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidInputError("embeddings hold NaN or infinite values")
    if x.size and np.abs(x).max() > MAX_ABS_FEATURE:
        raise InvalidInputError(f"embedding values must lie within ±{MAX_ABS_FEATURE:g}; VGGish's do")
    return x.astype(np.float32)


@dataclass(frozen=True)
class HeadMetrics:
    """How well a head fits its training clips.

    Attributes:
        cv_accuracy: mean accuracy over the held-out folds, or None when a class has one clip.
        train_accuracy: accuracy of the final head on its own training clips.
        folds: cross-validation folds (0 when not cross-validated).
    """

    cv_accuracy: float | None
    train_accuracy: float
    folds: int


@dataclass(frozen=True)
class Head:
    """A trained classifier head (float32 tensors, named as in its safetensors file).

    Attributes:
        kind: ``linear`` or ``mlp``.
        classes: the class labels, in the order of the output scores.
        mean: (128,) feature means of the training set.
        std: (128,) feature standard deviations (floored: see ``STD_FLOOR``).
        weights: the layers' tensors: ``out.weight`` (C, D_in) and ``out.bias`` (C,), plus
            ``hidden.weight`` (64, 128) and ``hidden.bias`` (64,) for ``mlp``.
        num_examples: clips it was trained on.
        metrics: its training metrics, when known.
        features: what it is bound to (the weights that made its training embeddings), when known.
    """

    kind: HeadKind
    classes: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weights: dict[str, np.ndarray] = field(repr=False)
    num_examples: int = 0
    metrics: HeadMetrics | None = None
    features: FeatureSpec = UNKNOWN_FEATURES

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities: (N, 128) embeddings -> (N, C) float32, each row summing to 1.

        Raises:
            InvalidInputError: not (N, 128), not finite, or beyond ±``MAX_ABS_FEATURE``.
        """
        z = (check_embeddings(embeddings) - self.mean) / self.std
        h = z.astype(np.float32)
        if "hidden.weight" in self.weights:
            h = np.maximum(h @ self.weights["hidden.weight"].T + self.weights["hidden.bias"], 0.0)
        logits = h @ self.weights["out.weight"].T + self.weights["out.bias"]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs: np.ndarray = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return probs


def ranked(scores: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """The classes of each row of scores, best first (ties: lower class index first).

    Args:
        scores: (N, C) scores.
        top_k: keep the best ``top_k`` of each row (None: all).

    Returns:
        (N, min(top_k, C)) int64 class indices.
    """
    order: np.ndarray = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :top_k]
