"""Postprocessing against a NumPy version of Google's formula written here (docs/vggish.md §5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vggish.network.postprocess import postprocess


def google_postprocess(emb: np.ndarray, eigen: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Google's layout: means as a column, PCA applied as matrix @ (emb.T - means)."""
    pca_applied = np.dot(eigen, emb.T.astype(np.float64) - means.reshape(-1, 1)).T
    clipped = np.clip(pca_applied, -2.0, 2.0)
    quantized = (clipped - -2.0) * (255.0 / 4.0)
    return quantized.astype(np.uint8)


def test_matches_numpy_reference_on_random_data() -> None:
    rng = np.random.default_rng(0)
    eigen = rng.standard_normal((128, 128)) * 0.3
    eigen[127, 65] = 45.0  # like the official file's huge entry (tensorflow/models#5000)
    means = rng.standard_normal(128)
    emb = rng.standard_normal((200, 128)).astype(np.float32)
    ours = postprocess(emb, eigen, means)
    theirs = google_postprocess(emb, eigen, means)
    assert ours.dtype == np.uint8 and ours.shape == (200, 128)
    # Same float64 arithmetic up to summation order: truncation may flip at most a rare entry.
    differ = ours.astype(int) - theirs.astype(int)
    assert np.abs(differ).max() <= 1
    assert np.count_nonzero(differ) <= 0.001 * differ.size
    # The huge eigen-vector entry saturates dimension 127 for most inputs, as in AudioSet.
    assert np.mean((ours[:, 127] == 255) | (ours[:, 127] == 0)) > 0.9


def test_truncates_not_rounds() -> None:
    eigen = np.eye(128)
    means = np.zeros(128)
    values = np.array([-3.0, -2.0, -1.99, 0.0, 0.015, 1.99, 1.999, 2.0, 5.0])
    emb = np.zeros((len(values), 128))
    emb[:, 0] = values
    q = postprocess(emb, eigen, means)[:, 0]
    # (v + 2) * 63.75: 0, 0, 0.6375 -> 0, 127.5 -> 127, 128.45 -> 128, 254.36 -> 254, 254.93 -> 254,
    # 255 only at +2 (and above, after clipping).
    assert q.tolist() == [0, 0, 0, 127, 128, 254, 254, 255, 255]


def test_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"\(N, 128\)"):
        postprocess(np.zeros((3, 64)), np.eye(128), np.zeros(128))


def test_model_postprocess_returns_uint8_tensor_and_keeps_batch_of_one(random_model) -> None:  # type: ignore[no-untyped-def]
    emb = torch.randn(1, 128)
    q = random_model.postprocess(emb)
    assert q.dtype == torch.uint8 and q.shape == (1, 128)
    expected = google_postprocess(
        emb.numpy(), random_model.network.pca_eigen_vectors.numpy(), random_model.network.pca_means.numpy()
    )
    assert np.abs(q.numpy().astype(int) - expected.astype(int)).max() <= 1


def test_model_without_pca_says_how_to_get_it() -> None:
    from vggish.network.model import VGGish

    with pytest.raises(RuntimeError, match="--pca"):
        VGGish().postprocess(torch.zeros(2, 128))
