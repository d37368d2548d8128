"""What a head is: its limits and its scores (standardise, ``linear`` or ``mlp`` layers, softmax;
NumPy float32, the same for a head just trained and one read from a file)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Literal

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
    """``name`` if it is 1-64 characters of ``[A-Za-z0-9_.-]``, other than ``.`` and ``..``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise InvalidInputError(
            f"a head name is 1-64 characters of A-Z a-z 0-9 _ . - (not . or ..); got {name!r}"
        )
    return name


def check_label(label: object) -> str:
    """``label`` if it can name a class: 1-``MAX_CLASS_CHARS`` characters, not blank, without
    control characters or unpaired surrogates (which no database stores)."""
    if not isinstance(label, str) or not label.strip():
        raise InvalidInputError(f"every label must be a non-empty string; got {label!r}")
    if len(label) > MAX_CLASS_CHARS:
        raise InvalidInputError(f"a label has at most {MAX_CLASS_CHARS} characters; got {len(label)}")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in label):
        raise InvalidInputError(f"a label holds no control characters or lone surrogates; got {label!r}")
    return label


def check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """(N, 128) finite values within ±``MAX_ABS_FEATURE`` (a valid head's scores stay finite), as float32."""
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
    """How well a head fits: held-out accuracy over ``folds`` folds (None, 0 when a class has one
    clip), and accuracy on its own training clips."""

    cv_accuracy: float | None
    train_accuracy: float
    folds: int


@dataclass(frozen=True)
class Head:
    """A trained classifier head: float32 tensors named as in its file (``out.weight`` (C, D_in),
    ``out.bias``, and ``hidden.*`` for ``mlp``), the training set's (128,) ``mean`` and floored
    ``std``, ``classes`` in score order, and what it is bound to (``features``)."""

    kind: HeadKind
    classes: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weights: dict[str, np.ndarray] = field(repr=False)
    num_examples: int = 0
    metrics: HeadMetrics | None = None
    features: FeatureSpec = UNKNOWN_FEATURES

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities: (N, 128) embeddings -> (N, C) float32, each row summing to 1."""
        h = ((check_embeddings(embeddings) - self.mean) / self.std).astype(np.float32)
        if "hidden.weight" in self.weights:
            h = np.maximum(h @ self.weights["hidden.weight"].T + self.weights["hidden.bias"], 0.0)
        logits = h @ self.weights["out.weight"].T + self.weights["out.bias"]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs: np.ndarray = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return probs

    def top_labels(self, embeddings: np.ndarray, top_k: int | None = None) -> list[list[dict[str, Any]]]:
        """Each of the (N, 128) rows' best ``top_k`` labels (None: all), ``{"label", "score"}``."""
        scores = self.scores(embeddings)
        return [
            [{"label": self.classes[c], "score": float(scores[i, c])} for c in order]
            for i, order in enumerate(ranked(scores, top_k))
        ]


def clip_mean(embeddings: np.ndarray) -> np.ndarray:
    """(128,) float32: the mean of a clip's example embeddings (summed in float64)."""
    return embeddings.mean(axis=0, dtype=np.float64).astype(np.float32)  # type: ignore[no-any-return]


def ranked(scores: np.ndarray, top_k: int | None = None) -> np.ndarray:
    """(N, min(top_k, C)) class indices of each row of (N, C) scores, best first (ties: lower index
    first; ``top_k`` None: all)."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
