"""The embedding service: inputs -> (decode pool) examples -> (batcher) embeddings -> results.

Each input is an :class:`vggish.pipeline.source.ExampleSource`, opened on the decode pool (headers
only: what a header decides is refused before decoding), its examples streamed into the batcher.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from vggish import params
from vggish.errors import LimitExceededError, plural
from vggish.features.logmel import num_examples
from vggish.network.runtime import Runtime
from vggish.pipeline.driver import EmbeddingResult
from vggish.pipeline.options import EmbedOptions
from vggish.pipeline.source import ExampleSource, InputExamples, Limits, Waveform, concat_examples

from .batching import Batcher
from .config import Settings
from .errors import ClientDisconnectedError, InvalidParameterError, RequestTimeoutError
from .ingest import Upload
from .metrics import Metrics

T = TypeVar("T")
WEIGHTS_PREFIX = 12  # hex digits of the weights' SHA-256 shown in responses


@dataclass
class Timings:
    """Seconds a request spent in each stage (summed over its inputs)."""

    decode: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, decode_s: float = 0.0, queue_s: float = 0.0, inference_s: float = 0.0) -> None:
        with self.lock:
            self.decode += decode_s
            self.queue += queue_s
            self.inference += inference_s


Disconnected = Callable[[], Awaitable[None]]
"""Returns when the client has gone away."""


class EmbeddingService:
    """Holds the model, the decode pool and the batcher (started); embeds the inputs of requests."""

    def __init__(self, model: Runtime, settings: Settings, metrics: Metrics) -> None:
        self.model = model
        self.settings = settings
        self.metrics = metrics
        self.pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="vggish-decode")
        self.batcher = Batcher(
            model.infer,
            max_batch=settings.max_batch_examples,
            max_wait_s=settings.max_batch_wait_ms / 1000,
            max_queue=settings.max_queue_examples,
            retry_after_s=settings.retry_after_s,
            metrics=metrics,
            postprocess=model.postprocess,
        )
        self.batcher.start()
        sha = model.weights_info.get("sha256", "")
        self.weights_id = sha[:WEIGHTS_PREFIX] if sha != "random" else "random"

    def close(self) -> None:
        """Finishes queued work, then stops the inference thread and the decode pool."""
        self.batcher.close()
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def warm_up(self) -> None:
        """One model call through the batcher, and the front end at the commonest rates (their
        resampling filters are built once), so the first request does not pay for either."""
        silence = np.zeros((min(self.settings.max_batch_examples, 4), 96, 64), dtype=np.float32)
        loop = asyncio.get_running_loop()
        job = self.batcher.open(loop)
        await loop.run_in_executor(self.pool, self.batcher.feed, job, iter([silence]))
        await self.batcher.result(job)
        await loop.run_in_executor(self.pool, _warm_front_end)

    def options(
        self, hop: float, pad: bool, resampler: str, postprocess: bool | None = False
    ) -> EmbedOptions:
        """The library's options for a request's query parameters (``postprocess`` None: when the
        weights carry PCA parameters); InvalidParameterError for what these weights cannot do."""
        if postprocess is None:
            postprocess = self.model.has_pca
        if postprocess and not self.model.has_pca:
            raise InvalidParameterError("postprocess=true needs weights with PCA parameters; these have none")
        try:
            return EmbedOptions(hop_seconds=hop, pad=pad, resampler=resampler, postprocess=postprocess)  # type: ignore[arg-type]
        except ValueError as e:
            raise InvalidParameterError(str(e)) from e

    async def embed(
        self, inputs: list[Upload], options: EmbedOptions, timings: Timings, disconnected: Disconnected
    ) -> list[EmbeddingResult]:
        """Embeds every input within :meth:`bounded`; the first unusable input's error answers."""
        results = await self.bounded(
            lambda cancel: self._embed_all(inputs, options, timings, cancel), disconnected
        )
        self.metrics.audio_seconds.inc(sum(r.duration for r in results))
        self.metrics.examples.inc(sum(r.embeddings.shape[0] for r in results))
        return results

    async def features(
        self, inputs: list[Upload], options: EmbedOptions, timings: Timings, disconnected: Disconnected
    ) -> list[InputExamples]:
        """Every input's log-mel examples, within :meth:`embed`'s limits and ``max_feature_examples``."""

        async def collect(cancel: threading.Event) -> list[InputExamples]:
            sources = await self._open_all(inputs, options, cancel, "max_feature_examples", device=False)
            started = time.perf_counter()
            out = await self._collect_within(sources, options, self.settings.max_feature_examples)
            timings.add(decode_s=time.perf_counter() - started)
            return out

        return await self.bounded(collect, disconnected)

    async def _collect_within(
        self, sources: list[ExampleSource], options: EmbedOptions, limit: int
    ) -> list[InputExamples]:
        """Decodes every source, ``limit`` examples in all: those whose header tells their length are
        counted first (and decoded in parallel), the others then one by one within what is left."""
        known = [src for src in sources if src.info.frames is not None]
        told = sum(self._expected_examples(src, options) for src in known)
        if told > limit:
            raise LimitExceededError(
                "max_feature_examples",
                f"the inputs make {plural(told, 'example')} at hop {options.hop_seconds:g} s; at most "
                f"{limit} per request (use a larger hop, fewer or shorter inputs, or /v1/embeddings)",
            )
        loop = asyncio.get_running_loop()
        collected = await asyncio.gather(*(loop.run_in_executor(self.pool, s.collect) for s in known))
        done = dict(zip(known, collected, strict=True))
        left = limit - told
        for src in sources:
            if src not in done:
                src.limits = replace(src.limits, examples=min(left, src.limits.examples or left))
                done[src] = await loop.run_in_executor(self.pool, src.collect)
                left -= int(done[src].examples.shape[0])
        return [done[src] for src in sources]

    async def bounded(self, work: Callable[[threading.Event], Awaitable[T]], disconnected: Disconnected) -> T:
        """Runs ``work(cancel)`` until done, ``request_timeout_s`` (RequestTimeoutError) or the
        client's departure (ClientDisconnectedError); ``cancel`` is set for threads to see."""
        cancel = threading.Event()
        task = asyncio.ensure_future(work(cancel))
        gone = asyncio.ensure_future(disconnected())
        try:
            done, _ = await asyncio.wait(
                {task, gone}, timeout=self.settings.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
        if task not in done:
            cancel.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if gone in done:
                raise ClientDisconnectedError("the client closed the connection")
            raise RequestTimeoutError(
                f"not done within request_timeout_s={self.settings.request_timeout_s:g}"
            )
        return task.result()

    async def _open_all(
        self,
        inputs: list[Upload],
        options: EmbedOptions,
        cancel: threading.Event,
        examples: str = "max_queue_examples",
        *,
        device: bool = True,
    ) -> list[ExampleSource]:
        """Opens every input on the pool (headers only), refusing before decoding what
        ``max_input_seconds``, the setting ``examples`` and ``max_request_seconds`` forbid."""
        s = self.settings
        limits = Limits(seconds=s.max_input_seconds, examples=getattr(s, examples), examples_name=examples)
        frontend = options.frontend_device(self.model.device) if device else None

        def open_one(item: Upload) -> ExampleSource:
            return ExampleSource(
                item.source, options, device=frontend, limits=limits, cancel=cancel, name=item.name
            )

        loop = asyncio.get_running_loop()
        sources = list(await asyncio.gather(*(loop.run_in_executor(self.pool, open_one, i) for i in inputs)))
        known = sum(src.info.seconds or 0.0 for src in sources)
        if known > s.max_request_seconds:
            raise LimitExceededError(
                "max_request_seconds", f"the inputs last {known:.1f} s; at most {s.max_request_seconds:g} s"
            )
        spare = s.max_request_seconds - known
        for src in sources:  # inputs of unknown length may decode to what the request has left
            if src.info.frames is None:
                src.limits = replace(
                    limits, seconds=min(s.max_input_seconds, spare), seconds_name="max_request_seconds"
                )
        return sources

    async def _embed_all(
        self, inputs: list[Upload], options: EmbedOptions, timings: Timings, cancel: threading.Event
    ) -> list[EmbeddingResult]:
        sources = await self._open_all(inputs, options, cancel)
        expected = sum(self._expected_examples(src, options) for src in sources)
        with self.batcher.admitted(expected):
            tasks = [asyncio.ensure_future(self._embed_one(src, options, timings)) for src in sources]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:  # the first input's error answers the request; stop the others
                cancel.set()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    def _expected_examples(self, source: ExampleSource, options: EmbedOptions) -> int:
        """Examples an opened input will make: exact from its header, else at most its budget."""
        seconds = source.info.seconds if source.info.seconds is not None else (source.limits.seconds or 0.0)
        return num_examples(int(seconds * params.SAMPLE_RATE), options.hop_seconds, options.pad)

    async def _embed_one(
        self, source: ExampleSource, options: EmbedOptions, timings: Timings
    ) -> EmbeddingResult:
        loop = asyncio.get_running_loop()
        job = self.batcher.open(loop, postprocess=bool(options.postprocess))
        started = time.perf_counter()
        try:
            await loop.run_in_executor(self.pool, self.batcher.feed, job, self._blocks(source))
        except asyncio.CancelledError:
            self.batcher.cancel(job)
            raise
        elapsed = time.perf_counter() - started
        self.metrics.decode_time.observe(elapsed)
        timings.add(decode_s=elapsed)
        out = await self.batcher.result(job)
        started = job.started or job.finished  # (an input with no example reaches no model call)
        timings.add(queue_s=started - job.opened, inference_s=job.finished - started)
        return EmbeddingResult.of(out, source.summary())

    def _blocks(self, source: ExampleSource) -> Iterator[Any]:
        """The source's examples in blocks of about a batch."""
        pending: list[Any] = []
        count = 0
        for chunk in source:
            pending.append(chunk)
            count += int(chunk.shape[0])
            if count >= self.settings.max_batch_examples:
                yield concat_examples(pending)
                pending, count = [], 0
        if pending:
            yield concat_examples(pending)


def _warm_front_end() -> None:
    """Resampling and log-mel of one second of silence at 44.1 and 48 kHz, both resamplers."""
    for rate in (44100, 48000):
        for resampler in ("reference", "fast"):
            silence = np.zeros(rate, dtype=np.float32)
            ExampleSource(Waveform(silence, rate), EmbedOptions(resampler=resampler)).collect()  # type: ignore[arg-type]
