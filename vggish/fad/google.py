"""Google's ``frechet_audio_distance`` front end (``create_embeddings_main`` with its default
flags), as inputs for the one pipeline.

Google reads each file with ``scipy.io.wavfile.read`` and ignores its rate, keeps the raw integer
scale as float32 values, divides by ``max(0.1, max(x))`` (the largest *signed* sample), and cuts
the result into 1 s windows (16000 samples) every 0.5 s, each turned into log-mel on its own and
cut to its first 96 frames; the tail shorter than a window is dropped. A window starting at a
multiple of 160 samples has the frames of the whole signal's log-mel there, so those examples
are exactly the project's examples at a 0.5 s hop of the signal cut after its last full window:
the normalised signal goes through the one example source and packer like any waveform.

What Google's tool would misread or crash on is refused: files that are not WAV, multichannel
WAV (its pipeline fails), and rates other than 16 kHz (it would read them as 16 kHz silently).
Long files are cut into segments of whole windows, so memory stays bounded.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vggish import params
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import Waveform

WINDOW_SAMPLES = params.SAMPLE_RATE  # 1 s: Google's model window
STEP_SAMPLES = 8000  # 0.5 s: create_embeddings_main's default --model_step_size
PEAK_FLOOR = 0.1  # 10^(-20/20): the most gain the normalisation applies is +20 dB
SEGMENT_WINDOWS = 240  # windows per segment handed to the pipeline (2 min of audio)
_SCAN_SAMPLES = 1 << 20  # samples checked at a time for the peak and NaN/Inf

OPTIONS = EmbedOptions(hop_seconds=STEP_SAMPLES / params.SAMPLE_RATE, postprocess=False)
"""The pipeline options of the google mode: a 0.5 s hop, no padding, float embeddings."""


def num_windows(samples: int) -> int:
    """Google's example count for a file of ``samples``: one per full window, 0 under 1 s."""
    return 0 if samples < WINDOW_SAMPLES else (samples - WINDOW_SAMPLES) // STEP_SAMPLES + 1


@dataclass(frozen=True)
class GoogleWav:
    """A WAV file read as Google's tool reads it (memory-mapped where SciPy can).

    Attributes:
        data: (samples,) the raw values SciPy returns (int16, int32, uint8, float32/64).
        peak: the normalisation divisor, ``max(0.1, max(float32(x)))``.
    """

    data: np.ndarray
    peak: float

    @property
    def windows(self) -> int:
        """Examples this file gives."""
        return num_windows(int(self.data.shape[0]))

    @property
    def num_segments(self) -> int:
        """Pieces :meth:`segments` yields."""
        return -(-self.windows // SEGMENT_WINDOWS)

    def segments(self) -> Iterator[Waveform]:
        """The normalised signal in pieces of whole windows (each gives exactly its windows' examples)."""
        total = self.windows
        for first in range(0, total, SEGMENT_WINDOWS):
            count = min(SEGMENT_WINDOWS, total - first)
            start = first * STEP_SAMPLES
            stop = start + (count - 1) * STEP_SAMPLES + WINDOW_SAMPLES
            x = self.data[start:stop].astype(np.float32).astype(np.float64)
            x /= self.peak
            yield Waveform(x, params.SAMPLE_RATE)


def read_wav(path: str) -> GoogleWav:
    """Opens ``path`` as Google's tool would, refusing what it would misread.

    Raises:
        ValueError: not a WAV SciPy reads, multichannel, not 16 kHz, or NaN/Inf samples; the
            message says what to do.
    """
    from scipy.io import wavfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # unknown chunks, as Google ignores them
        try:
            rate, data = wavfile.read(path, mmap=True)
        except ValueError as e:
            if "mmap" not in str(e):  # 24-bit: SciPy reads it, but not memory-mapped
                raise ValueError(f"not a WAV file Google's tool reads ({e}); use the default mode") from e
            rate, data = wavfile.read(path)
    if data.ndim != 1:
        raise ValueError(
            f"{data.shape[1]} channels; Google's tool fails on multichannel WAV: mix it to mono "
            "first, or use the default mode (which mixes to mono)"
        )
    if rate != params.SAMPLE_RATE:
        raise ValueError(
            f"{rate} Hz; Google's tool would read it as 16 kHz without resampling (wrong "
            "numbers): resample it to 16 kHz first, or use the default mode (which resamples)"
        )
    return GoogleWav(data, _peak(data))


def _peak(data: np.ndarray) -> float:
    peak = -np.inf
    for start in range(0, data.shape[0], _SCAN_SAMPLES):
        part = data[start : start + _SCAN_SAMPLES]
        if part.dtype.kind == "f" and not np.isfinite(part).all():
            raise ValueError("NaN or infinite samples")
        peak = max(peak, float(np.float32(part.max())))
    return max(PEAK_FLOOR, peak)
