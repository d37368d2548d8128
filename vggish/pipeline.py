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
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from vggish import audio, params
from vggish.features import FrameStream, example_timestamps, hop_to_frames
from vggish.memory import release_free_memory
from vggish.resample import ResamplerName, StreamingResampler
from vggish.runtime import single_threaded_blas

if TYPE_CHECKING:
    import torch

    from vggish.model import VGGish

FrontendName = Literal["auto", "numpy", "torch"]
"""Where log-mel examples are computed: ``numpy`` (float64 on the CPU, the reference path),
``torch`` (float64 PyTorch on the model's device, same numbers), or ``auto`` (``torch`` when the
model is on a GPU, so examples are made where the model runs; ``numpy`` on the CPU)."""

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

    def batch_size_for(self, model: VGGish) -> int:
        """Examples per model call for ``model``: ``batch_size``, else the model's default."""
        return self.batch_size if self.batch_size is not None else model.default_batch_size

    def frontend_device(self, model: VGGish) -> torch.device | None:
        """The device the torch front end runs on for ``model``, or None for the NumPy one."""
        if self.frontend == "numpy" or (self.frontend == "auto" and model.device.type == "cpu"):
            return None
        return model.device


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
    """Mono audio at any rate, in chunks -> log-mel examples, in bounded memory.

    With ``device``, log-mel runs in PyTorch there and examples are float32 tensors on it
    (:class:`vggish.frontend_torch.TorchFrameStream`); else they are NumPy float32.
    """

    def __init__(self, sample_rate: int, options: EmbedOptions, device: torch.device | None = None) -> None:
        self._resampler = (
            None
            if sample_rate == params.SAMPLE_RATE
            else StreamingResampler(sample_rate, params.SAMPLE_RATE, options.resampler)
        )
        if device is None:
            self._frames = FrameStream(options.hop_seconds, options.pad)
        else:
            from vggish.frontend_torch import TorchFrameStream

            self._frames = TorchFrameStream(device, options.hop_seconds, options.pad)

    def push(self, chunk: np.ndarray) -> Any:
        """(k,) mono samples at the input rate -> (m, 96, 64) float32 examples completed."""
        with single_threaded_blas():
            x = chunk if self._resampler is None else self._resampler.process(chunk)
            return self._frames.push(x)

    def finish(self) -> Any:
        """Flushes the resampler and returns the last examples."""
        with single_threaded_blas():
            if self._resampler is None:
                return self._frames.finish()
            return concat_examples([self._frames.push(self._resampler.flush()), self._frames.finish()])


def concat_examples(blocks: list[Any]) -> Any:
    """Concatenates example blocks, NumPy arrays or tensors alike."""
    if blocks and not isinstance(blocks[0], np.ndarray):
        import torch

        return torch.cat(blocks)
    return np.concatenate(blocks) if blocks else _EMPTY_EXAMPLES


def iter_examples(
    mono_chunks: Iterable[np.ndarray],
    sample_rate: int,
    options: EmbedOptions,
    device: torch.device | None = None,
) -> Iterator[Any]:
    """Yields (m, 96, 64) float32 example blocks from mono chunks at ``sample_rate``.

    NumPy arrays, or tensors on ``device`` when it is given (see :class:`ExampleStream`).
    """
    stream = ExampleStream(sample_rate, options, device)
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


def run_model(model: VGGish, example_blocks: Iterable[Any], batch_size: int) -> np.ndarray:
    """Embeds example blocks (NumPy or tensors) in batches of ``batch_size``; returns (N, 128) float32."""
    outputs: list[np.ndarray] = []
    pending: list[Any] = []
    pending_count = 0
    for block in example_blocks:
        pending.append(block)
        pending_count += block.shape[0]
        while pending_count >= batch_size:
            batch = concat_examples(pending)
            outputs.append(_forward(model, batch[:batch_size]))
            pending, pending_count = [batch[batch_size:]], batch.shape[0] - batch_size
    if pending_count:
        outputs.append(_forward(model, concat_examples(pending)))
    if not outputs:
        return np.empty((0, params.EMBEDDING_SIZE), dtype=np.float32)
    return np.concatenate(outputs)


def _forward(model: VGGish, examples: Any) -> np.ndarray:
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
    blocks = iter_examples(_array_chunks(mono), int(sample_rate), options, options.frontend_device(model))
    embeddings = run_model(model, blocks, options.batch_size_for(model))
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
    example_blocks = iter_examples(counted, info.sample_rate, options, options.frontend_device(model))
    embeddings = run_model(model, example_blocks, options.batch_size_for(model))
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
