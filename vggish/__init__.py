"""VGGish, Google's AudioSet embedding model, in PyTorch with the TensorFlow reference's numbers.

>>> import vggish
>>> model = vggish.load_model()                     # official weights (see weights/README.md)
>>> result = model.embed_file("dog.wav")            # embeddings, timestamps, 8-bit PCA features
>>> examples = vggish.waveform_to_examples(x, sr)   # (N, 96, 64) log-mel patches
"""

from vggish.features import example_timestamps, num_examples
from vggish.model import VGGish
from vggish.pipeline import EmbeddingResult, EmbedOptions, waveform_to_examples, wavfile_to_examples
from vggish.weights import default_weights_path, load_model

__version__ = "0.1.0"

__all__ = [
    "EmbedOptions",
    "EmbeddingResult",
    "VGGish",
    "__version__",
    "default_weights_path",
    "example_timestamps",
    "load_model",
    "num_examples",
    "waveform_to_examples",
    "wavfile_to_examples",
]
