"""Decode: request inputs -> mono samples -> log-mel examples, on the decode thread pool.

Inputs are probed first (cheap: headers only) so that duration limits are checked before any
audio is decoded; decoding then streams block by block through the library's front end
(:func:`vggish.pipeline.iter_examples`), exactly as :func:`vggish.pipeline.embed_source` does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from app.errors import InvalidAudioError, LimitExceededError, UndecodableAudioError
from vggish import audio
from vggish.pipeline import CHUNK_SAMPLES, EmbedOptions, iter_examples


@dataclass(frozen=True)
class EncodedAudio:
    """An audio file's bytes, as uploaded."""

    name: str | None
    data: bytes


@dataclass(frozen=True)
class SampleArray:
    """Samples sent as numbers: (samples,) or (samples, channels), at ``sample_rate`` Hz."""

    name: str | None
    samples: list[float] | list[list[float]]
    sample_rate: int


AudioInput = EncodedAudio | SampleArray


@dataclass(frozen=True)
class Probed:
    """What an input holds, known before decoding.

    Attributes:
        sample_rate: Hz.
        channels: channel count.
        frames: samples per channel, or None when the container does not say (ffmpeg inputs).
        mono: the checked mono waveform for sample arrays; None for files (decoded later).
    """

    sample_rate: int
    channels: int
    frames: int | None
    mono: np.ndarray | None = None

    @property
    def seconds(self) -> float:
        """Duration in seconds (0 when unknown)."""
        return 0.0 if self.frames is None else self.frames / self.sample_rate


@dataclass(frozen=True)
class Decoded:
    """An input's log-mel examples, (N, 96, 64) float32, and its length in samples per channel."""

    examples: np.ndarray
    num_samples: int


class DecodeCancelledError(Exception):
    """The request went away while its audio was being decoded."""


def probe(item: AudioInput) -> Probed:
    """Reads an input's rate, channels and length (a file's header only).

    Raises:
        UndecodableAudioError: a file no decoder reads (415).
        InvalidAudioError: samples that are not audio: NaN, bad shape or sample rate (422).
    """
    if isinstance(item, SampleArray):
        try:
            array = np.asarray(item.samples, dtype=np.float64)
            mono = audio.validate_waveform(array, item.sample_rate)
        except ValueError as e:
            raise InvalidAudioError(f"{_label(item)}: {e}") from e
        channels = 1 if array.ndim == 1 else int(array.shape[1])
        return Probed(int(item.sample_rate), channels, int(mono.shape[0]), mono)
    try:
        info = audio.probe(item.data)
    except (ValueError, RuntimeError) as e:
        raise UndecodableAudioError(f"{_label(item)}: {e}") from e
    return Probed(info.sample_rate, info.channels, info.frames)


def decode(
    item: AudioInput, probed: Probed, options: EmbedOptions, max_seconds: float, cancelled: threading.Event
) -> Decoded:
    """Turns an input into log-mel examples, in bounded memory.

    Args:
        item: the input.
        probed: what :func:`probe` said about it.
        options: hop, padding and resampler.
        max_seconds: audio this input may hold (enforced while decoding when its length is unknown).
        cancelled: set when the request is gone; decoding stops at the next block.

    Raises:
        InvalidAudioError: the file is truncated or corrupt (422).
        LimitExceededError: it decodes to more than ``max_seconds`` (413).
        DecodeCancelledError: ``cancelled`` was set.
    """
    counter = _Counter()
    if probed.mono is not None:
        chunks = _array_chunks(probed.mono, cancelled)
    else:
        assert isinstance(item, EncodedAudio)
        max_frames = int(max_seconds * probed.sample_rate)
        chunks = _file_chunks(item, counter, (max_frames, max_seconds), cancelled)
    blocks = list(iter_examples(chunks, probed.sample_rate, options))
    num_samples = probed.frames if probed.mono is not None else counter.frames
    return Decoded(np.concatenate(blocks), int(num_samples or 0))


class _Counter:
    frames = 0


def _array_chunks(mono: np.ndarray, cancelled: threading.Event) -> Iterator[np.ndarray]:
    for start in range(0, mono.shape[0], CHUNK_SAMPLES):
        if cancelled.is_set():
            raise DecodeCancelledError
        yield mono[start : start + CHUNK_SAMPLES]


def _file_chunks(
    item: EncodedAudio, counter: _Counter, limit: tuple[int, float], cancelled: threading.Event
) -> Iterator[np.ndarray]:
    """Decoded blocks as mono, counted and checked against ``limit`` (frames, seconds)."""
    try:
        _, blocks = audio.stream(item.data)
    except (ValueError, RuntimeError) as e:
        raise UndecodableAudioError(f"{_label(item)}: {e}") from e
    while True:
        if cancelled.is_set():
            raise DecodeCancelledError
        try:
            block = next(blocks, None)
        except (ValueError, RuntimeError) as e:
            raise InvalidAudioError(f"{_label(item)}: {e}") from e
        if block is None:
            return
        counter.frames += block.shape[0]
        if counter.frames > limit[0]:
            raise LimitExceededError("max_input_seconds", f"{_label(item)} holds more than {limit[1]:g} s")
        yield audio.to_mono(block)


def _label(item: AudioInput) -> str:
    return repr(item.name) if item.name else "input"
