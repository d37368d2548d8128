"""The log-mel front end in PyTorch, batched, on any device (docs/vggish.md §2-§3): the arithmetic
of :mod:`vggish.features.logmel`, in float64 by default so that a GPU gives the reference's numbers.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from vggish import params
from vggish.features import logmel as features


@functools.lru_cache(maxsize=16)
def _constant(name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    array = features.periodic_hann() if name == "hann" else features.mel_matrix()
    return torch.tensor(array, dtype=dtype, device=device)


def log_mel_torch(waveforms: torch.Tensor) -> torch.Tensor:
    """Log-mel spectrogram of (..., n) float 16 kHz samples: (..., num_frames(n), 64)."""
    if not waveforms.is_floating_point():
        raise ValueError(f"waveforms must be a float tensor; got {waveforms.dtype}")
    count = features.num_frames(waveforms.shape[-1])
    if count == 0:
        return waveforms.new_empty((*waveforms.shape[:-1], 0, params.NUM_MEL_BINS))
    device, dtype = waveforms.device, waveforms.dtype
    frames = waveforms.unfold(-1, params.STFT_WINDOW_SAMPLES, params.STFT_HOP_SAMPLES)
    windowed = frames * _constant("hann", device, dtype)
    spectrum = torch.fft.rfft(windowed, n=params.FFT_LENGTH, dim=-1).abs()
    mel = spectrum @ _constant("mel", device, dtype)
    return torch.log(mel + params.LOG_OFFSET)


def frames_to_examples(frames: torch.Tensor, hop_frames: int) -> torch.Tensor:
    """(..., F, 64) log-mel frames -> (..., N, 96, 64) examples every ``hop_frames`` frames (views)."""
    if frames.shape[-2] < params.NUM_FRAMES:
        return frames.new_empty((*frames.shape[:-2], 0, params.NUM_FRAMES, params.NUM_BANDS))
    return frames.unfold(-2, params.NUM_FRAMES, hop_frames).transpose(-1, -2)


def waveform_to_examples_torch(
    waveforms: torch.Tensor,
    *,
    hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
    pad: bool = False,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """(n,) or (B, n) float 16 kHz samples -> (N, 96, 64) or (B, N, 96, 64) float32 examples on
    their device, equal to :func:`vggish.waveform_to_examples`'s; ``dtype``: the arithmetic's."""
    if waveforms.dim() not in (1, 2):
        raise ValueError(f"waveforms must be (n,) or (batch, n); got shape {tuple(waveforms.shape)}")
    hop = features.hop_to_frames(hop_seconds)
    x = waveforms.to(dtype)
    if pad and x.shape[-1] < params.EXAMPLE_SPAN_SAMPLES:
        x = torch.nn.functional.pad(x, (0, params.EXAMPLE_SPAN_SAMPLES - x.shape[-1]))
    return frames_to_examples(log_mel_torch(x), hop).to(torch.float32)


class TorchFrameStream(features.FrameStream):
    """:class:`vggish.features.logmel.FrameStream` computed with PyTorch on ``device``."""

    def __init__(
        self,
        device: torch.device | str,
        hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        super().__init__(hop_seconds, pad)

    def _samples_array(self, chunk: Any) -> Any:
        if isinstance(chunk, torch.Tensor):
            return chunk.to(self.device, self.dtype)
        return to_device(np.asarray(chunk), self.device, self.dtype)

    def _concat(self, parts: list[Any]) -> Any:
        return torch.cat(parts)

    def _log_mel(self, samples: Any) -> Any:
        return log_mel_torch(samples)

    def _cut_examples(self, start: int, count: int) -> Any:
        if count == 0:
            return torch.empty((0, params.NUM_FRAMES, params.NUM_BANDS), device=self.device)
        span = self._frames[start : start + (count - 1) * self.hop_frames + params.NUM_FRAMES]
        return frames_to_examples(span, self.hop_frames).to(torch.float32)


def to_device(array: np.ndarray, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A NumPy array as a tensor on ``device``; through pinned memory (asynchronous copy) on CUDA."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    # torch's host allocator keeps the pinned buffer alive until the asynchronous copy completes
    on_gpu = device.type == "cuda"
    tensor = tensor.pin_memory().to(device, non_blocking=True) if on_gpu else tensor.to(device)
    return tensor if dtype is None else tensor.to(dtype)
