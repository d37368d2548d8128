"""VGGish, Google's AudioSet embedding model, in PyTorch with the TensorFlow reference's numbers.

>>> import vggish
>>> model = vggish.load_model()                     # official weights (see weights/README.md)
>>> result = model.embed_file("dog.wav")            # embeddings, timestamps, 8-bit PCA features
>>> examples = vggish.waveform_to_examples(x, sr)   # (N, 96, 64) log-mel patches

The data path, one module per stage: :mod:`~vggish.audio` (decode) -> :mod:`~vggish.resample`
-> :mod:`~vggish.features` (log-mel) -> :mod:`~vggish.examples` (the one source of examples)
-> :mod:`~vggish.packer` (the one batcher) -> :mod:`~vggish.model` (the network) ->
:mod:`~vggish.postprocess`; :mod:`~vggish.runtime` holds how the network runs.

The names below are imported on first use, so ``import vggish.client`` or ``vggish --version``
do not pay for importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vggish.version import __version__

if TYPE_CHECKING:
    from vggish.examples import Waveform, waveform_to_examples, wavfile_to_examples
    from vggish.features import example_timestamps, num_examples
    from vggish.loader import load_model
    from vggish.model import VGGish
    from vggish.options import EmbedOptions
    from vggish.pipeline import EmbeddingResult
    from vggish.runtime import Runtime
    from vggish.weights.format import default_weights_path

_HOMES = {
    "EmbedOptions": "vggish.options",
    "EmbeddingResult": "vggish.pipeline",
    "Runtime": "vggish.runtime",
    "VGGish": "vggish.model",
    "Waveform": "vggish.examples",
    "default_weights_path": "vggish.weights.format",
    "example_timestamps": "vggish.features",
    "load_model": "vggish.loader",
    "num_examples": "vggish.features",
    "waveform_to_examples": "vggish.examples",
    "wavfile_to_examples": "vggish.examples",
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
