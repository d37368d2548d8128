"""VGGish, Google's AudioSet embedding model, in PyTorch with the TensorFlow reference's numbers.

The data path, one module per stage: :mod:`~vggish.audio.decode` -> :mod:`~vggish.audio.resample`
-> :mod:`~vggish.features.logmel` -> :mod:`~vggish.pipeline.source` (the one source of examples)
-> :mod:`~vggish.pipeline.packer` (the one batcher) -> :mod:`~vggish.network.model` ->
:mod:`~vggish.network.postprocess`. The names below are imported on first use, so
``vggish --version`` does not import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vggish.version import __version__

if TYPE_CHECKING:
    from vggish.features.logmel import example_timestamps, num_examples
    from vggish.network.loader import load_model
    from vggish.network.model import VGGish
    from vggish.network.runtime import Runtime
    from vggish.pipeline.driver import EmbeddingResult
    from vggish.pipeline.options import EmbedOptions
    from vggish.pipeline.source import Waveform, waveform_to_examples, wavfile_to_examples
    from vggish.weights.location import default_weights_path

_HOMES = {
    "EmbedOptions": "vggish.pipeline.options",
    "EmbeddingResult": "vggish.pipeline.driver",
    "Runtime": "vggish.network.runtime",
    "VGGish": "vggish.network.model",
    "Waveform": "vggish.pipeline.source",
    "default_weights_path": "vggish.weights.location",
    "example_timestamps": "vggish.features.logmel",
    "load_model": "vggish.network.loader",
    "num_examples": "vggish.features.logmel",
    "waveform_to_examples": "vggish.pipeline.source",
    "wavfile_to_examples": "vggish.pipeline.source",
}

__all__ = [
    "EmbedOptions",
    "EmbeddingResult",
    "Runtime",
    "VGGish",
    "Waveform",
    "__version__",
    "default_weights_path",
    "example_timestamps",
    "load_model",
    "num_examples",
    "waveform_to_examples",
    "wavfile_to_examples",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'vggish' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
