"""Classifier heads: small fully-connected classifiers over clip-level VGGish embeddings.

A head maps a 128-d embedding to one score per class (a softmax over its classes). It is
``linear`` (multinomial logistic regression) or ``mlp`` (one ReLU hidden layer). Features are
standardised with the training set's mean and standard deviation, which the head stores.

Training is deterministic: a fixed seed for the initial weights, then full-batch Adam for a fixed
number of steps in float64 NumPy (no random order, no threads racing), on a class-weighted loss
so that rare classes count as much as common ones. Accuracy is estimated by stratified k-fold
cross-validation.

>>> head, metrics = train(embeddings, labels, kind="linear")   # (N, 128) float32, N labels
>>> head.scores(new_embeddings)                                # (M, C) float32, rows sum to 1
>>> data = to_safetensors(head); head = from_safetensors(data)  # tensors + metadata, no pickle
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from vggish import params
from vggish.errors import InvalidInputError

HeadKind = Literal["linear", "mlp"]
FORMAT = "vggish-head"
FORMAT_VERSION = 1
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MLP_HIDDEN = 64  # units of the mlp head's hidden layer
MAX_FOLDS = 5  # cross-validation folds at most
TRAIN_STEPS = 500  # full-batch Adam steps (a fixed number: training is deterministic)
LEARNING_RATE = 0.01
ADAM_BETAS = (0.9, 0.999)
WEIGHT_DECAY = 1e-3  # L2 penalty on the weights (not the biases)
MAX_ABS_FEATURE = 1e6  # training refuses larger values (VGGish embeddings are far smaller)
STD_FLOOR = 1e-6  # a feature whose training std is below this is only centred, not scaled
DEFAULT_SEED = 0


def validate_name(name: str) -> str:
    """Returns ``name`` if it is 1-64 characters of ``[A-Za-z0-9_.-]``.

    Raises:
        ValueError: any other name.
    """
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidInputError(f"a head name is 1-64 characters of A-Z a-z 0-9 _ . -; got {name!r}")
    return name


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
    """

    kind: HeadKind
    classes: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weights: dict[str, np.ndarray] = field(repr=False)
    num_examples: int = 0
    metrics: HeadMetrics | None = None

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Class probabilities: (N, 128) embeddings -> (N, C) float32, each row summing to 1.

        Raises:
            ValueError: not (N, 128), or not finite.
        """
        z = (_check_embeddings(embeddings) - self.mean) / self.std
        logits, _ = _forward(self.weights, z.astype(np.float32))
        return _softmax(logits).astype(np.float32)


def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[1] != params.EMBEDDING_SIZE:
        raise InvalidInputError(f"embeddings must be (N, {params.EMBEDDING_SIZE}); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidInputError("embeddings hold NaN or infinite values")
    return x.astype(np.float32)


def _check_training_set(embeddings: np.ndarray, labels: Sequence[str], kind: str) -> np.ndarray:
    if kind not in get_args(HeadKind):
        raise InvalidInputError(f"kind must be one of {get_args(HeadKind)}; got {kind!r}")
    x = _check_embeddings(embeddings)
    if x.size and np.abs(x).max() > MAX_ABS_FEATURE:
        raise InvalidInputError(f"embedding values must lie within ±{MAX_ABS_FEATURE:g}; VGGish's do")
    if len(labels) != x.shape[0]:
        raise InvalidInputError(f"{x.shape[0]} embeddings but {len(labels)} labels: give one label per clip")
    if any(not isinstance(label, str) or not label.strip() for label in labels):
        raise InvalidInputError("every label must be a non-empty string")
    if len(set(labels)) < 2:
        raise InvalidInputError(f"a head needs at least 2 classes; got {sorted(set(labels))}")
    return x


def train(
    embeddings: np.ndarray, labels: Sequence[str], kind: HeadKind = "linear", seed: int = DEFAULT_SEED
) -> tuple[Head, HeadMetrics]:
    """Trains a head on clip embeddings, then cross-validates the same recipe.

    Args:
        embeddings: (N, 128) clip-level embeddings (e.g. the mean of each clip's examples).
        labels: N class labels, one per row.
        kind: ``linear`` or ``mlp``.
        seed: seeds the initial weights and the fold assignment.

    Returns:
        The head trained on every clip, and its metrics. ``cv_accuracy`` is the mean held-out
        accuracy over ``min(5, smallest class count)`` stratified folds, or None (``folds`` 0)
        when a class has a single clip.

    Raises:
        ValueError: wrong shape, NaN, mismatched counts, empty labels, or fewer than 2 classes.
    """
    x = _check_training_set(embeddings, labels, kind).astype(np.float64)
    classes = tuple(sorted(set(labels)))
    y = np.array([classes.index(label) for label in labels], dtype=np.int64)
    head = _fit(x, y, classes, kind, seed)
    train_accuracy = float(np.mean(head.scores(x.astype(np.float32)).argmax(axis=1) == y))
    folds = min(MAX_FOLDS, int(np.bincount(y).min()))
    cv_accuracy = None
    if folds >= 2:
        correct = 0
        for test in stratified_folds(y, folds, seed):
            keep = np.ones(y.size, dtype=bool)
            keep[test] = False
            fold_head = _fit(x[keep], y[keep], classes, kind, seed)
            correct += int(np.sum(fold_head.scores(x[test].astype(np.float32)).argmax(axis=1) == y[test]))
        cv_accuracy = correct / y.size
    metrics = HeadMetrics(cv_accuracy, train_accuracy, folds if folds >= 2 else 0)
    return Head(kind, classes, head.mean, head.std, head.weights, int(y.size), metrics), metrics


def stratified_folds(y: np.ndarray, folds: int, seed: int = DEFAULT_SEED) -> list[np.ndarray]:
    """Test indices of each fold: every class's rows shuffled (seeded) and dealt round-robin.

    Args:
        y: (N,) class indices; every class needs at least ``folds`` rows.
        folds: number of folds (>= 2).
        seed: seeds the shuffles.

    Returns:
        ``folds`` sorted index arrays that partition ``range(N)``, each holding every class.
    """
    rng = np.random.default_rng(seed)
    assigned = np.empty(y.size, dtype=np.int64)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        assigned[rows] = np.arange(rows.size) % folds
    return [np.flatnonzero(assigned == k) for k in range(folds)]


def _fit(x: np.ndarray, y: np.ndarray, classes: tuple[str, ...], kind: HeadKind, seed: int) -> Head:
    """Standardises (N, 128) float64 features and fits the layers with class-weighted Adam."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std < STD_FLOOR, 1.0, std)
    z = (x - mean) / std
    counts = np.bincount(y, minlength=len(classes)).astype(np.float64)
    sample_weight = (y.size / (len(classes) * np.maximum(counts, 1.0)))[y]
    sample_weight /= sample_weight.sum()
    target = np.eye(len(classes))[y]
    weights = _init(kind, len(classes), seed)
    adam = _Adam(weights)
    for _ in range(TRAIN_STEPS):
        adam.step(_gradients(weights, z, target, sample_weight))
    if not all(np.isfinite(v).all() for v in weights.values()):
        raise InvalidInputError("training diverged (non-finite weights); check the embeddings' scale")
    as_float32 = {k: v.astype(np.float32) for k, v in weights.items()}
    return Head(kind, classes, mean.astype(np.float32), std.astype(np.float32), as_float32)


def _init(kind: HeadKind, num_classes: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded float64 weights, uniform in ±1/sqrt(fan_in) (as torch's nn.Linear); zero biases."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    width = params.EMBEDDING_SIZE
    layers = [("hidden", MLP_HIDDEN)] if kind == "mlp" else []
    for name, units in [*layers, ("out", num_classes)]:
        bound = 1 / np.sqrt(width)
        weights[f"{name}.weight"] = rng.uniform(-bound, bound, (units, width))
        weights[f"{name}.bias"] = np.zeros(units)
        width = units
    return weights


def _forward(weights: dict[str, np.ndarray], z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 128) standardised features -> ((N, C) logits, (N, H) input of the ``out`` layer).

    ``linear``: ``out``; ``mlp``: ``hidden`` -> ReLU -> ``out``.
    """
    h = z
    if "hidden.weight" in weights:
        h = np.maximum(z @ weights["hidden.weight"].T + weights["hidden.bias"], 0.0)
    logits: np.ndarray = h @ weights["out.weight"].T + weights["out.bias"]
    return logits, h


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return probs


def _gradients(
    weights: dict[str, np.ndarray], z: np.ndarray, target: np.ndarray, sample_weight: np.ndarray
) -> dict[str, np.ndarray]:
    """Gradients of the class-weighted cross-entropy plus ``WEIGHT_DECAY``/2 * |weights|²."""
    logits, h = _forward(weights, z)
    d_logits = (_softmax(logits) - target) * sample_weight[:, None]
    grads = {"out.weight": d_logits.T @ h, "out.bias": d_logits.sum(axis=0)}
    if "hidden.weight" in weights:
        d_hidden = (d_logits @ weights["out.weight"]) * (h > 0)
        grads |= {"hidden.weight": d_hidden.T @ z, "hidden.bias": d_hidden.sum(axis=0)}
    for name in grads:
        if name.endswith("weight"):
            grads[name] = grads[name] + WEIGHT_DECAY * weights[name]
    return grads


class _Adam:
    """Adam (Kingma & Ba) updating a dict of float64 arrays in place."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.weights = weights
        self.m = {k: np.zeros_like(v) for k, v in weights.items()}
        self.v = {k: np.zeros_like(v) for k, v in weights.items()}
        self.t = 0

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.t += 1
        b1, b2 = ADAM_BETAS
        for k, g in grads.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * g
            self.v[k] = b2 * self.v[k] + (1 - b2) * g * g
            m_hat = self.m[k] / (1 - b1**self.t)
            v_hat = self.v[k] / (1 - b2**self.t)
            self.weights[k] -= LEARNING_RATE * m_hat / (np.sqrt(v_hat) + 1e-8)


# ---------------------------------------------------------------------------------------------
# safetensors files: tensors ``norm.mean``, ``norm.std`` and the layers', metadata as strings.


def _expected_shapes(kind: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    d = params.EMBEDDING_SIZE
    shapes: dict[str, tuple[int, ...]] = {"norm.mean": (d,), "norm.std": (d,)}
    width = d
    if kind == "mlp":
        shapes |= {"hidden.weight": (MLP_HIDDEN, d), "hidden.bias": (MLP_HIDDEN,)}
        width = MLP_HIDDEN
    return shapes | {"out.weight": (num_classes, width), "out.bias": (num_classes,)}


def to_safetensors(head: Head) -> bytes:
    """The head as safetensors bytes: float32 tensors, and metadata (format, version, kind,
    classes, num_examples, metrics) as JSON strings."""
    tensors = {"norm.mean": head.mean, "norm.std": head.std, **head.weights}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": head.kind,
        "classes": json.dumps(list(head.classes)),
        "num_examples": str(head.num_examples),
        "metrics": json.dumps(None if head.metrics is None else head.metrics.__dict__),
    }
    contiguous = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    return bytes(save_safetensors(contiguous, metadata=metadata))


def _metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes whose layout the library has already checked."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise InvalidInputError("the safetensors metadata is not a mapping")
    return {str(k): str(v) for k, v in meta.items()}


def _parse_classes(text: str) -> tuple[str, ...]:
    try:
        classes = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"metadata 'classes' is not JSON ({e})") from e
    if not isinstance(classes, list) or not all(isinstance(c, str) and c.strip() for c in classes):
        raise InvalidInputError("metadata 'classes' must be a JSON list of non-empty strings")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise InvalidInputError("metadata 'classes' must name at least 2 distinct classes")
    return tuple(classes)


def _parse_metrics(text: str | None) -> HeadMetrics | None:
    if text is None:
        return None
    try:
        raw = json.loads(text)
        if raw is None:
            return None
        cv = raw["cv_accuracy"]
        return HeadMetrics(None if cv is None else float(cv), float(raw["train_accuracy"]), int(raw["folds"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise InvalidInputError(f"metadata 'metrics' is malformed ({e})") from e


def from_safetensors(data: bytes) -> Head:
    """Reads and validates a head written by :func:`to_safetensors` (never unpickles anything).

    Raises:
        ValueError: not safetensors, another format or version, unknown kind, bad classes, or
            tensors missing, extra, not float32, misshaped or not finite.
    """
    try:
        arrays = load_safetensors(bytes(data))
        meta = _metadata(data)
    except (SafetensorError, ValueError, struct.error, UnicodeDecodeError) as e:
        raise InvalidInputError(f"not a safetensors file ({e})") from e
    if meta.get("format") != FORMAT:
        raise InvalidInputError(f"metadata 'format' must be {FORMAT!r}; got {meta.get('format')!r}")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise InvalidInputError(
            f"format_version {meta.get('format_version')!r} is not supported ({FORMAT_VERSION})"
        )
    kind = meta.get("kind", "")
    if kind not in get_args(HeadKind):
        raise InvalidInputError(f"metadata 'kind' must be one of {get_args(HeadKind)}; got {kind!r}")
    classes = _parse_classes(meta.get("classes", ""))
    _check_tensors(arrays, _expected_shapes(kind, len(classes)))
    try:
        num_examples = int(meta.get("num_examples", "0"))
    except ValueError as e:
        raise InvalidInputError("metadata 'num_examples' must be an integer") from e
    weights = {k: v for k, v in arrays.items() if not k.startswith("norm.")}
    return Head(
        kind,  # type: ignore[arg-type]
        classes,
        arrays["norm.mean"],
        arrays["norm.std"],
        weights,
        num_examples,
        _parse_metrics(meta.get("metrics")),
    )


def _check_tensors(arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> None:
    missing, extra = sorted(shapes.keys() - arrays.keys()), sorted(arrays.keys() - shapes.keys())
    if missing or extra:
        raise InvalidInputError(f"tensors missing: {missing}, unexpected: {extra}")
    for name, shape in shapes.items():
        array = arrays[name]
        if array.dtype != np.float32:
            raise InvalidInputError(f"tensor {name!r} must be float32; got {array.dtype}")
        if array.shape != shape:
            raise InvalidInputError(f"tensor {name!r} must have shape {shape}; got {array.shape}")
        if not np.isfinite(array).all():
            raise InvalidInputError(f"tensor {name!r} holds NaN or infinite values")
    if (arrays["norm.std"] <= 0).any():
        raise InvalidInputError("tensor 'norm.std' must be positive")
