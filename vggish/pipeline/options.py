"""How audio becomes examples and embeddings: :class:`EmbedOptions`, shared by every surface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from vggish import params
from vggish.audio.resample import ResamplerName
from vggish.features.logmel import hop_to_frames

if TYPE_CHECKING:
    import torch

FrontendName = Literal["auto", "numpy", "torch"]  # auto: torch where the model is on a GPU


@dataclass(frozen=True)
class EmbedOptions:
    """How to turn audio into embeddings.

    Attributes:
        hop_seconds: distance between example starts; a positive multiple of 0.01 s.
        pad: zero-pad a clip shorter than 0.975 s to one example (the reference gives none).
        postprocess: AudioSet's PCA + uint8; None means "when the weights carry PCA parameters".
        batch_size: examples per model call; None: the model's ``default_batch_size``.
        frontend: where log-mel examples are computed.
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
        """The torch front end's device for a model on ``model_device`` (None: NumPy)."""
        if self.frontend == "numpy" or (self.frontend == "auto" and model_device.type == "cpu"):
            return None
        return model_device
