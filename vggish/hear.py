"""The HEAR API: VGGish as a HEAR 2021 module (``hear-validator vggish.hear --model random``).
``audio`` is a float tensor ``(n_sounds, n_samples)`` at 16 kHz on any device; a call's sounds go
through the library's one driver in shared batches, so the numbers are those of
``runtime.embed(sound, 16000, hop_seconds=..., pad=True)``. Timestamp embeddings come every 50 ms
(HEAR's largest hop) at frame centres; scene embeddings are the mean over time at a 0.96 s hop;
short sounds are zero-padded to one example (docs/hear.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vggish import params
from vggish.features.logmel import hop_to_frames, num_examples
from vggish.network.loader import load_model as load_runtime
from vggish.network.runtime import Runtime
from vggish.pipeline import driver as pipeline
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import Waveform

TIMESTAMP_HOP_SECONDS = 0.05  # HEAR's largest hop for timestamp embeddings: 5 frames of 10 ms
SCENE_HOP_SECONDS = params.EXAMPLE_HOP_SECONDS  # 0.96 s: the reference's framing, pooled by the mean


class HearModel(torch.nn.Module):
    """VGGish as HEAR expects a model: an ``nn.Module`` with the three size attributes, holding a
    :class:`~vggish.network.runtime.Runtime` whose network is a submodule (``.to(device)`` moves
    it; an ONNX Runtime backend becomes PyTorch off the CPU). Build it with :func:`load_model`."""

    sample_rate: int = params.SAMPLE_RATE
    scene_embedding_size: int = params.EMBEDDING_SIZE
    timestamp_embedding_size: int = params.EMBEDDING_SIZE

    def __init__(
        self,
        runtime: Runtime,
        *,
        hop_seconds: float = TIMESTAMP_HOP_SECONDS,
        scene_hop_seconds: float = SCENE_HOP_SECONDS,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        hop_to_frames(hop_seconds)  # ValueError unless a positive multiple of 0.01 s
        hop_to_frames(scene_hop_seconds)
        EmbedOptions(batch_size=batch_size)  # ValueError unless a positive int or None
        self.runtime = runtime
        self.network = runtime.network  # a submodule: .to(), .cuda(), state_dict() reach it
        self.hop_seconds = float(hop_seconds)
        self.scene_hop_seconds = float(scene_hop_seconds)
        self.batch_size = batch_size

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    def extra_repr(self) -> str:
        return (
            f"hop_seconds={self.hop_seconds}, scene_hop_seconds={self.scene_hop_seconds}, "
            f"backend={self.runtime.backend!r}, device={self.device}"
        )

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> HearModel:
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        if self.runtime.backend != "torch" and self.device.type != "cpu":
            old = self.runtime
            self.runtime = Runtime(
                self.network, precision=old.precision, threads=old.threads, weights_info=old.weights_info
            )
        return self

    def embed(self, audio: torch.Tensor, hop_seconds: float) -> np.ndarray:
        """(n_sounds, n_samples) at 16 kHz -> (n_sounds, n_timestamps, 128) float32 NumPy.

        Raises:
            ValueError: ``audio`` is not a 2-D float tensor of finite samples.
        """
        check_audio(audio)
        options = EmbedOptions(
            hop_seconds=hop_seconds, pad=True, postprocess=False, batch_size=self.batch_size, frontend="auto"
        )
        sounds = [Waveform(sound, params.SAMPLE_RATE) for sound in audio]
        results = pipeline.embed_many(self.runtime, sounds, options)
        count = num_examples(int(audio.shape[1]), hop_seconds, pad=True)
        out = np.empty((len(sounds), count, params.EMBEDDING_SIZE), dtype=np.float32)
        for i, result in enumerate(results):
            out[i] = result.embeddings
        return out


def load_model(
    model_file_path: str = "",
    *,
    hop_seconds: float = TIMESTAMP_HOP_SECONDS,
    scene_hop_seconds: float = SCENE_HOP_SECONDS,
    batch_size: int | None = None,
    **runtime_options: Any,
) -> HearModel:
    """Loads VGGish for the HEAR API.

    Args:
        model_file_path: a ``.safetensors`` weights file; ``""`` for the official weights;
            ``"random"`` for deterministic random weights (tests only).
        hop_seconds: distance between timestamp embeddings (0.96: the reference's framing).
        scene_hop_seconds: distance between the examples that a scene embedding averages.
        batch_size: examples per model call (None: the runtime's default).
        **runtime_options: passed to :func:`vggish.load_model`.

    Raises:
        FileNotFoundError: no weights where asked.
        ValueError: a bad hop, batch size or runtime option.
    """
    weights = None if model_file_path == "" else model_file_path
    runtime = load_runtime(weights, **runtime_options)
    return HearModel(
        runtime, hop_seconds=hop_seconds, scene_hop_seconds=scene_hop_seconds, batch_size=batch_size
    )


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings every ``model.hop_seconds`` and the centre of each frame, on the model's device:
    (n_sounds, n_timestamps, 128) float32 and (n_sounds, n_timestamps) float32 ms."""
    embeddings = model.embed(audio, model.hop_seconds)
    centres = frame_centres_ms(embeddings.shape[1], model.hop_seconds)
    timestamps = np.broadcast_to(centres, embeddings.shape[:2])
    device = model.device
    return (
        torch.from_numpy(embeddings).to(device),
        torch.tensor(timestamps, dtype=torch.float32, device=device),
    )


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """(n_sounds, 128) float32: the mean over time of each sound's embeddings at
    ``model.scene_hop_seconds``, on the model's device."""
    embeddings = model.embed(audio, model.scene_hop_seconds)
    return torch.from_numpy(embeddings.mean(axis=1, dtype=np.float64).astype(np.float32)).to(model.device)


def frame_centres_ms(count: int, hop_seconds: float) -> np.ndarray:
    """(count,) float64 centres of examples in milliseconds, k·hop + 487.5, exact (from samples)."""
    hop_samples = hop_to_frames(hop_seconds) * params.STFT_HOP_SAMPLES
    centres = np.arange(count, dtype=np.int64) * hop_samples + params.EXAMPLE_SPAN_SAMPLES // 2
    return centres / (params.SAMPLE_RATE / 1000.0)


def check_audio(audio: Any) -> None:
    """Raises ValueError for anything but a 2-D float tensor (n_sounds, n_samples)."""
    if not isinstance(audio, torch.Tensor):
        raise ValueError(f"audio must be a torch.Tensor (n_sounds, n_samples); got {type(audio).__name__}")
    if audio.dim() != 2 or not audio.is_floating_point():
        raise ValueError(
            f"audio must be a float tensor (n_sounds, n_samples) at {params.SAMPLE_RATE} Hz; "
            f"got {audio.dtype} of shape {tuple(audio.shape)}"
        )
