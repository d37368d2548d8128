"""The official install: fetch Google's files -> convert them -> Google's smoke test -> in place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vggish.network.loader import load_model
from vggish.weights import download as transfer
from vggish.weights.convert import convert_checkpoint
from vggish.weights.download import Downloaded
from vggish.weights.location import DEFAULT_WEIGHTS_NAME
from vggish.weights.verify import SmokeResult, smoke_test


@dataclass(frozen=True)
class OfficialInstall:
    """What :func:`install_official` fetched and produced."""

    checkpoint: Downloaded
    pca: Downloaded
    weights: Path
    smoke: SmokeResult


def install_official(directory: str | os.PathLike[str], *, progress: bool = True) -> OfficialInstall:
    """Fetches Google's checkpoint and PCA file, converts them, and moves the weights to
    ``directory / "vggish.safetensors"`` only when Google's smoke test passes (else RuntimeError)."""
    folder = Path(directory)
    checkpoint = transfer.download(transfer.OFFICIAL_CHECKPOINT, folder, progress=progress)
    pca = transfer.download(transfer.OFFICIAL_PCA, folder, progress=progress)
    out = folder / DEFAULT_WEIGHTS_NAME
    unverified = folder / f".unverified-{DEFAULT_WEIGHTS_NAME}"
    try:
        convert_checkpoint(checkpoint.path, unverified, pca=pca.path)
        smoke = smoke_test(load_model(unverified, backend="torch"))
        if not smoke.ok:
            raise RuntimeError(f"the converted weights fail Google's smoke test: {smoke.failures()}")
        os.replace(unverified, out)
    finally:
        unverified.unlink(missing_ok=True)
    return OfficialInstall(checkpoint, pca, out, smoke)


def download_official(directory: str | os.PathLike[str], *, progress: bool = True) -> Path:
    """:func:`install_official`, returning only the weights' path."""
    return install_official(directory, progress=progress).weights
