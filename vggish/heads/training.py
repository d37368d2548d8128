"""Training a head, and stratified k-fold cross-validation of the same recipe: deterministic,
full-batch float64 Adam on a class-weighted cross-entropy; the final and the folds' fits are stacked
into one set of tensors when small (:data:`MAX_TOGETHER`), so each step pays PyTorch's costs once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import get_args

import numpy as np
import torch
import torch.nn.functional as F

from vggish import params
from vggish.errors import CancelledError, InvalidInputError, plural
from vggish.heads.head import (
    MAX_CLASSES,
    MAX_FOLDS,
    MLP_HIDDEN,
    STD_FLOOR,
    Head,
    HeadKind,
    HeadMetrics,
    check_embeddings,
    check_label,
)
from vggish.heads.identity import UNKNOWN_FEATURES, FeatureSpec

TRAIN_STEPS = 500  # full-batch Adam steps (a fixed number: training is deterministic)
LEARNING_RATE = 0.01
ADAM_BETAS = (0.9, 0.999)
WEIGHT_DECAY = 1e-3  # L2 penalty on the weights (not the biases)
DEFAULT_SEED = 0
MAX_TOGETHER = 2_000_000  # models x rows x max(128, classes) fitted at once: 16 MB per float64 tensor


def train(
    embeddings: np.ndarray,
    labels: Sequence[str],
    kind: HeadKind = "linear",
    seed: int = DEFAULT_SEED,
    *,
    features: FeatureSpec = UNKNOWN_FEATURES,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[Head, HeadMetrics]:
    """Trains a head on (N, 128) clip embeddings and N labels, then cross-validates the recipe.

    Args:
        features: what made the embeddings; the head keeps it.
        cancelled: asked before every Adam step; True stops training with CancelledError.

    Returns:
        The head trained on every clip, and its metrics (cross-validated over ``min(5, smallest
        class count)`` folds; none when a class has a single clip).
    """
    x = _check_training_set(embeddings, labels, kind).astype(np.float64)
    classes = tuple(sorted(set(labels)))
    y = np.array([classes.index(label) for label in labels], dtype=np.int64)
    folds = min(MAX_FOLDS, int(np.bincount(y).min()))
    tests = stratified_folds(y, folds, seed) if folds >= 2 else []
    masks = [np.ones(y.size, dtype=bool)] + [~np.isin(np.arange(y.size), test) for test in tests]
    together = len(masks) * y.size * max(params.EMBEDDING_SIZE, len(classes)) <= MAX_TOGETHER
    groups = [masks] if together else [[mask] for mask in masks]
    head, *fold_heads = [h for group in groups for h in _fit(x, y, classes, kind, seed, group, cancelled)]
    train_accuracy = float(np.mean(head.scores(x.astype(np.float32)).argmax(axis=1) == y))
    correct = sum(
        int(np.sum(fold_head.scores(x[test].astype(np.float32)).argmax(axis=1) == y[test]))
        for test, fold_head in zip(tests, fold_heads, strict=True)
    )
    cv_accuracy = correct / y.size if tests else None
    metrics = HeadMetrics(cv_accuracy, train_accuracy, folds if folds >= 2 else 0)
    return Head(kind, classes, head.mean, head.std, head.weights, int(y.size), metrics, features), metrics


def stratified_folds(y: np.ndarray, folds: int, seed: int = DEFAULT_SEED) -> list[np.ndarray]:
    """Test indices of each of ``folds`` folds of (N,) class indices ``y``: every class's rows
    shuffled (seeded) and dealt round-robin, so each fold holds every class."""
    rng = np.random.default_rng(seed)
    assigned = np.empty(y.size, dtype=np.int64)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        assigned[rows] = np.arange(rows.size) % folds
    return [np.flatnonzero(assigned == k) for k in range(folds)]


def _check_training_set(embeddings: np.ndarray, labels: Sequence[str], kind: str) -> np.ndarray:
    if kind not in get_args(HeadKind):
        raise InvalidInputError(f"kind must be one of {get_args(HeadKind)}; got {kind!r}")
    x = check_embeddings(embeddings)
    if len(labels) != x.shape[0]:
        raise InvalidInputError(
            f"{plural(x.shape[0], 'embedding')} but {plural(len(labels), 'label')}: give one label per clip"
        )
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


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    kind: HeadKind,
    seed: int,
    masks: list[np.ndarray],
    cancelled: Callable[[], bool] | None = None,
) -> list[Head]:
    """Fits one model per mask of the (N, 128) float64 rows, stacked; the others weigh 0."""
    mean = np.stack([x[m].mean(axis=0) for m in masks])  # (M, 128)
    std = np.stack([x[m].std(axis=0) for m in masks])
    std = np.where(std < STD_FLOOR, 1.0, std)
    z = torch.from_numpy((x[None] - mean[:, None]) / std[:, None])  # (M, N, 128)
    target = torch.from_numpy(np.tile(y, len(masks)))
    rows = torch.from_numpy(np.stack([_row_weights(y, m, len(classes)) for m in masks]).ravel())
    init = _init(kind, len(classes), seed)
    layers = {
        k: torch.from_numpy(np.repeat(v[None], len(masks), axis=0)).requires_grad_() for k, v in init.items()
    }
    adam = torch.optim.Adam(
        [
            {"params": [v for k, v in layers.items() if k.endswith("weight")], "weight_decay": WEIGHT_DECAY},
            {"params": [v for k, v in layers.items() if k.endswith("bias")], "weight_decay": 0.0},
        ],
        lr=LEARNING_RATE,
        betas=ADAM_BETAS,
    )
    with _one_thread():
        for _ in range(TRAIN_STEPS):
            if cancelled is not None and cancelled():
                raise CancelledError("training was stopped before it finished")
            adam.zero_grad()
            logits = _logits(layers, z).reshape(-1, len(classes))
            loss = F.cross_entropy(logits, target, reduction="none") @ rows
            torch.autograd.backward(loss)
            adam.step()
    weights = {k: v.detach().numpy() for k, v in layers.items()}
    if not all(np.isfinite(v).all() for v in weights.values()):
        raise InvalidInputError("training diverged (non-finite weights); check the embeddings' scale")
    return [
        Head(kind, classes, mean[i].astype(np.float32), std[i].astype(np.float32),
             {k: v[i].astype(np.float32) for k, v in weights.items()})
        for i in range(len(masks))
    ]  # fmt: skip


def _row_weights(y: np.ndarray, mask: np.ndarray, num_classes: int) -> np.ndarray:
    """(N,) weights ``n / (classes x count of its class)`` on a model's rows, 0 elsewhere, summing to 1."""
    counts = np.bincount(y[mask], minlength=num_classes).astype(np.float64)
    weights = np.where(mask, (mask.sum() / (num_classes * np.maximum(counts, 1.0)))[y], 0.0)
    normalised: np.ndarray = weights / weights.sum()
    return normalised


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """PyTorch on one thread while the block runs: a head's tensors are too small to share, and one
    thread sums in one order, so a head is the same whatever the machine's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def _logits(layers: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    h = z
    if "hidden.weight" in layers:
        h = F.relu(torch.baddbmm(layers["hidden.bias"][:, None], z, layers["hidden.weight"].transpose(1, 2)))
    return torch.baddbmm(layers["out.bias"][:, None], h, layers["out.weight"].transpose(1, 2))
