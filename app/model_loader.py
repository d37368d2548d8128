"""Finding and loading the weights the settings name; one-line errors when there are none."""

from __future__ import annotations

import logging
from pathlib import Path

from vggish.network.loader import load_model
from vggish.network.runtime import Runtime
from vggish.weights import OFFICIAL_CHECKPOINT_NAME, OFFICIAL_PCA_NAME, RANDOM, default_weights_path
from vggish.weights.convert import resolve_weights_path
from vggish.weights.install import download_official

from .config import Settings

logger = logging.getLogger("app.model_loader")


def _no_weights(path: Path, why: str) -> RuntimeError:
    return RuntimeError(
        f"no VGGish weights at {path} ({why}): put Google's {OFFICIAL_CHECKPOINT_NAME} and "
        f"{OFFICIAL_PCA_NAME} in {path.parent}/ (converted on first use), "
        f"or set VGGISH_WEIGHTS=random for a demo"
    )


def resolve_weights(settings: Settings) -> str:
    """The weights to load: ``random``, or a file (converted or downloaded when missing); a
    one-line RuntimeError when there are none."""
    if settings.weights == RANDOM:
        return RANDOM
    path = Path(settings.weights) if settings.weights else default_weights_path()
    try:
        return str(resolve_weights_path(path))
    except FileNotFoundError:
        if not settings.download:
            raise _no_weights(path, "downloads are off: VGGISH_DOWNLOAD=false") from None
    logger.warning("downloading the official VGGish weights into %s", path.parent)
    try:
        download_official(path.parent)
        return str(resolve_weights_path(path))
    except (OSError, RuntimeError, ValueError) as e:
        reason = " ".join(str(e).split())
        raise _no_weights(path, f"the download failed: {reason}") from None


def load_configured_model(settings: Settings) -> Runtime:
    """Loads the model the settings name onto their device."""
    return load_model(resolve_weights(settings), **settings.load_kwargs())
