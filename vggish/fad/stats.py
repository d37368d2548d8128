"""The statistics of a set of audio: streaming float64 sums -> mean, covariance and count, bound
to the weights and the mode that made them; saved and loaded as ``.npz``.

Sums are kept per file (:class:`Sums`) and added into the set's, so memory is two 128-wide
arrays whatever the set's size. The covariance follows the one-pass formula of Google's
``ComputeMeanAndCovariance`` (unbiased, ``S2 / (n-1) - mu mu^T n / (n-1)``); in ``google`` mode
the mean and covariance are then rounded to float32, as Google's statistics files store them.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from vggish import params
from vggish.errors import ConflictError
from vggish.fileio import atomic_output

Mode = Literal["default", "google"]
"""How audio became embeddings: ``default`` (the project's standard examples, 0.96 s hop, any
format and rate) or ``google`` (Google's frechet_audio_distance: 16 kHz WAV, peak normalisation,
1 s windows every 0.5 s)."""

FORMAT_NAME = "vggish-fad-stats"
FORMAT_VERSION = 1
_KEYS = ("format", "version", "mean", "cov", "count", "files", "weights_sha256", "mode")
D = params.EMBEDDING_SIZE


@dataclass
class Sums:
    """Running float64 sums of embeddings: count, sum, and sum of outer products.

    Attributes:
        count: embeddings added.
        total: (128,) float64 sum of the embeddings.
        outer: (128, 128) float64 sum of ``x x^T``.
    """

    count: int = 0
    total: np.ndarray = field(default_factory=lambda: np.zeros(D))
    outer: np.ndarray = field(default_factory=lambda: np.zeros((D, D)))

    def add(self, embeddings: np.ndarray) -> None:
        """Adds (N, 128) embeddings (float32 products are exact in float64).

        Raises:
            ValueError: a wrong shape, or a NaN or infinite value.
        """
        x = np.asarray(embeddings, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != D:
            raise ValueError(f"embeddings must be (N, {D}); got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("non-finite embeddings (NaN or Inf): the input or the weights are broken")
        self.count += x.shape[0]
        self.total += x.sum(axis=0)
        self.outer += x.T @ x

    def merge(self, other: Sums) -> None:
        """Adds another set's sums into these."""
        self.count += other.count
        self.total += other.total
        self.outer += other.outer

    def without(self, other: Sums) -> Sums:
        """These sums less ``other``'s (a part of them): the set with that part left out."""
        return Sums(self.count - other.count, self.total - other.total, self.outer - other.outer)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (128,) and unbiased covariance (128, 128), float64.

        Raises:
            ValueError: fewer than two embeddings (the covariance is undefined).
        """
        n = self.count
        if n < 2:
            raise ValueError(
                f"the set has {n} example{'s' if n != 1 else ''}: its covariance is undefined; "
                "FAD needs at least 2 (and more than 128 for a full-rank covariance)"
            )
        mean = self.total / n
        cov = self.outer / (n - 1) - np.outer(mean, mean) * (n / (n - 1))
        return mean, cov


@dataclass(frozen=True)
class SetStats:
    """What FAD needs of one set, and what made it.

    Attributes:
        mean: (128,) float64.
        cov: (128, 128) float64, unbiased.
        count: embeddings (examples) pooled.
        files: audio files that contributed.
        weights_sha256: the SHA-256 of the weights file (``"random"`` for the demo weights).
        mode: ``default`` or ``google``.
    """

    mean: np.ndarray
    cov: np.ndarray
    count: int
    files: int
    weights_sha256: str
    mode: Mode

    @classmethod
    def from_sums(cls, sums: Sums, files: int, weights_sha256: str, mode: Mode) -> SetStats:
        """The statistics of ``sums``; in ``google`` mode rounded to float32 as Google stores them."""
        mean, cov = sums.moments()
        if mode == "google":
            mean, cov = (a.astype(np.float32).astype(np.float64) for a in (mean, cov))
        return cls(mean, cov, sums.count, files, weights_sha256, mode)

    def origin(self) -> str:
        """``weights 3f1c2a9b8d7e, mode default``: what the statistics are bound to."""
        return f"weights {self.weights_sha256[:12]}, mode {self.mode}"


def check_same_origin(
    a: SetStats, b: SetStats, force: bool = False, names: tuple[str, str] = ("a", "b")
) -> str | None:
    """Refuses to compare statistics made with other weights or in another mode.

    Returns:
        None when they match; a warning when they differ and ``force`` lets it through.

    Raises:
        ConflictError: they differ and ``force`` is false.
    """
    if (a.weights_sha256, a.mode) == (b.weights_sha256, b.mode):
        return None
    message = (
        f"{names[0]} was made with {a.origin()}, {names[1]} with {b.origin()}: "
        "the distance between them would mean nothing"
    )
    if not force:
        raise ConflictError(
            f"{message}; make both with the same --weights and --compat, or force it (--force)"
        )
    return f"{message} (forced)"


def save_stats(path: str | os.PathLike[str], stats: SetStats) -> None:
    """Writes ``stats`` as an ``.npz`` atomically (a temporary file, then a rename).

    Keys: ``format``, ``version``, ``mean`` (128,) and ``cov`` (128, 128) float64, ``count``,
    ``files``, ``weights_sha256``, ``mode``. ``path``'s folder must exist.
    """
    arrays = {
        "format": np.array(FORMAT_NAME),
        "version": np.array(FORMAT_VERSION),
        "mean": stats.mean,
        "cov": stats.cov,
        "count": np.array(stats.count),
        "files": np.array(stats.files),
        "weights_sha256": np.array(stats.weights_sha256),
        "mode": np.array(stats.mode),
    }
    with atomic_output(path) as tmp, open(tmp, "xb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]


def load_stats(path: str | os.PathLike[str]) -> SetStats:
    """Reads statistics written by :func:`save_stats`, checking every field.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an ``.npz``, not FAD statistics (e.g. embeddings), another format
            version, or malformed or non-finite values; the message names the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such statistics file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            found = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path} is not an .npz file ({e}); give FAD statistics saved by vggish fad") from e
    try:
        return _parse(found)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{path} is not FAD statistics of this package ({e}); make them with "
            "vggish fad ... --save-stats-background/--save-stats-eval"
        ) from e


