"""Log-mel front end at 16 kHz and the framing into 96x64 examples (docs/vggish.md §2-§3), in
float64 NumPy like Google's reference; :class:`FrameStream` does it on audio in chunks, in bounded
memory, with the numbers of one go."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from vggish import params


def hertz_to_mel(hertz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``1127 * ln(1 + f / 700)``."""
    return params.MEL_HIGH_FREQUENCY_Q * np.log1p(
        np.asarray(hertz, dtype=np.float64) / params.MEL_BREAK_FREQUENCY_HERTZ
    )


@functools.lru_cache(maxsize=1)
def mel_matrix() -> np.ndarray:
    """The reference (257, 64) mel weight matrix (read-only float64): triangles linear in mel, DC
    row zeroed; ``spectrum @ mel_matrix()`` gives the mel bands."""
    nyquist = params.SAMPLE_RATE / 2
    bins_mel = hertz_to_mel(np.linspace(0.0, nyquist, params.NUM_SPECTRUM_BINS))[:, None]
    edges = np.linspace(
        hertz_to_mel(params.MEL_MIN_HZ), hertz_to_mel(params.MEL_MAX_HZ), params.NUM_MEL_BINS + 2
    )
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights: np.ndarray = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=1)
def periodic_hann() -> np.ndarray:
    """The 400-point *periodic* Hann window ``0.5 - 0.5 cos(2 pi k / 400)``."""
    k = np.arange(params.STFT_WINDOW_SAMPLES, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * k / params.STFT_WINDOW_SAMPLES)
    window.flags.writeable = False
    return window


def num_frames(num_samples: int) -> int:
    """STFT frames in ``num_samples`` at 16 kHz: no centering, partial last frame dropped."""
    if num_samples < params.STFT_WINDOW_SAMPLES:
        return 0
    return 1 + (num_samples - params.STFT_WINDOW_SAMPLES) // params.STFT_HOP_SAMPLES


def log_mel(waveform: np.ndarray) -> np.ndarray:
    """(n,) float 16 kHz samples -> (num_frames(n), 64) float64
    ``log(|rfft(frame * hann, 512)| @ mel_matrix + 0.01)``, frame j covering [160 j, 160 j + 400)."""
    x = np.asarray(waveform, dtype=np.float64)
    count = num_frames(x.shape[0])
    if count == 0:
        return np.empty((0, params.NUM_MEL_BINS), dtype=np.float64)
    frames = sliding_window_view(x, params.STFT_WINDOW_SAMPLES)[:: params.STFT_HOP_SAMPLES][:count]
    spectrum = np.abs(np.fft.rfft(frames * periodic_hann(), n=params.FFT_LENGTH, axis=1))
    mel: np.ndarray = spectrum @ mel_matrix()
    return np.log(mel + params.LOG_OFFSET)


def hop_to_frames(hop_seconds: float) -> int:
    """An example hop in 10 ms frames; ValueError unless it is a positive multiple of 0.01 s."""
    try:
        value = float(hop_seconds)
    except (TypeError, ValueError) as e:
        raise ValueError(f"hop must be a number of seconds; got {hop_seconds!r}") from e
    frames = round(value / params.STFT_HOP_SECONDS) if math.isfinite(value) else 0  # whole 10 ms frames
    if frames < 1 or not math.isclose(frames * params.STFT_HOP_SECONDS, value, rel_tol=0, abs_tol=1e-9):
        raise ValueError(
            f"hop must be a positive multiple of 0.01 s (for example 0.96 or 0.48); got {hop_seconds!r}"
        )
    return frames


def num_examples(num_samples: int, hop_seconds: float = params.EXAMPLE_HOP_SECONDS, pad: bool = False) -> int:
    """Examples made from ``num_samples`` at 16 kHz: 0 below 15600 samples (0.975 s) unless ``pad``
    (then one), else ``(frames - 96) // hop_frames + 1``."""
    hop = hop_to_frames(hop_seconds)
    frames = num_frames(num_samples)
    if frames < params.NUM_FRAMES:
        return 1 if pad else 0
    return (frames - params.NUM_FRAMES) // hop + 1


