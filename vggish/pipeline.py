"""The embedding pipeline: audio -> mono -> 16 kHz -> log-mel examples -> model -> results.

Files are decoded, resampled and framed in chunks, and examples go through the model in batches,
so memory stays bounded whatever the length of the input; the results are identical to
processing the whole signal at once.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from vggish import audio, params
from vggish.features import FrameStream, example_timestamps, hop_to_frames
from vggish.memory import release_free_memory
from vggish.resample import ResamplerName, StreamingResampler

if TYPE_CHECKING:
    from vggish.model import VGGish

# Samples fed to the front end per step: about 6 s at 44.1 kHz; bounds memory, not results.
CHUNK_SAMPLES = 1 << 18
_EMPTY_EXAMPLES = np.empty((0, params.NUM_FRAMES, params.NUM_BANDS), dtype=np.float32)


@dataclass(frozen=True)
class EmbedOptions:
    """How to turn audio into embeddings.

    Attributes:
        hop_seconds: distance between example starts; a positive multiple of 0.01 s.
        pad: zero-pad a clip shorter than 0.975 s to one example (the reference gives none).
        postprocess: AudioSet's PCA + uint8; None means "when the weights carry PCA parameters".
        resampler: ``reference`` (resampy kaiser_best, exact) or ``fast`` (soxr).
        batch_size: examples per model call.
    """

    hop_seconds: float = params.EXAMPLE_HOP_SECONDS
    pad: bool = False
    postprocess: bool | None = None
    resampler: ResamplerName = "reference"
    batch_size: int = 32

    def __post_init__(self) -> None:
        hop_to_frames(self.hop_seconds)
        if self.resampler not in get_args(ResamplerName):
            raise ValueError(f"resampler must be one of {get_args(ResamplerName)}; got {self.resampler!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {self.batch_size!r}")


@dataclass(frozen=True)
class EmbeddingResult:
    """Embeddings of one input.

    Attributes:
        embeddings: (N, 128) float32 raw (pre-activation) embeddings.
        timestamps: (N, 2) float64 start and end of each example, in seconds.
        postprocessed: (N, 128) uint8 AudioSet features, or None when not computed.
        sample_rate: the input's sample rate in Hz.
        channels: the input's channel count.
        num_samples: input samples per channel.
    """

    embeddings: np.ndarray
    timestamps: np.ndarray
    postprocessed: np.ndarray | None
    sample_rate: int
    channels: int
    num_samples: int

    @property
    def duration(self) -> float:
        """Input duration in seconds."""
        return self.num_samples / self.sample_rate


class ExampleStream:
    """Mono audio at any rate, in chunks -> log-mel examples, in bounded memory."""

    def __init__(self, sample_rate: int, options: EmbedOptions) -> None:
        self._resampler = (
            None
            if sample_rate == params.SAMPLE_RATE
            else StreamingResampler(sample_rate, params.SAMPLE_RATE, options.resampler)
        )
        self._frames = FrameStream(options.hop_seconds, options.pad)

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """(k,) mono samples at the input rate -> (m, 96, 64) float32 examples completed."""
        x = chunk if self._resampler is None else self._resampler.process(chunk)
        return self._frames.push(x)

    def finish(self) -> np.ndarray:
        """Flushes the resampler and returns the last examples."""
        tail = _EMPTY_EXAMPLES
        if self._resampler is not None:
            tail = self._frames.push(self._resampler.flush())
        return np.concatenate([tail, self._frames.finish()])


def iter_examples(
    mono_chunks: Iterable[np.ndarray], sample_rate: int, options: EmbedOptions
) -> Iterator[np.ndarray]:
    """Yields (m, 96, 64) float32 example blocks from mono chunks at ``sample_rate``."""
    stream = ExampleStream(sample_rate, options)
    for chunk in mono_chunks:
        examples = stream.push(chunk)
        if examples.shape[0]:
            yield examples
    yield stream.finish()


def _array_chunks(mono: np.ndarray) -> Iterator[np.ndarray]:
    for start in range(0, mono.shape[0], CHUNK_SAMPLES):
        yield mono[start : start + CHUNK_SAMPLES]


def waveform_to_examples(
    waveform: np.ndarray,
    sample_rate: int,
    *,
    hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
    pad: bool = False,
    resampler: ResamplerName = "reference",
) -> np.ndarray:
    """Log-mel examples of a waveform, as Google's ``vggish_input.waveform_to_examples``.

    Args:
        waveform: (samples,) or (samples, channels) float, or int16 (scaled by 1/32768).
        sample_rate: Hz; other rates than 16000 are resampled.
        hop_seconds: distance between examples (multiple of 0.01 s).
        pad: zero-pad a clip shorter than 0.975 s to one example.
        resampler: ``reference`` (exact) or ``fast``.

    Returns:
        (N, 96, 64) float32.
    """
    options = EmbedOptions(hop_seconds=hop_seconds, pad=pad, resampler=resampler)
    mono = audio.validate_waveform(waveform, sample_rate)
    blocks = list(iter_examples(_array_chunks(mono), int(sample_rate), options))
    return np.concatenate(blocks)


def _mono_blocks(blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for block in blocks:
        yield audio.to_mono(block)


def wavfile_to_examples(
    source: audio.AudioSource,
    *,
    hop_seconds: float = params.EXAMPLE_HOP_SECONDS,
    pad: bool = False,
    resampler: ResamplerName = "reference",
) -> np.ndarray:
    """Log-mel examples of an audio file (any format :mod:`vggish.audio` decodes).

    Returns:
        (N, 96, 64) float32, decoded as the reference does (16-bit samples / 32768).
    """
    options = EmbedOptions(hop_seconds=hop_seconds, pad=pad, resampler=resampler)
    info, blocks = audio.stream(source)
    return np.concatenate(list(iter_examples(_mono_blocks(blocks), info.sample_rate, options)))


def wants_postprocess(model: VGGish, options: EmbedOptions) -> bool:
    if options.postprocess is None:
        return model.has_pca
    if options.postprocess and not model.has_pca:
        raise ValueError(
            "postprocess=True needs weights with PCA parameters; these have none "
            "(convert with --pca vggish_pca_params.npz, or pass postprocess=False)"
        )
    return options.postprocess


def run_model(model: VGGish, example_blocks: Iterable[np.ndarray], batch_size: int) -> np.ndarray:
    """Embeds example blocks in batches of ``batch_size``; returns (N, 128) float32."""
    outputs: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    pending_count = 0
    for block in example_blocks:
        pending.append(block)
        pending_count += block.shape[0]
        while pending_count >= batch_size:
            batch = np.concatenate(pending)
            outputs.append(_forward(model, batch[:batch_size]))
            pending, pending_count = [batch[batch_size:]], batch.shape[0] - batch_size
    if pending_count:
        outputs.append(_forward(model, np.concatenate(pending)))
    if not outputs:
        return np.empty((0, params.EMBEDDING_SIZE), dtype=np.float32)
    return np.concatenate(outputs)


def _forward(model: VGGish, examples: np.ndarray) -> np.ndarray:
    out = model.infer(examples)
    release_free_memory()  # else glibc's arenas keep the activations' pages (see vggish.memory)
    return out


def _result(
    model: VGGish, embeddings: np.ndarray, options: EmbedOptions, info: tuple[int, int, int]
) -> EmbeddingResult:
    post = model.postprocess(embeddings).cpu().numpy() if wants_postprocess(model, options) else None
    sample_rate, channels, num_samples = info
    timestamps = example_timestamps(embeddings.shape[0], options.hop_seconds)
    return EmbeddingResult(embeddings, timestamps, post, sample_rate, channels, num_samples)


def embed_waveform(
    model: VGGish, waveform: np.ndarray, sample_rate: int, options: EmbedOptions | None = None
) -> EmbeddingResult:
    """Embeds a waveform ((samples,) or (samples, channels); float, or int16 / 32768)."""
    options = options or EmbedOptions()
    wants_postprocess(model, options)  # fail before the work, not after
    mono = audio.validate_waveform(waveform, sample_rate)
    channels = 1 if np.ndim(waveform) == 1 else int(np.shape(waveform)[1])
    blocks = iter_examples(_array_chunks(mono), int(sample_rate), options)
    embeddings = run_model(model, blocks, options.batch_size)
    return _result(model, embeddings, options, (int(sample_rate), channels, mono.shape[0]))


class CountingBlocks:
    """Passes decoded blocks through, converted to mono, counting samples per channel."""

    def __init__(self, blocks: Iterable[np.ndarray]) -> None:
        self._blocks = blocks
        self.num_samples = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        for block in self._blocks:
            self.num_samples += block.shape[0]
            yield audio.to_mono(block)


def embed_source(
    model: VGGish, source: audio.AudioSource, options: EmbedOptions | None = None
) -> EmbeddingResult:
    """Embeds an audio file (path, bytes or binary file object) in bounded memory."""
    options = options or EmbedOptions()
    wants_postprocess(model, options)
    info, blocks = audio.stream(source)
    counted = CountingBlocks(blocks)
    example_blocks = iter_examples(counted, info.sample_rate, options)
    embeddings = run_model(model, example_blocks, options.batch_size)
    return _result(model, embeddings, options, (info.sample_rate, info.channels, counted.num_samples))


def write_npz(output: Path, result: EmbeddingResult) -> None:
    """Writes a result as ``vggish embed`` does, atomically (a temporary file, then a rename).

    Keys: ``embedding`` (N, 128) float32, ``timestamps`` (N, 2) float64 and, when computed,
    ``postprocessed`` (N, 128) uint8. ``output``'s folder must exist.
    """
    arrays: dict[str, Any] = {"embedding": result.embeddings, "timestamps": result.timestamps}
    if result.postprocessed is not None:
        arrays["postprocessed"] = result.postprocessed
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