def _parse(found: dict[str, np.ndarray]) -> SetStats:
    missing = [k for k in _KEYS if k not in found]
    if missing:
        raise ValueError(f"keys {sorted(found)}; missing {missing}")
    if str(found["format"]) != FORMAT_NAME:
        raise ValueError(f"format {str(found['format'])!r}")
    if found["version"].shape != () or int(found["version"]) != FORMAT_VERSION:
        raise ValueError(f"format version {found['version']!r}; this package reads {FORMAT_VERSION}")
    mean, cov = found["mean"], found["cov"]
    if mean.shape != (D,) or cov.shape != (D, D) or mean.dtype.kind != "f" or cov.dtype.kind != "f":
        raise ValueError(
            f"mean {mean.dtype}{mean.shape}, cov {cov.dtype}{cov.shape}; expected float ({D},), ({D}, {D})"
        )
    if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
        raise ValueError("non-finite mean or covariance")
    count, files = int(found["count"]), int(found["files"])
    if count < 2 or files < 1:
        raise ValueError(f"count {count} and files {files}; at least 2 examples from 1 file")
    mode = str(found["mode"])
    if mode not in get_args(Mode):
        raise ValueError(f"mode {mode!r}; expected one of {get_args(Mode)}")
    sha = str(found["weights_sha256"])
    return SetStats(mean.astype(np.float64), cov.astype(np.float64), count, files, sha, mode)  # type: ignore[arg-type]
