"""Where the weights live and what the official files are called (no PyTorch needed to ask)."""

from __future__ import annotations

from pathlib import Path

import platformdirs

DEFAULT_WEIGHTS_NAME = "vggish.safetensors"
OFFICIAL_CHECKPOINT_NAME = "vggish_model.ckpt"
OFFICIAL_PCA_NAME = "vggish_pca_params.npz"
RANDOM = "random"  # the name of the deterministic demo weights


def default_weights_dir() -> Path:
    """Where the official converted weights live by default: the repository's ``weights/`` folder
    in a checkout, else the user's cache folder."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "weights").is_dir():
        return root / "weights"
    return platformdirs.user_cache_path("vggish")


def default_weights_path() -> Path:
    return default_weights_dir() / DEFAULT_WEIGHTS_NAME
