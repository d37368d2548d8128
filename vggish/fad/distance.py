"""The Fréchet distance between two sets' Gaussians, as Google's ``fad_utils.frechet_distance``
computes it, plus two readings of an evaluation set: which files move the score most, and
FAD-infinity (fadtk's extrapolation to an infinite set).

``FAD = |mu_b - mu_e|^2 + tr(S_b) + tr(S_e) - 2 tr sqrtm(S_b S_e)``, with scipy's principal
matrix square root of the product; when that is not finite (a singular product), both
covariances get ``1e-7 I`` added and the root is taken again; a root whose diagonal has an
imaginary part above ``1e-3`` raises ``ValueError``, as Google's does; else its real part is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vggish.fad.stats import SetStats, Sums, check_same_origin

SINGULAR_EPS = 1e-7  # Google's fad_utils offset (pytorch-fid and its descendants use 1e-6)
IMAGINARY_ATOL = 1e-3  # the largest imaginary part tolerated on the root's diagonal
FAD_INF_MIN_N = 500  # fadtk's smallest subset
FAD_INF_STEPS = 25  # fadtk's number of subset sizes


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    try:
        from scipy.linalg import sqrtm
    except ImportError as e:
        raise RuntimeError("FAD needs SciPy: pip install 'vggish[fad]'") from e
    root: np.ndarray = sqrtm(matrix)
    return root


def trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """``tr sqrtm(sigma_a @ sigma_b)`` as Google takes it (fallback and imaginary check included).

    Raises:
        ValueError: the root has large imaginary parts on its diagonal.
    """
    root = _sqrtm(sigma_a @ sigma_b)
    if not np.isfinite(root).all():
        offset = np.eye(sigma_a.shape[0]) * SINGULAR_EPS
        root = _sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if not np.allclose(np.diagonal(root).imag, 0, atol=IMAGINARY_ATOL):
        worst = float(np.abs(np.diagonal(root).imag).max())
        raise ValueError(
            f"the square root of the covariances' product has large complex numbers (|imag| {worst:.3g} "
            f"> {IMAGINARY_ATOL}): the covariances are not positive semi-definite"
        )
    return float(np.trace(root.real))


def frechet_distance(a: SetStats, b: SetStats) -> float:
    """The Fréchet distance between the Gaussians of ``a`` (background) and ``b`` (evaluation).

    Raises:
        ValueError: see :func:`trace_sqrt_product`.
    """
    diff = a.mean - b.mean
    covmean = trace_sqrt_product(a.cov, b.cov)
    return float(diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * covmean)


def fad(background: SetStats, evaluation: SetStats, *, force: bool = False) -> float:
    """Fréchet Audio Distance of ``evaluation`` from ``background``.

    Raises:
        ConflictError: the two were made with other weights or in another mode (unless ``force``).
    """
    check_same_origin(background, evaluation, force, ("the background", "the evaluation set"))
    return frechet_distance(background, evaluation)


class _EigenFAD:
    """FAD against one background for many covariances, by ``tr sqrtm(S_b S) = sum sqrt(eig(R S R))``
    with ``R = S_b^(1/2)`` symmetric: one ``eigvalsh`` each, no general square root."""

    def __init__(self, background: SetStats) -> None:
        w, v = np.linalg.eigh(background.cov)
        self.root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        self.background = background

    def __call__(self, mean: np.ndarray, cov: np.ndarray) -> float:
        eig = np.linalg.eigvalsh(self.root @ cov @ self.root)
        diff = self.background.mean - mean
        trace = np.sqrt(np.clip(eig, 0, None)).sum()
        return float(diff @ diff + np.trace(self.background.cov) + np.trace(cov) - 2.0 * trace)


@dataclass(frozen=True)
class Contribution:
    """How much one evaluation file moves the score.

    Attributes:
        name: the file.
        examples: its examples in the set.
        delta: ``FAD(all) - FAD(all but this file)``: positive when the file raises the score.
    """

    name: str
    examples: int
    delta: float


def contributions(background: SetStats, total: Sums, files: Sequence[tuple[str, Sums]]) -> list[Contribution]:
    """Leave-one-out contributions of each evaluation file, from per-file sums (no re-embedding).

    Both FADs of each difference are computed the same way (eigenvalues of ``R S R``), so the
    differences are exact to rounding; a file whose removal leaves fewer than two examples is
    skipped.

    Args:
        background: the background set's statistics.
        total: the evaluation set's sums (all files).
        files: each evaluation file's name and sums.

    Returns:
        The files, largest ``delta`` first.
    """
    fad_of = _EigenFAD(background)
    whole = fad_of(*total.moments())
    out = [
        Contribution(name, sums.count, whole - fad_of(*total.without(sums).moments()))
        for name, sums in files
        if total.count - sums.count >= 2
    ]
    return sorted(out, key=lambda c: c.delta, reverse=True)


@dataclass(frozen=True)
class FadInfinity:
    """FAD-infinity: the intercept of FAD against 1/n (fadtk's ``score_inf``).

    Attributes:
        value: the intercept, FAD of an infinite evaluation set.
        slope: the fitted slope.
        r2: the fit's coefficient of determination.
        points: the (n, FAD) pairs fitted.
    """

    value: float
    slope: float
    r2: float
    points: tuple[tuple[int, float], ...]


def fad_infinity(
    background: SetStats, embeddings: np.ndarray, *, seed: int = 0, steps: int = FAD_INF_STEPS
) -> FadInfinity:
    """fadtk's FAD-infinity: for ``steps`` sizes ``n`` from 500 to the set's size, FAD of ``n``
    embeddings drawn with replacement; a least-squares line of FAD against ``1/n``; its intercept.

    Args:
        background: the background statistics.
        embeddings: (N, 128) the evaluation set's embeddings, all of them.
        seed: the draws' seed (fadtk draws unseeded, so its values vary run to run).
        steps: how many sizes.
    """
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in np.linspace(FAD_INF_MIN_N, len(embeddings), steps)]
    points = []
    for n in sizes:
        sums = Sums()
        sums.add(embeddings[rng.integers(0, len(embeddings), n)])
        sample = SetStats.from_sums(sums, 1, background.weights_sha256, background.mode)
        points.append((n, frechet_distance(background, sample)))
    x = 1.0 / np.array([n for n, _ in points], dtype=np.float64)
    y = np.array([f for _, f in points])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    r2 = 1.0 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
    return FadInfinity(float(intercept), float(slope), r2, tuple(points))
