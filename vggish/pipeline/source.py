"""The one source of examples, for every surface: any input -> mono -> 16 kHz -> log-mel examples,
in chunks. :class:`ExampleSource` checks an input's limits from its header, then decodes it block by
block (bounded memory, cancellable) through an :class:`ExampleStream`, which turns mono samples at
any rate into the examples they complete; log-mel in NumPy (the reference) or PyTorch on a device,
equal to processing the whole signal at once."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vggish import params
from vggish.audio import decode as audio
from vggish.audio.resample import StreamingResampler
from vggish.errors import CancelledError, InvalidAudioError, LimitExceededError, UndecodableAudioError, plural
from vggish.features.logmel import FrameStream, example_timestamps, num_examples
from vggish.features.logmel_torch import TorchFrameStream
from vggish.network.cpus import single_threaded_blas
from vggish.pipeline.options import EmbedOptions

CHUNK_SAMPLES = 1 << 18  # samples decoded and framed per step (~6 s at 44.1 kHz): bounds memory
_EMPTY = np.empty((0, params.NUM_FRAMES, params.NUM_BANDS), dtype=np.float32)


@dataclass(frozen=True)
class Waveform:
    """Samples already in memory, and their rate: (samples,) or (samples, channels), a float array,
    int16 (divided by 32768), or a float tensor on any device."""

    samples: np.ndarray | torch.Tensor
    sample_rate: int


Input = audio.AudioSource | Waveform
"""What :class:`ExampleSource` reads: a path, a file's bytes, a binary file object, or a Waveform."""


@dataclass(frozen=True)
class Limits:
    """What one input may hold (None: no limit), and the limits' names reported on refusal."""

    seconds: float | None = None
    examples: int | None = None
    seconds_name: str = "max_input_seconds"
    examples_name: str = "max_input_examples"

    def check_length(self, frames: int, sample_rate: int, options: EmbedOptions, label: str) -> None:
        """Raises LimitExceededError when ``frames`` samples per channel exceed a limit."""
        seconds = frames / sample_rate
        if self.seconds is not None and seconds > self.seconds:
            raise LimitExceededError(
                self.seconds_name, f"{label} lasts {seconds:.1f} s; at most {self.seconds:g} s"
            )
        if self.examples is not None:
            count = num_examples(
                int(frames * params.SAMPLE_RATE / sample_rate), options.hop_seconds, options.pad
            )
            if count > self.examples:
                raise LimitExceededError(
                    self.examples_name,
                    f"{label} makes {plural(count, 'example')} at hop {options.hop_seconds:g} s; at most "
                    f"{self.examples} (use a larger hop or a shorter input)",
                )


