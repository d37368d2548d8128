"""torch.hub entry points: ``torch.hub.load("OWNER/REPO", "vggish")`` returns the model.

``torch.hub.list`` lists every public callable here, so imports stay private or inside the entry
point (which also lets torch.hub check ``dependencies`` first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import os
    from typing import Any

    from vggish.network.runtime import Runtime

# Import names that torch.hub checks before loading; the same as pyproject's dependencies.
dependencies = [
    "numpy", "torch", "soundfile", "soxr", "safetensors", "tqdm", "threadpoolctl", "platformdirs", "pydantic",
    "pydantic_settings", "google_crc32c", "filelock", "pooch",
]


def vggish(weights: str | os.PathLike[str] | None = None, **kwargs: Any) -> Runtime:
    """VGGish, Google's AudioSet embedding model, with the TensorFlow reference's numbers.

    >>> model = torch.hub.load("OWNER/REPO", "vggish")                 # official weights
    >>> result = model.embed_file("dog.wav")          # (N, 128) embeddings, timestamps, uint8 PCA
    >>> result = model.embed(waveform, 44100)         # (samples,) or (samples, channels) floats
    >>> embeddings = model(examples)                  # (B, 96, 64) log-mel -> (B, 128), a torch.Tensor

    Args:
        weights: None for Google's official weights (converted once into the checkout's
            ``weights/`` folder: run ``vggish download`` there, or put Google's
            ``vggish_model.ckpt`` and ``vggish_pca_params.npz`` in it); a ``.safetensors`` file made
            by ``vggish convert``; or ``"random"`` for deterministic random weights (tests only).
        **kwargs: passed to ``vggish.load_model``: ``device`` (``"cpu"``, ``"cuda"``...),
            ``backend`` (``"auto"``, ``"torch"``, ``"onnx"``), ``precision`` (``"fp32"``,
            ``"fp16"``, ``"bf16"``), ``threads``.

    Returns:
        The model in eval mode; ``model.weights_info`` holds the weights' provenance and SHA-256.
    """
    import vggish as _vggish

    return _vggish.load_model(weights, **kwargs)
