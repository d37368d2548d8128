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

A head remembers what made its features (:class:`FeatureSpec`: the weights file's SHA-256 and the
front-end settings hop, pad and resampler); :func:`check_compatible` refuses to apply it to other
ones. Files and stored heads from before that are of unknown identity, and are never refused.
"""

from __future__ import annotations

import json
import math
import re
import struct
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from vggish import params
from vggish.audio.resample import ResamplerName
from vggish.errors import CancelledError, ConflictError, InvalidInputError
from vggish.features.logmel import hop_to_frames
from vggish.weights import RANDOM

if TYPE_CHECKING:
    from vggish.network.runtime import Runtime
    from vggish.pipeline.options import EmbedOptions

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
MAX_ABS_FEATURE = 1e6  # training and scoring refuse larger values (VGGish embeddings are far smaller)
STD_FLOOR = 1e-6  # a feature whose training std is below this is only centred, not scaled
DEFAULT_SEED = 0
# Limits of what a head holds; training and importing enforce the same ones.
MAX_CLASSES = 1000  # AudioSet itself has 527
MAX_CLASS_CHARS = 256  # characters of one class label
MAX_NUM_EXAMPLES = 2**63 - 1  # fits a signed 64-bit integer column (SQLite's, PostgreSQL's bigint)
# Limits of an imported file, checked before its tensors are read.
MAX_HEADER_BYTES = 8 << 20  # safetensors JSON header (1000 labels of 256 escaped characters fit)
MIN_STD = STD_FLOOR / 2  # trained stds are >= STD_FLOOR (float32 rounding takes a little off)
MAX_ABS_WEIGHT = 1e4  # trained weights stay far below (Adam moves each by < 0.04 a step)
SHA256_RE = re.compile(r"[0-9a-f]{64}")
SHA256_SHOWN = 12  # hex digits of a weights SHA-256 shown in messages


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


# ---------------------------------------------------------------------------------------------
# What made a head's features: the weights and the front-end settings that change embeddings.


@dataclass(frozen=True)
class FeatureSpec:
    """The identity of the features a head was trained on (None: unknown, or not compared).

    Attributes:
        weights_sha256: the VGGish weights file's SHA-256 (64 lowercase hex digits), or
            ``"random"`` for the library's deterministic random demo weights.
        hop_seconds: distance between example starts (a positive multiple of 0.01 s).
        pad: whether clips shorter than one example were zero-padded to one.
        resampler: ``reference`` or ``fast``.
    """

    weights_sha256: str | None = None
    hop_seconds: float | None = None
    pad: bool | None = None
    resampler: ResamplerName | None = None

    def __post_init__(self) -> None:
        sha = self.weights_sha256
        if sha is not None and (not isinstance(sha, str) or not (sha == RANDOM or SHA256_RE.fullmatch(sha))):
            raise InvalidInputError(
                f"weights_sha256 must be 64 lowercase hex digits or {RANDOM!r}; got {sha!r}"
            )
        hop = self.hop_seconds
        if hop is not None:
            if isinstance(hop, bool) or not isinstance(hop, (int, float)):
                raise InvalidInputError(f"hop_seconds must be a number; got {hop!r}")
            try:
                hop_to_frames(hop)
            except (ValueError, OverflowError) as e:  # float() of a 400-digit integer overflows
                raise InvalidInputError(f"hop_seconds: {e}") from e
            object.__setattr__(self, "hop_seconds", float(hop))
        if self.pad is not None and not isinstance(self.pad, bool):
            raise InvalidInputError(f"pad must be true or false; got {self.pad!r}")
        if self.resampler is not None and self.resampler not in get_args(ResamplerName):
            raise InvalidInputError(
                f"resampler must be one of {get_args(ResamplerName)}; got {self.resampler!r}"
            )

    @classmethod
    def for_model(cls, model: Runtime, options: EmbedOptions) -> FeatureSpec:
        """The identity of the embeddings ``model`` makes with ``options``."""
        sha = model.weights_info.get("sha256") or None
        return cls(sha, options.hop_seconds, options.pad, options.resampler)

    @classmethod
    def from_dict(cls, raw: object) -> FeatureSpec:
        """Parses :meth:`to_dict`'s mapping (missing keys are unknown).

        Raises:
            InvalidInputError: not a mapping, unknown keys, or a malformed value.
        """
        if not isinstance(raw, Mapping):
            raise InvalidInputError(f"features must be a JSON object; got {type(raw).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in raw if k not in names)
        if unknown:
            raise InvalidInputError(f"features has unknown keys {unknown}; expected some of {sorted(names)}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        """The four fields (None for unknown): JSON-ready."""
        return asdict(self)

    @property
    def unknown(self) -> bool:
        """Whether nothing is known (a head stored or exported before identities existed)."""
        return all(v is None for v in asdict(self).values())

    def describe(self) -> str:
        """One line, e.g. ``weights 3f1c2a9b8d7e, hop 0.96 s, pad off, resampler reference``."""
        sha = self.weights_sha256
        parts = [
            "weights " + ("unknown" if sha is None else sha[:SHA256_SHOWN]),
            "hop " + ("unknown" if self.hop_seconds is None else f"{self.hop_seconds:g} s"),
            "pad " + ("unknown" if self.pad is None else ("on" if self.pad else "off")),
            "resampler " + (self.resampler or "unknown"),
        ]
        return ", ".join(parts)


UNKNOWN_FEATURES = FeatureSpec()
_SPEC_LABELS = {"weights_sha256": "weights", "hop_seconds": "hop", "pad": "pad", "resampler": "resampler"}


class WeightsMismatchError(ConflictError):
    """A head would be applied to features other than those it was trained on.

    Attributes:
        head: the head's :class:`FeatureSpec`.
        used: the one about to be used.
        differences: the fields that differ (``weights``, ``hop``, ``pad``, ``resampler``).
    """

    def __init__(self, message: str, head: FeatureSpec, used: FeatureSpec, differences: list[str]) -> None:
        super().__init__(message)
        self.head = head
        self.used = used
        self.differences = differences


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=0, abs_tol=1e-9)
    return a == b


def check_compatible(
    head: FeatureSpec, used: FeatureSpec, force: bool = False, name: str | None = None
) -> str | None:
    """Refuses to apply a head to features unlike those it was trained on.

    Only fields known on both sides are compared: a head of unknown identity is never refused,
    and a caller leaves a field of ``used`` None to skip it (e.g. an import checks only weights).

    Args:
        head: the head's identity.
        used: the identity of the model and options about to be used.
        force: warn instead of refusing.
        name: the head's name, for the messages.

    Returns:
        None when every field is known on both sides and equal; otherwise a warning to show (a
        field unknown on the head's side, or a mismatch that ``force`` let through).

    Raises:
        WeightsMismatchError: a field differs and ``force`` is false; the message names both sides.
    """
    what = "the head" if name is None else f"head {name!r}"
    differ, unknown = [], []
    for key, label in _SPEC_LABELS.items():
        mine, theirs = getattr(head, key), getattr(used, key)
        if mine is None and theirs is not None:
            unknown.append(label)
        elif mine is not None and theirs is not None and not _same(mine, theirs):
            differ.append(label)
    if differ:
        message = (
            f"{what} was trained on features of {head.describe()}, but these are of {used.describe()}: "
            f"{', '.join(differ)} differ{'s' if len(differ) == 1 else ''}, so its scores would mean nothing"
        )
        if not force:
            raise WeightsMismatchError(
                f"{message}; use the weights and settings it was trained with, retrain it, "
                "or force it (force=true; CLI --force)",
                head,
                used,
                differ,
            )
        return f"{message} (forced)"
    if unknown:
        return f"{what} does not record its {', '.join(unknown)}: its scores may mean nothing with other ones"
    return None


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
        features: what made its training features (weights, hop, pad, resampler), when known.
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
        z = (_check_embeddings(embeddings) - self.mean) / self.std
        logits, _ = _forward(self.weights, z.astype(np.float32))
        return _softmax(logits).astype(np.float32)


def _check_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """(N, 128) finite values within ±``MAX_ABS_FEATURE`` (so that a valid head's scores stay finite)."""
    x = np.asarray(embeddings)
    if x.ndim != 2 or x.shape[1] != params.EMBEDDING_SIZE:
        raise InvalidInputError(f"embeddings must be (N, {params.EMBEDDING_SIZE}); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidInputError("embeddings hold NaN or infinite values")
    if x.size and np.abs(x).max() > MAX_ABS_FEATURE:
        raise InvalidInputError(f"embedding values must lie within ±{MAX_ABS_FEATURE:g}; VGGish's do")
    return x.astype(np.float32)


def _check_training_set(embeddings: np.ndarray, labels: Sequence[str], kind: str) -> np.ndarray:
    if kind not in get_args(HeadKind):
        raise InvalidInputError(f"kind must be one of {get_args(HeadKind)}; got {kind!r}")
    x = _check_embeddings(embeddings)
    if len(labels) != x.shape[0]:
        raise InvalidInputError(f"{x.shape[0]} embeddings but {len(labels)} labels: give one label per clip")
    if not all(isinstance(label, str) for label in labels):
        raise InvalidInputError("every label must be a non-empty string")
    classes = set(labels)
    for label in classes:
        check_label(label)
    if not 2 <= len(classes) <= MAX_CLASSES:
        shown = sorted(classes)[:5]
        raise InvalidInputError(
            f"a head needs at least 2 classes, at most {MAX_CLASSES}; got {len(classes)}: {shown}"
        )
    return x


def train(
    embeddings: np.ndarray,
    labels: Sequence[str],
    kind: HeadKind = "linear",
    seed: int = DEFAULT_SEED,
    *,
    features: FeatureSpec = UNKNOWN_FEATURES,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[Head, HeadMetrics]:
    """Trains a head on clip embeddings, then cross-validates the same recipe.

    Args:
        embeddings: (N, 128) clip-level embeddings (e.g. the mean of each clip's examples).
        labels: N class labels, one per row (see :func:`check_label`).
        kind: ``linear`` or ``mlp``.
        seed: seeds the initial weights and the fold assignment.
        features: what made the embeddings (:meth:`FeatureSpec.for_model`); the head keeps it.
        cancelled: asked before every Adam step (``TRAIN_STEPS`` per fit, one fit per fold plus
            the final one); when it returns True, training stops with :class:`CancelledError`.

    Returns:
        The head trained on every clip, and its metrics. ``cv_accuracy`` is the mean held-out
        accuracy over ``min(5, smallest class count)`` stratified folds, or None (``folds`` 0)
        when a class has a single clip.

    Raises:
        InvalidInputError: wrong shape, NaN, mismatched counts, bad labels, fewer than 2 classes
            or more than ``MAX_CLASSES``.
        CancelledError: ``cancelled`` returned True.
    """
    x = _check_training_set(embeddings, labels, kind).astype(np.float64)
    classes = tuple(sorted(set(labels)))
    y = np.array([classes.index(label) for label in labels], dtype=np.int64)
    head = _fit(x, y, classes, kind, seed, cancelled)
    train_accuracy = float(np.mean(head.scores(x.astype(np.float32)).argmax(axis=1) == y))
    folds = min(MAX_FOLDS, int(np.bincount(y).min()))
    cv_accuracy = None
    if folds >= 2:
        correct = 0
        for test in stratified_folds(y, folds, seed):
            keep = np.ones(y.size, dtype=bool)
            keep[test] = False
            fold_head = _fit(x[keep], y[keep], classes, kind, seed, cancelled)
            correct += int(np.sum(fold_head.scores(x[test].astype(np.float32)).argmax(axis=1) == y[test]))
        cv_accuracy = correct / y.size
    metrics = HeadMetrics(cv_accuracy, train_accuracy, folds if folds >= 2 else 0)
    return Head(kind, classes, head.mean, head.std, head.weights, int(y.size), metrics, features), metrics


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


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    kind: HeadKind,
    seed: int,
    cancelled: Callable[[], bool] | None = None,
) -> Head:
    """Standardises (N, 128) float64 features and fits the layers with class-weighted Adam,
    asking ``cancelled`` before each step."""
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
        if cancelled is not None and cancelled():
            raise CancelledError("training was stopped before it finished")
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
# Importing validates everything before use: the header's size, then the metadata, then each
# tensor's name, dtype and shape (before reading any), then their values.


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
    classes, num_examples, metrics, features) as JSON strings."""
    tensors = {"norm.mean": head.mean, "norm.std": head.std, **head.weights}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "kind": head.kind,
        "classes": json.dumps(list(head.classes)),
        "num_examples": str(head.num_examples),
        "metrics": json.dumps(None if head.metrics is None else head.metrics.__dict__),
        "features": json.dumps(head.features.to_dict()),
    }
    contiguous = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
    return bytes(save_safetensors(contiguous, metadata=metadata))


def from_safetensors(data: bytes) -> Head:
    """Reads and validates a head written by :func:`to_safetensors` (never unpickles anything).

    A file without ``features`` metadata (written before heads recorded it) is valid: its
    features are unknown. Metadata keys this version does not know are ignored.

    Raises:
        InvalidInputError: not safetensors, a header over ``MAX_HEADER_BYTES``, another format or
            version, unknown kind, bad classes, metrics, num_examples or features, or tensors
            missing, extra, not float32, misshaped, not finite or out of range. Nothing else.
    """
    header = _read_header(data)
    meta = header.pop("__metadata__", None)
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise InvalidInputError("not a vggish head: its safetensors metadata is missing or not strings")
    if meta.get("format") != FORMAT:
        raise InvalidInputError(f"metadata 'format' must be {FORMAT!r}; got {_short(meta.get('format'))}")
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise InvalidInputError(
            f"format_version {_short(meta.get('format_version'))} is not supported ({FORMAT_VERSION})"
        )
    kind = meta.get("kind", "")
    if kind not in get_args(HeadKind):
        raise InvalidInputError(f"metadata 'kind' must be one of {get_args(HeadKind)}; got {_short(kind)}")
    classes = _parse_classes(meta.get("classes", ""))
    num_examples = _parse_num_examples(meta.get("num_examples", "0"))
    metrics = _parse_metrics(meta.get("metrics"))
    features = _parse_features(meta.get("features"))
    shapes = _expected_shapes(kind, len(classes))
    _check_entries(header, shapes)
    try:
        arrays = load_safetensors(bytes(data))
    except (SafetensorError, ValueError, TypeError, KeyError) as e:  # its own parser's view of the file
        raise InvalidInputError(f"not a safetensors file ({e})") from e
    _check_tensors(arrays, shapes)
    weights = {k: v for k, v in arrays.items() if not k.startswith("norm.")}
    return Head(
        kind,  # type: ignore[arg-type]
        classes,
        arrays["norm.mean"],
        arrays["norm.std"],
        weights,
        num_examples,
        metrics,
        features,
    )


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (messages quote what they refuse)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json(text: str, what: str) -> object:
    """JSON text -> value; every way parsing can fail is an InvalidInputError."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, too many digits, too deep
        raise InvalidInputError(f"{what} is not valid JSON ({_short(str(e), 100)})") from e


def _read_header(data: bytes) -> dict[str, Any]:
    """The safetensors JSON header (8-byte little-endian length, then JSON), its size bounded."""
    try:
        view = memoryview(data).cast("B")
    except TypeError as e:
        raise InvalidInputError(f"a head file is bytes; got {type(data).__name__}") from e
    if len(view) < 8:
        raise InvalidInputError(f"not a safetensors file: {len(view)} bytes")
    (length,) = struct.unpack("<Q", view[:8])
    if length > MAX_HEADER_BYTES or 8 + length > len(view):
        raise InvalidInputError(
            f"not a safetensors file, or a header over {MAX_HEADER_BYTES} bytes: "
            f"it declares {length} header bytes in a file of {len(view)}"
        )
    try:
        text = bytes(view[8 : 8 + length]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInputError("not a safetensors file: its header is not UTF-8") from e
    header = _json(text, "the safetensors header")
    if not isinstance(header, dict):
        raise InvalidInputError("not a safetensors file: its header is not a JSON object")
    return header


def _parse_classes(text: str) -> tuple[str, ...]:
    classes = _json(text, "metadata 'classes'")
    if not isinstance(classes, list):
        raise InvalidInputError("metadata 'classes' must be a JSON list of labels")
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise InvalidInputError(
            f"metadata 'classes' must name 2 to {MAX_CLASSES} classes; got {len(classes)}"
        )
    try:
        labels = tuple(check_label(c) for c in classes)
    except InvalidInputError as e:
        raise InvalidInputError(f"metadata 'classes': {e}") from e
    if len(set(labels)) != len(labels):
        raise InvalidInputError("metadata 'classes' must be distinct")
    return labels


def _parse_num_examples(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > MAX_NUM_EXAMPLES:
        raise InvalidInputError(
            f"metadata 'num_examples' must be an integer from 0 to {MAX_NUM_EXAMPLES}; got {_short(text)}"
        )
    return int(text)


def _accuracy(raw: dict[str, Any], key: str, optional: bool) -> float | None:
    value = raw.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InvalidInputError(f"metadata 'metrics': {key} must be a number in [0, 1]; got {_short(value)}")
    return float(value)  # NaN fails the range test above; 1e400 parses as inf, also outside it


def _parse_metrics(text: str | None) -> HeadMetrics | None:
    if text is None:
        return None
    raw = _json(text, "metadata 'metrics'")
    if raw is None:
        return None
    keys = {"cv_accuracy", "train_accuracy", "folds"}
    if not isinstance(raw, dict) or raw.keys() != keys:
        raise InvalidInputError(f"metadata 'metrics' must be null or a JSON object of {sorted(keys)}")
    folds = raw["folds"]
    if isinstance(folds, bool) or not isinstance(folds, int) or folds == 1 or not 0 <= folds <= MAX_FOLDS:
        raise InvalidInputError(
            f"metadata 'metrics': folds must be 0 or 2 to {MAX_FOLDS}; got {_short(folds)}"
        )
    cv = _accuracy(raw, "cv_accuracy", optional=True)
    if (cv is None) != (folds == 0):
        raise InvalidInputError("metadata 'metrics': cv_accuracy is null exactly when folds is 0")
    train_accuracy = _accuracy(raw, "train_accuracy", optional=False)
    assert train_accuracy is not None
    return HeadMetrics(cv, train_accuracy, folds)


def _parse_features(text: str | None) -> FeatureSpec:
    if text is None:
        return UNKNOWN_FEATURES
    raw = _json(text, "metadata 'features'")
    try:
        return FeatureSpec.from_dict(raw)
    except InvalidInputError as e:
        raise InvalidInputError(f"metadata 'features': {e}") from e


def _check_entries(header: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    """The header's tensor entries: exactly the expected names, each F32 of its shape."""
    missing, extra = sorted(shapes.keys() - header.keys()), sorted(header.keys() - shapes.keys())
    if missing or extra:
        raise InvalidInputError(f"tensors missing: {missing}, unexpected: {[_short(k) for k in extra][:10]}")
    for name, shape in shapes.items():
        entry = header[name]
        if not isinstance(entry, dict) or entry.get("dtype") != "F32":
            dtype = entry.get("dtype") if isinstance(entry, dict) else entry
            raise InvalidInputError(f"tensor {name!r} must be float32 (F32); got {_short(dtype)}")
        if entry.get("shape") != list(shape):
            raise InvalidInputError(
                f"tensor {name!r} must have shape {shape}; got {_short(entry.get('shape'))}"
            )


def _check_tensors(arrays: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]]) -> None:
    """Values: float32 of the expected shapes, finite, std within [MIN_STD, 2 * MAX_ABS_FEATURE],
    means within ±MAX_ABS_FEATURE, layers within ±MAX_ABS_WEIGHT: with embeddings within
    ±MAX_ABS_FEATURE, every intermediate value stays far below float32's range."""
    if arrays.keys() != shapes.keys():
        raise InvalidInputError(f"tensors {sorted(arrays)} are not {sorted(shapes)}")
    for name, shape in shapes.items():
        array = arrays[name]
        if array.dtype != np.float32 or array.shape != shape:
            raise InvalidInputError(
                f"tensor {name!r} must be float32 {shape}; got {array.dtype} {array.shape}"
            )
        if not np.isfinite(array).all():
            raise InvalidInputError(f"tensor {name!r} holds NaN or infinite values")
        bound = MAX_ABS_FEATURE if name.startswith("norm.") else MAX_ABS_WEIGHT
        if np.abs(array).max() > (2 * bound if name == "norm.std" else bound):
            raise InvalidInputError(f"tensor {name!r} holds values beyond ±{bound:g}")
    if (arrays["norm.std"] < MIN_STD).any():
        raise InvalidInputError(f"tensor 'norm.std' must be at least {MIN_STD:g}")