@dataclass(frozen=True)
class InputInfo:
    """What an input holds, known before decoding (``frames``: None where the container does not say)."""

    sample_rate: int
    channels: int
    frames: int | None

    @property
    def seconds(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate


@dataclass(frozen=True)
class InputExamples:
    """All examples of one input: (N, 96, 64) float32 ``examples`` (NumPy or a tensor), (N, 2)
    ``timestamps`` in seconds, and what the input held."""

    examples: Any
    timestamps: np.ndarray
    sample_rate: int
    channels: int
    num_samples: int
    name: str | None = None

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate


def concat_examples(blocks: Sequence[Any]) -> Any:
    """Concatenates example blocks, NumPy arrays or tensors alike."""
    if not blocks:
        return _EMPTY
    return torch.cat(list(blocks)) if isinstance(blocks[0], torch.Tensor) else np.concatenate(blocks)


class ExampleStream:
    """Mono audio at any rate, pushed in chunks -> log-mel examples, in bounded memory; ``device``:
    log-mel in PyTorch there (None: NumPy); ``label``: how messages name the input."""

    def __init__(
        self,
        sample_rate: int,
        options: EmbedOptions,
        *,
        device: torch.device | None = None,
        limits: Limits | None = None,
        label: str = "the input",
    ) -> None:
        self.sample_rate = int(sample_rate)
        self.options = options
        self.limits = limits or Limits()
        self.label = label
        self.num_samples = 0  # pushed, per channel, at the input's rate
        self.num_examples = 0  # returned so far
        self._resampler = (
            None
            if self.sample_rate == params.SAMPLE_RATE
            else StreamingResampler(self.sample_rate, params.SAMPLE_RATE, options.resampler)
        )
        hop, pad = options.hop_seconds, options.pad
        self._frames = FrameStream(hop, pad) if device is None else TorchFrameStream(device, hop, pad)

    def push(self, mono: np.ndarray | torch.Tensor) -> Any:
        """Adds (k,) mono samples; returns the (m, 96, 64) examples they complete (possibly none)."""
        self.num_samples += int(mono.shape[0])
        self.limits.check_length(self.num_samples, self.sample_rate, self.options, self.label)
        with single_threaded_blas():
            if self._resampler is None:
                return self._count(self._frames.push(mono))
            x = mono.double().cpu().numpy() if isinstance(mono, torch.Tensor) else mono
            return self._count(self._frames.push(self._resampler.process(x)))

    def finish(self) -> Any:
        """Ends the input: the last examples."""
        with single_threaded_blas():
            if self._resampler is None:
                return self._count(self._frames.finish())
            tail = self._frames.push(self._resampler.flush())
            return self._count(concat_examples([tail, self._frames.finish()]))

    def _count(self, examples: Any) -> Any:
        self.num_examples += int(examples.shape[0])
        return examples


class ExampleSource:
    """One input -> its log-mel examples, chunk by chunk, with its limits checked first.

    Opening reads only the header (or validates the array) and refuses what it already shows over
    a limit; iterating decodes block by block, yields non-empty chunks and enforces the rest.

    Args:
        cancel: set by another thread to stop at the next block (:class:`~vggish.errors.CancelledError`).
        name: how the input is called in results and messages (e.g. an upload's file name).

    Raises:
        FileNotFoundError: a path that does not exist.
        UndecodableAudioError: no decoder reads the input.
        InvalidAudioError: an array that is not audio (NaN, bad shape or rate).
        LimitExceededError: the header says the input is over a limit.
    """

    def __init__(
        self,
        source: Input,
        options: EmbedOptions,
        *,
        device: torch.device | None = None,
        limits: Limits | None = None,
        cancel: threading.Event | None = None,
        name: str | None = None,
    ) -> None:
        self.options = options
        self.name = name
        self.label = repr(name) if name else "the input"
        self._device = device
        self.limits = limits or Limits()  # may be narrowed before iterating
        self._cancel = cancel
        self._stream: ExampleStream | None = None
        self._blocks: Iterator[np.ndarray] | None = None
        with self._named_errors():
            if isinstance(source, Waveform):
                self._array, self.info = _open_waveform(source, device)
            else:
                stream_info, self._blocks = audio.stream(source, CHUNK_SAMPLES)
                self._array = None
                self.info = InputInfo(stream_info.sample_rate, stream_info.channels, stream_info.frames)
        if self.info.frames is not None:
            self.limits.check_length(self.info.frames, self.info.sample_rate, options, self.label)

    def __iter__(self) -> Iterator[Any]:
        """Decodes the input; yields its examples in chunks.

        Raises:
            InvalidAudioError: the file turns out truncated or corrupt while decoding.
            LimitExceededError: it decodes to more than its limits allow.
            CancelledError: ``cancel`` was set.
        """
        if self._stream is not None:
            raise RuntimeError("an ExampleSource is read once")
        self._stream = stream = ExampleStream(
            self.info.sample_rate, self.options, device=self._device, limits=self.limits, label=self.label
        )
        for mono in self._mono_chunks():
            if self._cancel is not None and self._cancel.is_set():
                raise CancelledError(f"{self.label}: cancelled")
            chunk = stream.push(mono)
            if chunk.shape[0]:
                yield chunk
        last = stream.finish()
        if len(last):
            yield last

    def collect(self) -> InputExamples:
        return self.summary(concat_examples(list(self)))

    def summary(self, examples: Any = None) -> InputExamples:
        """What the input told once read through, with ``examples`` when given."""
        stream = self._stream
        count, samples = (0, 0) if stream is None else (stream.num_examples, stream.num_samples)
        return InputExamples(
            examples=examples,
            timestamps=example_timestamps(count, self.options.hop_seconds),
            sample_rate=self.info.sample_rate,
            channels=self.info.channels,
            num_samples=samples,
            name=self.name,
        )

    def _mono_chunks(self) -> Iterator[np.ndarray | torch.Tensor]:
        if self._array is not None:  # a checked array: each run made mono float64 in turn
            array = self._array
            for start in range(0, int(array.shape[0]), CHUNK_SAMPLES):
                run = array[start : start + CHUNK_SAMPLES]
                yield audio.waveform_to_mono(run) if isinstance(run, np.ndarray) else run
            return
        assert self._blocks is not None
        while True:
            with self._named_errors():
                block = next(self._blocks, None)
            if block is None:
                return
            yield audio.to_mono(block)

    @contextlib.contextmanager
    def _named_errors(self) -> Iterator[None]:
        """Prefixes the decoder's and validator's messages with the input's name."""
        try:
            yield
        except (UndecodableAudioError, InvalidAudioError) as e:
            if self.name is None:
                raise
            raise type(e)(f"{self.label}: {e}") from e


def _open_waveform(wave: Waveform, device: torch.device | None) -> tuple[Any, InputInfo]:
    """A Waveform checked: a NumPy array as it is (made mono chunk by chunk later), or a tensor
    mixed to mono float64, left on its device when the torch front end there can take it."""
    audio.check_sample_rate(wave.sample_rate)
    rate = int(wave.sample_rate)
    samples = wave.samples
    if isinstance(samples, torch.Tensor):
        mono = _tensor_mono(samples)
        array = mono.to(device) if device is not None and rate == params.SAMPLE_RATE else mono.cpu().numpy()
    else:
        samples = array = audio.check_waveform(samples, rate)
    channels = 1 if samples.ndim == 1 else int(samples.shape[1])
    return array, InputInfo(rate, channels, int(samples.shape[0]))


def _tensor_mono(samples: torch.Tensor) -> torch.Tensor:
    """(n,) or (n, channels) float tensor -> (n,) float64 mono, checked like arrays."""
    if not samples.is_floating_point():
        raise InvalidAudioError(f"waveform tensors must be float; got {samples.dtype}")
    if samples.dim() not in (1, 2):
        raise InvalidAudioError(
            f"waveform must be (samples,) or (samples, channels); got {tuple(samples.shape)}"
        )
    if samples.dim() == 2:
        audio.check_array_channels(tuple(samples.shape))
    x = samples.detach().double()
    if not bool(torch.isfinite(x).all()):
        audio.check_finite(x.cpu().numpy())
    return x.mean(dim=1) if x.dim() == 2 else x


def waveform_to_examples(
    waveform: np.ndarray,
    sample_rate: int,
    *,
    hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
    pad: bool = False,
    resampler: str = "reference",
) -> np.ndarray:
    """(N, 96, 64) float32 log-mel examples of a (samples,) or (samples, channels) float or int16
    waveform, as Google's ``vggish_input.waveform_to_examples``."""
    options = EmbedOptions(hop_seconds=hop_seconds, pad=pad, resampler=resampler)  # type: ignore[arg-type]
    examples: np.ndarray = ExampleSource(Waveform(waveform, sample_rate), options).collect().examples
    return examples


def wavfile_to_examples(
    source: audio.AudioSource,
    *,
    hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
    pad: bool = False,
    resampler: str = "reference",
) -> np.ndarray:
    """(N, 96, 64) float32 log-mel examples of an audio file, decoded as the reference does."""
    options = EmbedOptions(hop_seconds=hop_seconds, pad=pad, resampler=resampler)  # type: ignore[arg-type]
    examples: np.ndarray = ExampleSource(source, options).collect().examples
    return examples
