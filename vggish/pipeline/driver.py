"""The embedding pipeline: inputs -> examples (:mod:`vggish.pipeline.source`) -> full batches through the
model (:mod:`vggish.pipeline.packer`) -> one :class:`EmbeddingResult` per input.

Files are decoded, resampled and framed in chunks and examples go through the model in batches,
so memory stays bounded whatever the length of the input; the results are identical to
processing the whole signal at once, and to processing each input alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from vggish.features.logmel import example_timestamps
from vggish.fileio import atomic_output
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.packer import Job, Packer
from vggish.pipeline.source import ExampleSource, Input, InputExamples, Limits, Waveform


class Embedder(Protocol):
    """What the pipeline needs of a model (a :class:`vggish.network.runtime.Runtime` is one)."""

    @property
    def device(self) -> torch.device: ...

    @property
    def default_batch_size(self) -> int: ...

    @property
    def has_pca(self) -> bool: ...

    def infer(self, examples: Any) -> np.ndarray: ...

    def postprocess(self, embeddings: np.ndarray) -> torch.Tensor: ...


@dataclass(frozen=True)
class EmbeddingResult:
    """Embeddings of one input: what the library, the CLI, the service, extraction and the
    Python client return.

    Attributes:
        embeddings: (N, 128) float32 raw (pre-activation) embeddings.
        timestamps: (N, 2) float64 start and end of each example, in seconds.
        postprocessed: (N, 128) uint8 AudioSet features, or None when not computed.
        sample_rate: the input's sample rate in Hz.
        channels: the input's channel count.
        num_samples: input samples per channel.
        name: the input's name (a file name, an upload's name), when it has one.
    """

    embeddings: np.ndarray
    timestamps: np.ndarray
    postprocessed: np.ndarray | None
    sample_rate: int
    channels: int
    num_samples: int
    name: str | None = None

    @property
    def duration(self) -> float:
        """Input duration in seconds."""
        return self.num_samples / self.sample_rate


def wants_postprocess(model: Embedder, options: EmbedOptions) -> bool:
    """Whether ``options`` ask for the uint8 features with this model.

    Raises:
        ValueError: ``postprocess=True`` with weights that carry no PCA parameters.
    """
    if options.postprocess is None:
        return model.has_pca
    if options.postprocess and not model.has_pca:
        raise ValueError(
            "postprocess=True needs weights with PCA parameters; these have none "
            "(convert with --pca vggish_pca_params.npz, or pass postprocess=False)"
        )
    return options.postprocess


def batch_size(model: Embedder, options: EmbedOptions) -> int:
    """Examples per model call: ``options.batch_size``, else the model's default."""
    return options.batch_size if options.batch_size is not None else model.default_batch_size


def finish(
    model: Embedder, embeddings: np.ndarray, decoded: InputExamples, postprocess: bool
) -> EmbeddingResult:
    """An input's result from its embeddings and what decoding it told (``decoded.examples`` unused)."""
    post = model.postprocess(embeddings).cpu().numpy() if postprocess else None
    return EmbeddingResult(
        embeddings=embeddings,
        timestamps=decoded.timestamps,
        postprocessed=post,
        sample_rate=decoded.sample_rate,
        channels=decoded.channels,
        num_samples=decoded.num_samples,
        name=decoded.name,
    )


def embed_iter(
    model: Embedder,
    inputs: Iterable[Input | ExampleSource],
    options: EmbedOptions,
    *,
    limits: Limits | None = None,
) -> Iterator[tuple[int, EmbeddingResult]]:
    """Embeds inputs one after another, their examples packed together into full batches.

    Each input is decoded in chunks straight into the packer, so memory holds at most a batch of
    examples and a decoder's block, whatever the inputs' lengths.

    Yields:
        ``(index, result)`` for each input as it completes (in input order, but for inputs with
        no example, which complete as soon as they are read).

    Raises:
        Exception: the first input that cannot be read stops the run with its error.
    """
    for index, outcome in embed_each(model, inputs, options, limits=limits):
        if isinstance(outcome, Exception):
            raise outcome
        yield index, outcome


