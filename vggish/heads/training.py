"""Training a head, and estimating how well it will do (stratified k-fold cross-validation).

Training is deterministic: seeded initial weights (NumPy's generator, uniform in ±1/sqrt(fan_in)
as ``torch.nn.Linear`` draws them), then ``torch.optim.Adam`` on the full batch in float64 for a
fixed number of steps (no random order, nothing racing), on a cross-entropy weighted by class
(``N / (classes x count)``, so that rare classes count as much as common ones) with an L2 penalty
on the weights (Adam's ``weight_decay``; none on the biases).

The final head and the cross-validation folds' heads are independent fits. When their tensors are
small (:data:`MAX_TOGETHER`), they are fitted together, as one stack of models whose losses are
summed (each model's gradient is its own loss's; Adam works element by element), so that each of
the ``TRAIN_STEPS`` steps pays PyTorch's per-call costs once for all of them, not once for each.
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
    """Trains a head on clip embeddings, then cross-validates the same recipe.

    Args:
        embeddings: (N, 128) clip-level embeddings (e.g. the mean of each clip's examples).
        labels: N class labels, one per row (see :func:`~vggish.heads.head.check_label`).
        kind: ``linear`` or ``mlp``.
        seed: seeds the initial weights and the fold assignment.
        features: what made the embeddings (:meth:`FeatureSpec.for_model`); the head keeps it.
        cancelled: asked before every Adam step (``TRAIN_STEPS`` in all when the fits are small
            enough to go together, else per fit: one per fold plus the final one); when it
            returns True, training stops with :class:`CancelledError`.

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
    folds = min(MAX_FOLDS, int(np.bincount(y).min()))
    tests = stratified_folds(y, folds, seed) if folds >= 2 else []
    masks = [np.ones(y.size, dtype=bool)] + [~np.isin(np.arange(y.size), test) for test in tests]
    head, *fold_heads = _fit_all(x, y, classes, kind, seed, masks, cancelled)
    train_accuracy = float(np.mean(head.scores(x.astype(np.float32)).argmax(axis=1) == y))
    cv_accuracy = None
    if tests:
        correct = 0
        for test, fold_head in zip(tests, fold_heads, strict=True):
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


def _fit_all(
    x: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    kind: HeadKind,
    seed: int,
    masks: list[np.ndarray],
    cancelled: Callable[[], bool] | None,
) -> list[Head]:
    """One head per mask of training rows: all fitted together when small enough, else in turn."""
    width = max(params.EMBEDDING_SIZE, len(classes))
    together = len(masks) * x.shape[0] * width <= MAX_TOGETHER
    groups = [masks] if together else [[mask] for mask in masks]
    return [head for group in groups for head in _fit(x, y, classes, kind, seed, group, cancelled)]


def _fit(
    x: np.ndarray,
    y: np.ndarray,
    classes: tuple[str, ...],
    kind: HeadKind,
    seed: int,
    masks: list[np.ndarray],
    cancelled: Callable[[], bool] | None = None,
) -> list[Head]:
    """Fits one model per mask of the (N, 128) float64 rows, stacked: each standardised by its
    rows' mean and std, trained by class-weighted Adam on its rows only (the others weigh 0).
    Asks ``cancelled`` before each step."""
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
    """(N,) each row's weight in one model's loss: ``n / (classes x count of its class)`` on the
    model's ``n`` rows, 0 elsewhere, summing to 1 (the weighted mean of the cross-entropy)."""
    counts = np.bincount(y[mask], minlength=num_classes).astype(np.float64)
    weights = np.where(mask, (mask.sum() / (num_classes * np.maximum(counts, 1.0)))[y], 0.0)
    normalised: np.ndarray = weights / weights.sum()
    return normalised


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """PyTorch on one thread in the calling thread while the block runs: a head's tensors are
    far too small to share among threads (their waiting costs more than they compute beside the
    model's threads), and one thread sums in one order, so a head is the same whatever the
    machine's thread count. PyTorch keeps a thread count per thread; threads that start while
    the block runs start with one."""
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
    """(M, N, 128) standardised features -> (M, N, C) logits of M stacked models: ``out``, after
    ``hidden`` and a ReLU for ``mlp``."""
    h = z
    if "hidden.weight" in layers:
        h = F.relu(torch.baddbmm(layers["hidden.bias"][:, None], z, layers["hidden.weight"].transpose(1, 2)))
    return torch.baddbmm(layers["out.bias"][:, None], h, layers["out.weight"].transpose(1, 2))