def example_timestamps(
    count: int, hop_seconds: float = params.EXAMPLE_HOP_SECONDS, *, start: int = 0
) -> np.ndarray:
    """(count, 2) float64 start and end seconds of examples ``start`` ... ``start + count - 1``:
    example k spans [k * hop, k * hop + 0.975)."""
    hop_samples = hop_to_frames(hop_seconds) * params.STFT_HOP_SAMPLES
    starts = np.arange(start, start + count, dtype=np.int64) * hop_samples
    bounds = np.stack([starts, starts + params.EXAMPLE_SPAN_SAMPLES], axis=1)
    return bounds / float(params.SAMPLE_RATE)


class FrameStream:
    """Mono 16 kHz audio in chunks -> log-mel examples (k, 96, 64), equal to framing the whole
    signal at once; subclasses override the ``_`` array hooks."""

    def __init__(self, hop_seconds: float = params.EXAMPLE_HOP_SECONDS, pad: bool = False) -> None:
        self.hop_frames = hop_to_frames(hop_seconds)
        self.pad = pad
        self.samples_seen = 0  # 16 kHz samples pushed so far
        self.examples_emitted = 0
        self._samples: Any = self._samples_array(np.empty(0, dtype=np.float64))  # from (next frame) * 160
        self._frames: Any = self._log_mel(self._samples)  # (frames, 64) still needed by an example
        self._first_frame = 0  # absolute index of self._frames[0]

    def push(self, chunk: Any) -> Any:
        """Adds (k,) float 16 kHz samples; returns the examples completed by them (float32)."""
        self.samples_seen += chunk.shape[0]
        self._samples = self._concat([self._samples, self._samples_array(chunk)])
        frames = self._log_mel(self._samples)
        consumed = frames.shape[0] * params.STFT_HOP_SAMPLES
        self._samples = self._samples[consumed:]
        self._frames = self._concat([self._frames, frames])
        return self._take_examples()

    def finish(self) -> Any:
        """Ends the stream; with ``pad``, a clip shorter than 0.975 s becomes one zero-padded example."""
        if self.pad and self.examples_emitted == 0:
            missing = params.EXAMPLE_SPAN_SAMPLES - self.samples_seen
            return self.push(np.zeros(max(missing, 0), dtype=np.float64))
        return self._cut_examples(0, 0)

    def _take_examples(self) -> Any:
        """Cuts every complete example out of the frame buffer and drops frames no longer needed."""
        start = self.examples_emitted * self.hop_frames - self._first_frame
        available = self._frames.shape[0] - start
        count = 0 if available < params.NUM_FRAMES else (available - params.NUM_FRAMES) // self.hop_frames + 1
        out = self._cut_examples(start, count)
        self.examples_emitted += count
        next_start = self.examples_emitted * self.hop_frames - self._first_frame
        drop = min(next_start, self._frames.shape[0])
        self._frames = self._frames[drop:]
        self._first_frame += drop
        return out

    # Array hooks: NumPy float64 here.
    def _samples_array(self, chunk: Any) -> Any:
        return np.asarray(chunk, dtype=np.float64)

    def _concat(self, parts: list[Any]) -> Any:
        return np.concatenate(parts)

    def _log_mel(self, samples: Any) -> Any:
        return log_mel(samples)

    def _cut_examples(self, start: int, count: int) -> Any:
        """(count, 96, 64) float32: examples ``start``, ``start + hop``... of the frame buffer."""
        out = np.empty((count, params.NUM_FRAMES, params.NUM_BANDS), dtype=np.float32)
        if count:
            windows = sliding_window_view(self._frames, params.NUM_FRAMES, axis=0)
            out[:] = windows[start : start + count * self.hop_frames : self.hop_frames].transpose(0, 2, 1)
        return out