def embed_each(
    model: Embedder,
    inputs: Iterable[Input | ExampleSource],
    options: EmbedOptions,
    *,
    limits: Limits | None = None,
) -> Iterator[tuple[int, EmbeddingResult | Exception]]:
    """:func:`embed_iter` that goes on past inputs that fail: such an input yields its error
    (from opening or decoding it: unreadable, undecodable, over a limit) in place of a result,
    its examples already queued are dropped, and the other inputs are embedded as usual.

    Errors of the model itself still stop the run (they are no input's fault).

    Yields:
        ``(index, result or error)`` for each input as it completes (see :func:`embed_iter`).
    """
    postprocess = wants_postprocess(model, options)
    device = options.frontend_device(model.device)
    packer = Packer(batch_size(model, options))
    sources: dict[Job, tuple[int, ExampleSource]] = {}

    def results(jobs: list[Job]) -> Iterator[tuple[int, EmbeddingResult]]:
        for job in jobs:
            index, source = sources.pop(job)
            yield index, finish(model, job.embeddings(), summary(source), postprocess)

    for index, item in enumerate(inputs):
        job = Job()
        try:
            source = (
                item
                if isinstance(item, ExampleSource)
                else ExampleSource(item, options, device=device, limits=limits)
            )
            sources[job] = (index, source)
            chunks = iter(source)
        except Exception as e:  # the input's failure, not the run's
            yield index, e
            continue
        while True:
            try:
                chunk = next(chunks, None)
            except Exception as e:  # decoding failed part way: drop what it queued
                packer.cancel(job)
                del sources[job]
                yield index, e
                break
            if chunk is None:
                if packer.close(job):
                    yield from results([job])
                break
            packer.put(job, chunk.examples)
            yield from results(packer.run(model.infer))
    yield from results(packer.run(model.infer, flush=True))


def summary(source: ExampleSource) -> InputExamples:
    """What an input told once read through: its info and timestamps (its examples went to the
    model; ``examples`` is None)."""
    return InputExamples(
        examples=None,
        timestamps=example_timestamps(source.num_examples, source.options.hop_seconds),
        sample_rate=source.info.sample_rate,
        channels=source.info.channels,
        num_samples=source.num_samples,
        name=source.name,
    )


def embed_many(
    model: Embedder, inputs: Iterable[Input | ExampleSource], options: EmbedOptions | None = None
) -> list[EmbeddingResult]:
    """Embeds several inputs, packed together into full batches; results in input order."""
    done = dict(embed_iter(model, inputs, options or EmbedOptions()))
    return [done[i] for i in range(len(done))]


def embed_source(
    model: Embedder, source: Input | ExampleSource, options: EmbedOptions | None = None
) -> EmbeddingResult:
    """Embeds one audio file (path, bytes or binary file object) or Waveform in bounded memory."""
    return embed_many(model, [source], options)[0]


def embed_waveform(
    model: Embedder,
    waveform: np.ndarray | torch.Tensor,
    sample_rate: int,
    options: EmbedOptions | None = None,
) -> EmbeddingResult:
    """Embeds a waveform ((samples,) or (samples, channels); float, or int16 / 32768)."""
    return embed_source(model, Waveform(waveform, sample_rate), options)


def write_npz(output: Path, result: EmbeddingResult) -> None:
    """Writes a result as ``vggish embed`` does, atomically (a temporary file, then a rename).

    Keys: ``embedding`` (N, 128) float32, ``timestamps`` (N, 2) float64 and, when computed,
    ``postprocessed`` (N, 128) uint8. ``output``'s folder must exist.
    """
    arrays: dict[str, Any] = {"embedding": result.embeddings, "timestamps": result.timestamps}
    if result.postprocessed is not None:
        arrays["postprocessed"] = result.postprocessed
    with atomic_output(output) as tmp, open(tmp, "xb") as f:
        np.savez(f, **arrays)
