"""AudioSet's postprocessing: PCA, clip, 8-bit quantisation (docs/vggish.md §5), in float64 with a
truncating cast, as Google's."""

from __future__ import annotations

import numpy as np

from vggish import params

_QUANTIZE_SCALE = 255.0 / (params.QUANTIZE_MAX_VAL - params.QUANTIZE_MIN_VAL)  # 63.75


def postprocess(embeddings: np.ndarray, eigen_vectors: np.ndarray, means: np.ndarray) -> np.ndarray:
    """(N, 128) raw embeddings -> (N, 128) uint8
    ``trunc((clip((e - means) @ eigen_vectors.T, -2, 2) + 2) * 255 / 4)``."""
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[1] != params.EMBEDDING_SIZE:
        raise ValueError(f"postprocess takes embeddings shaped (N, {params.EMBEDDING_SIZE}); got {emb.shape}")
    pca = (emb - means.reshape(1, -1)) @ eigen_vectors.T
    clipped = np.clip(pca, params.QUANTIZE_MIN_VAL, params.QUANTIZE_MAX_VAL)
    quantized: np.ndarray = (clipped - params.QUANTIZE_MIN_VAL) * _QUANTIZE_SCALE
    return quantized.astype(np.uint8)
