"""How audio becomes examples and embeddings: the options every surface shares.

The library (``embed``, ``embed_file``), the CLI, the service, extraction, heads and the HEAR API
all describe a request with one :class:`EmbedOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from vggish import params
from vggish.audio.resample import ResamplerName
from vggish.features.logmel import hop_to_frames

if TYPE_CHECKING:
    import torch

FrontendName = Literal["auto", "numpy", "torch"]
"""Where log-mel examples are computed: ``numpy`` (float64 on the CPU, the reference path),
``torch`` (float64 PyTorch on the model's device, same numbers), or ``auto`` (``torch`` when the
model is on a GPU, so examples are made where the model runs; ``numpy`` on the CPU)."""


@dataclass(frozen=True)
class EmbedOptions:
    """How to turn audio into embeddings.

    Attributes:
        hop_seconds: distance between example starts; a positive multiple of 0.01 s.
        pad: zero-pad a clip shorter than 0.975 s to one example (the reference gives none).
        postprocess: AudioSet's PCA + uint8; None means "when the weights carry PCA parameters".
        resampler: ``reference`` (resampy kaiser_best, exact) or ``fast`` (soxr).
        batch_size: examples per model call; None: the model's ``default_batch_size`` (32 on the
            CPU, 256 on a GPU).
        frontend: where log-mel examples are computed (see :data:`FrontendName`).
    """

    hop_seconds: float = params.EXAMPLE_HOP_SECONDS
    pad: bool = False
    postprocess: bool | None = None
    resampler: ResamplerName = "reference"
    batch_size: int | None = None
    frontend: FrontendName = "auto"

    def __post_init__(self) -> None:
        hop_to_frames(self.hop_seconds)
        if self.resampler not in get_args(ResamplerName):
            raise ValueError(f"resampler must be one of {get_args(ResamplerName)}; got {self.resampler!r}")
        if self.batch_size is not None and (
            not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool) or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer or None; got {self.batch_size!r}")
        if self.frontend not in get_args(FrontendName):
            raise ValueError(f"frontend must be one of {get_args(FrontendName)}; got {self.frontend!r}")

    def frontend_device(self, model_device: torch.device) -> torch.device | None:
        """The device the torch front end runs on for a model on ``model_device``, or None for
        the NumPy front end."""
        if self.frontend == "numpy" or (self.frontend == "auto" and model_device.type == "cpu"):
            return None
        return model_device
