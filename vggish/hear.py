"""The HEAR API: VGGish as a HEAR 2021 module (``hear-validator vggish.hear --model random``).

>>> model = vggish.hear.load_model()                       # official weights; or a path, or "random"
>>> emb, ts = vggish.hear.get_timestamp_embeddings(audio, model)   # (n, T, 128), (n, T) ms
>>> scene = vggish.hear.get_scene_embeddings(audio, model)         # (n, 128)

``audio`` is a float tensor ``(n_sounds, n_samples)`` at 16 kHz, every sound of a call the same
length, on any device; results come back on the model's device. A call embeds all of its sounds
through the library's one driver (:mod:`vggish.pipeline.driver`), packed into shared batches, so
the numbers are those of ``runtime.embed(sound, 16000, hop_seconds=..., pad=True)``; log-mel is
computed where the model runs (``frontend="auto"``).

Choices (docs/hear.md; the figures are on docs/benchmarks.md, from ``benchmarks/bench_hear.py``):

* **Timestamp embeddings every 50 ms** (:data:`TIMESTAMP_HOP_SECONDS`): HEAR asks for hops of at
  most 50 ms so that onsets can be placed within its 50 ms tolerance; ``load_model(hop_seconds=
  0.96)`` gives the reference's framing at a fraction of the cost.
* **Timestamps are frame centres** in milliseconds: example k covers [k·hop, k·hop + 0.975) s,
  so its timestamp is k·hop + 487.5 ms.
* **Scene embeddings are the mean over time** of the embeddings at :data:`SCENE_HOP_SECONDS`
  (0.96 s: windows that tile the sound): AudioSet's clip-level pooling and the library's own.
* **Short sounds** (< 0.975 s) are zero-padded to one example (``pad=True``), so that every sound
  has at least one timestamp; the reference itself gives no example for them.
"""

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
    """VGGish as HEAR expects a model: an ``nn.Module`` with the three size attributes.

    It holds a :class:`~vggish.network.runtime.Runtime`; its network is a submodule, so ``.to(device)``
    moves it (a runtime on ONNX Runtime, which computes on the CPU only, is switched to PyTorch
    when the network leaves the CPU). Build it with :func:`load_model`.

    Args:
        runtime: the model that computes the embeddings.
        hop_seconds: distance between timestamp embeddings (a positive multiple of 0.01 s).
        scene_hop_seconds: distance between the examples a scene embedding averages.
        batch_size: examples per model call; None: the runtime's default (32 on the CPU, 256 on
            a GPU).
    """

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
        """Where the network is, and where embeddings and timestamps are returned."""
        return self.runtime.device

    def extra_repr(self) -> str:
        return (
            f"hop_seconds={self.hop_seconds}, scene_hop_seconds={self.scene_hop_seconds}, "
            f"backend={self.runtime.backend!r}, device={self.device}"
        )

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> HearModel:
        """After ``.to()``/``.cuda()``: a runtime on ONNX Runtime becomes PyTorch off the CPU."""
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        if self.runtime.backend != "torch" and self.device.type != "cpu":
            old = self.runtime
            self.runtime = Runtime(
                self.network, precision=old.precision, threads=old.threads, weights_info=old.weights_info
            )
        return self

    def embed(self, audio: torch.Tensor, hop_seconds: float) -> np.ndarray:
        """Embeddings of every sound at ``hop_seconds``, all sounds packed into shared batches.

        Args:
            audio: (n_sounds, n_samples) float tensor at 16 kHz.
            hop_seconds: distance between examples.

        Returns:
            (n_sounds, n_timestamps, 128) float32 NumPy; sounds shorter than 0.975 s are padded
            to one example.

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
        model_file_path: a weights file (``.safetensors``, made by ``vggish convert``); ``""``
            for the official weights (:func:`vggish.default_weights_path`); ``"random"`` for
            deterministic random weights (tests only).
        hop_seconds: distance between timestamp embeddings; default 0.05 s (HEAR's ≤ 50 ms),
            0.96 for the reference's framing at 1/19 of the cost.
        scene_hop_seconds: distance between the examples that a scene embedding averages.
        batch_size: examples per model call (None: 32 on the CPU, 256 on a GPU).
        **runtime_options: passed to :func:`vggish.load_model` (``device``, ``backend``,
            ``precision``, ``threads``).

    Returns:
        The model: an ``nn.Module`` with ``sample_rate`` 16000 and both embedding sizes 128.

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
    """Embeddings every ``model.hop_seconds`` (default 50 ms), with the centre of each frame.

    Args:
        audio: (n_sounds, n_samples) float tensor at 16 kHz, on any device.
        model: from :func:`load_model`.

    Returns:
        ``(embeddings, timestamps)`` on the model's device: (n_sounds, n_timestamps, 128)
        float32, and (n_sounds, n_timestamps) float32 milliseconds, k·hop + 487.5 (exact below
        2.3 hours: every value is a multiple of 0.5 ms).
    """
    embeddings = model.embed(audio, model.hop_seconds)
    centres = frame_centres_ms(embeddings.shape[1], model.hop_seconds)
    timestamps = np.broadcast_to(centres, embeddings.shape[:2])
    device = model.device
    return (
        torch.from_numpy(embeddings).to(device),
        torch.tensor(timestamps, dtype=torch.float32, device=device),
    )


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """One embedding per sound: the mean over time of its embeddings at ``model.scene_hop_seconds``.

    Args:
        audio: (n_sounds, n_samples) float tensor at 16 kHz, on any device.
        model: from :func:`load_model`.

    Returns:
        (n_sounds, 128) float32 on the model's device.
    """
    embeddings = model.embed(audio, model.scene_hop_seconds)
    return torch.from_numpy(embeddings.mean(axis=1, dtype=np.float64).astype(np.float32)).to(model.device)


def frame_centres_ms(count: int, hop_seconds: float) -> np.ndarray:
    """(count,) float64 centres of examples 0 ... count - 1 in milliseconds: k·hop + 487.5.

    Computed from whole samples (k·hop_samples + 7800) / 16 samples per ms, so exactly.
    """
    hop_samples = hop_to_frames(hop_seconds) * params.STFT_HOP_SAMPLES
    centres = np.arange(count, dtype=np.int64) * hop_samples + params.EXAMPLE_SPAN_SAMPLES // 2
    return centres / (params.SAMPLE_RATE / 1000.0)


def check_audio(audio: Any) -> None:
    """Refuses what HEAR does not send: anything but a 2-D float tensor (n_sounds, n_samples).

    Raises:
        ValueError: naming what was received.
    """
    if not isinstance(audio, torch.Tensor):
        raise ValueError(f"audio must be a torch.Tensor (n_sounds, n_samples); got {type(audio).__name__}")
    if audio.dim() != 2 or not audio.is_floating_point():
        raise ValueError(
            f"audio must be a float tensor (n_sounds, n_samples) at {params.SAMPLE_RATE} Hz; "
            f"got {audio.dtype} of shape {tuple(audio.shape)}"
        )
