"""The one driver: (job, examples) in, (job, embeddings [+ AudioSet features]) out, given the
model's ``infer``.

:class:`Driver` runs jobs' examples through the one packer (:mod:`vggish.pipeline.packer`) and
the model, and is the one place where embeddings are postprocessed and brought to NumPy. It is
called in two ways: the in-process loop (:meth:`Driver.drive`: the library's ``embed_*``, the CLI,
``vggish extract`` here and in each Ray actor, the HEAR API, heads from files), and the service's
inference thread (its packer's ``take`` under the service's lock, the model call outside it,
:meth:`Driver.deliver` under the lock again).

Inputs are decoded, resampled and framed in chunks (:mod:`vggish.pipeline.source`) and examples
go through the model in batches, so memory stays bounded whatever the length of an input; the
results are identical to processing the whole signal at once, and to processing each input alone.
"""

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
from vggish.pipeline.source import ExampleSource, Input, InputExamples, Limits, Waveform

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
    """Embeddings the driver hands a job.

    Attributes:
        job: whose they are.
        embeddings: (m, 128) float32: all of the job's once it is complete, or one model call's
            rows for a ``rows`` job (whose last Output, ``done``, holds none).
        postprocessed: (m, 128) uint8 AudioSet features when the job asked for them, else None.
        done: the job is complete.
    """

    job: Job
    embeddings: np.ndarray
    postprocessed: np.ndarray | None
    done: bool


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

    @classmethod
    def of(cls, output: Output, decoded: InputExamples) -> EmbeddingResult:
        """An input's result from its job's Output and what decoding it told (its examples unused)."""
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


class Driver:
    """Jobs' examples (put into :attr:`packer`) -> model batches -> each job's :class:`Output`.

    Not thread-safe by itself (see :class:`~vggish.pipeline.packer.Packer`).

    Args:
        infer: the model call.
        batch_size: most examples per model call.
        postprocess: (N, 128) float32 -> (N, 128) uint8 tensor, for the jobs that ask.
        fair: share each batch among the jobs waiting (jobs of many clients) instead of first in,
            first out.
    """

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
        """Hands the rows of ``embeddings`` ((B, 128), batch order) to the jobs of ``batch``.

        Returns:
            An Output per ``rows`` job of the batch, then one per job this completed.
        """
        outputs = []
        offset = 0
        for job, rows in batch.parts:
            if job.rows:
                outputs.append(self.output(job, embeddings[offset : offset + rows], done=False))
            offset += rows
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
        """The in-process loop: each job's example blocks in turn, into full batches as they fill.

        Yields:
            ``(job, output)`` for each job as it completes, or ``(job, error)`` for a job whose
            blocks raised (the input's fault: unreadable, undecodable, over a limit; its waiting
            examples are dropped and the other jobs go on). Errors of the model stop the run.
        """
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
        """``job``'s Output of ``embeddings``: the one place where they are postprocessed (when
        the job asks) and brought to NumPy."""
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
