"""The one driver: jobs' examples -> the one packer -> the model's ``infer`` -> each job's
embeddings, postprocessed and brought to NumPy here only, in-process (:meth:`Driver.drive`) or from
the service's inference thread (:meth:`Driver.deliver`); memory stays bounded whatever an input's
length, and results equal each whole input embedded alone."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from vggish.fileio import atomic_output
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.packer import Batch, Job, Packer
from vggish.pipeline.source import ExampleSource, Input, InputExamples, Limits

InferFn = Callable[[Any], np.ndarray]
"""(B, 96, 64) float32 examples (NumPy or a tensor) -> (B, 128) float32 embeddings."""


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
class Output:
    """Embeddings the driver hands a job: (m, 128) float32, all of the job's once complete or one
    model call's rows for a ``rows`` job; (m, 128) uint8 ``postprocessed`` when asked for."""

    job: Job
    embeddings: np.ndarray
    postprocessed: np.ndarray | None
    done: bool


@dataclass(frozen=True)
class EmbeddingResult:
    """Embeddings of one input: (N, 128) float32 pre-activation ``embeddings``, (N, 2) float64
    ``timestamps`` (seconds), (N, 128) uint8 ``postprocessed`` or None, and what the input held."""

    embeddings: np.ndarray
    timestamps: np.ndarray
    postprocessed: np.ndarray | None
    sample_rate: int
    channels: int
    num_samples: int
    name: str | None = None

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate

    @classmethod
    def of(cls, output: Output, decoded: InputExamples) -> EmbeddingResult:
        """An input's result from its job's Output and what decoding it told."""
        return cls(
            embeddings=output.embeddings,
            timestamps=decoded.timestamps,
            postprocessed=output.postprocessed,
            sample_rate=decoded.sample_rate,
            channels=decoded.channels,
            num_samples=decoded.num_samples,
            name=decoded.name,
        )


def wants_postprocess(model: Embedder, options: EmbedOptions) -> bool:
    """Whether ``options`` ask for the uint8 features (ValueError if the weights have no PCA)."""
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


class Driver:
    """Jobs' examples (put into :attr:`packer`) -> model batches -> each job's :class:`Output`, not
    thread-safe by itself; ``fair``: each batch shared among the waiting jobs (else first in, first out)."""

    def __init__(
        self,
        infer: InferFn,
        batch_size: int,
        *,
        postprocess: Callable[[np.ndarray], torch.Tensor] | None = None,
        fair: bool = False,
    ) -> None:
        self.infer = infer
        self.packer = Packer(batch_size, fair=fair)
        self._postprocess = postprocess

    @classmethod
    def for_model(cls, model: Embedder, options: EmbedOptions) -> Driver:
        """A first-in-first-out driver of ``model`` at ``options``' batch size."""
        return cls(model.infer, batch_size(model, options), postprocess=model.postprocess)

    def close(self, job: Job) -> list[Output]:
        """Marks that ``job`` gets no more examples; its Output if that completes it."""
        return [self.output(job, job.embeddings(), done=True)] if self.packer.close(job) else []

    def deliver(self, batch: Batch, embeddings: np.ndarray) -> list[Output]:
        """Hands the rows of ``embeddings`` to the jobs of ``batch``: an Output per ``rows`` job,
        then one per job this completed."""
        outputs = [self.output(job, rows, done=False) for job, rows in batch.split(embeddings) if job.rows]
        done = self.packer.deliver(batch, embeddings)
        return outputs + [self.output(job, job.embeddings(), done=True) for job in done]

    def run(self, *, flush: bool = False) -> list[Output]:
        """Runs every full batch now waiting (and, with ``flush``, the rest) through the model."""
        outputs: list[Output] = []
        packer = self.packer
        while packer.pending >= packer.batch_size or (flush and packer.pending):
            batch = packer.take()
            assert batch is not None
            outputs += self.deliver(batch, self.infer(batch.examples))
        return outputs

    def drive(self, jobs: Iterable[tuple[Job, Iterable[Any]]]) -> Iterator[tuple[Job, Output | Exception]]:
        """The in-process loop: yields ``(job, output)`` as each job completes, or ``(job, error)``
        for a job whose blocks raised (its waiting examples dropped, the others go on). Errors of
        the model stop the run."""
        for job, blocks in jobs:
            chunks = iter(blocks)
            while True:
                try:
                    block = next(chunks, None)
                except Exception as e:  # the input's failure, not the run's
                    self.packer.cancel(job)
                    yield job, e
                    break
                if block is None:
                    yield from _pairs(self.close(job))
                    break
                self.packer.put(job, block)
                yield from _pairs(self.run())
        yield from _pairs(self.run(flush=True))

    def output(self, job: Job, embeddings: np.ndarray, *, done: bool) -> Output:
        """``job``'s Output of ``embeddings``, postprocessed when the job asks."""
        if not job.postprocess:
            return Output(job, embeddings, None, done)
        assert self._postprocess is not None, "postprocessing asked of a driver made without it"
        return Output(job, embeddings, self._postprocess(embeddings).cpu().numpy(), done)


def _pairs(outputs: list[Output]) -> Iterator[tuple[Job, Output]]:
    return ((out.job, out) for out in outputs)


def embed_iter(
    model: Embedder,
    inputs: Iterable[Input | ExampleSource],
    options: EmbedOptions,
    *,
    limits: Limits | None = None,
) -> Iterator[tuple[int, EmbeddingResult]]:
    """Embeds inputs, their examples packed together into full batches; yields ``(index,
    result)`` as each completes. The first input that cannot be read stops the run with its error."""
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
    """:func:`embed_iter` that goes on past inputs that fail: such an input yields its error in
    place of a result. Errors of the model itself still stop the run."""
    postprocess = wants_postprocess(model, options)
    device = options.frontend_device(model.device)
    sources: dict[int, ExampleSource] = {}

    def examples(index: int, item: Input | ExampleSource) -> Iterator[Any]:
        if not isinstance(item, ExampleSource):
            item = ExampleSource(item, options, device=device, limits=limits)
        sources[index] = item
        yield from item

    jobs = ((Job(i, postprocess=postprocess), examples(i, item)) for i, item in enumerate(inputs))
    for job, out in Driver.for_model(model, options).drive(jobs):
        source = sources.pop(job.tag, None)
        if isinstance(out, Exception):
            yield job.tag, out
        else:
            assert source is not None
            yield job.tag, EmbeddingResult.of(out, source.summary())


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


def write_npz(output: Path, result: EmbeddingResult) -> None:
    """Writes a result as ``vggish embed`` does, atomically: ``embedding``, ``timestamps`` and,
    when computed, ``postprocessed``."""
    arrays: dict[str, Any] = {"embedding": result.embeddings, "timestamps": result.timestamps}
    if result.postprocessed is not None:
        arrays["postprocessed"] = result.postprocessed
    with atomic_output(output) as tmp, open(tmp, "xb") as f:
        np.savez(f, **arrays)
