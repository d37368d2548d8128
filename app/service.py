"""The embedding service: inputs -> (decode pool) examples -> (batcher) embeddings -> response.

Decoding and log-mel run on a thread pool sized for the machine, so they overlap the single
inference thread; each input's examples join the shared batch queue as soon as they are ready.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from app import decode
from app.batching import Batcher, BatchOutput
from app.config import Settings
from app.errors import ClientDisconnectedError, InvalidParameterError, LimitExceededError, RequestTimeoutError
from app.metrics import Metrics
from app.schemas import EmbeddingData, EmbeddingsResponse, EmbedQuery, Usage, Vector
from vggish.features import example_timestamps
from vggish.memory import release_free_memory
from vggish.model import VGGish
from vggish.pipeline import EmbedOptions, iter_examples

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


@dataclass(frozen=True)
class Embedded:
    """One input's embeddings: (N, 128) float32, one row per example."""

    name: str | None
    probed: decode.Probed
    num_samples: int
    embeddings: np.ndarray


class EmbeddingService:
    """Holds the model, the decode pool and the batcher; answers embedding requests.

    Args:
        model: the loaded VGGish, in eval mode.
        settings: limits and batching parameters.
        metrics: where decode times and audio seconds are recorded.
    """

    def __init__(self, model: VGGish, settings: Settings, metrics: Metrics) -> None:
        self.model = model
        self.settings = settings
        self.metrics = metrics
        self.pool = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="vggish-decode")
        self.batcher = Batcher(
            self._forward,
            max_batch=settings.max_batch_examples,
            max_wait_s=settings.max_batch_wait_ms / 1000,
            max_queue=settings.max_queue_examples,
            retry_after_s=settings.retry_after_s,
            metrics=metrics,
        )
        sha = model.weights_info.get("sha256", "")
        self.weights_id = sha[:WEIGHTS_PREFIX] if sha != "random" else "random"

    def _forward(self, examples: np.ndarray) -> np.ndarray:
        """The model call the inference thread makes: (B, 96, 64) -> (B, 128) float32."""
        out = self.model.infer(examples)
        release_free_memory()  # keeps a long-running server's memory flat (see vggish.memory)
        return out

    def start(self) -> None:
        """Starts the inference thread."""
        self.batcher.start()

    def close(self) -> None:
        """Finishes queued work, then stops the inference thread and the decode pool."""
        self.batcher.close()
        self.pool.shutdown(wait=True, cancel_futures=True)

    async def warm_up(self) -> None:
        """One model call through the batcher, and the front end at the commonest rates (their
        resampling filters are built once), so the first request does not pay for either."""
        examples = np.zeros((min(self.settings.max_batch_examples, 4), 96, 64), dtype=np.float32)
        await self.batcher.embed(examples)
        await asyncio.get_running_loop().run_in_executor(self.pool, _warm_front_end)

    async def embed(
        self,
        inputs: list[decode.AudioInput],
        query: EmbedQuery,
        timings: Timings,
        disconnected: Callable[[], Awaitable[None]],
    ) -> EmbeddingsResponse:
        """Embeds every input, giving up on timeout or when the client goes away.

        Raises:
            RequestTimeoutError: not done within ``request_timeout_s`` (504).
            ClientDisconnectedError: the client went away; its queued examples are dropped.
            ProblemError: any input error (see :mod:`app.errors`).
        """
        results = await self.embed_arrays(inputs, query, timings, disconnected)
        return self._response(results, query, self._options(query))

    async def embed_arrays(
        self,
        inputs: list[decode.AudioInput],
        query: EmbedQuery,
        timings: Timings,
        disconnected: Callable[[], Awaitable[None]],
    ) -> list[Embedded]:
        """Like :meth:`embed`, but returns each input's (N, 128) float32 embeddings as arrays
        (for the classifier heads); counts the audio seconds and examples in the metrics."""
        options = self._options(query)
        cancelled = threading.Event()
        work = asyncio.ensure_future(self._embed_all(inputs, options, timings, cancelled))
        gone = asyncio.ensure_future(disconnected())
        try:
            done, _ = await asyncio.wait(
                {work, gone}, timeout=self.settings.request_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            gone.cancel()
        if work not in done:
            cancelled.set()
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            if gone in done:
                raise ClientDisconnectedError("the client closed the connection")
            raise RequestTimeoutError(
                f"not done within request_timeout_s={self.settings.request_timeout_s:g}"
            )
        results: list[Embedded] = work.result()
        self.metrics.audio_seconds.inc(sum(r.num_samples / r.probed.sample_rate for r in results))
        self.metrics.examples.inc(sum(r.embeddings.shape[0] for r in results))
        return results

    def _options(self, query: EmbedQuery) -> EmbedOptions:
        if query.postprocess and not self.model.has_pca:
            raise InvalidParameterError("postprocess=true needs weights with PCA parameters; these have none")
        try:
            return EmbedOptions(hop_seconds=query.hop, pad=query.pad, resampler=query.resampler)
        except ValueError as e:
            raise InvalidParameterError(str(e)) from e

    async def _embed_all(
        self,
        inputs: list[decode.AudioInput],
        options: EmbedOptions,
        timings: Timings,
        cancelled: threading.Event,
    ) -> list[Embedded]:
        loop = asyncio.get_running_loop()
        probes = await asyncio.gather(*(loop.run_in_executor(self.pool, decode.probe, i) for i in inputs))
        budgets = self._budgets(inputs, probes)
        tasks = [
            asyncio.ensure_future(self._embed_one(item, probed, options, budget, timings, cancelled))
            for item, probed, budget in zip(inputs, probes, budgets, strict=True)
        ]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # the first input's error answers the request; stop the others
            cancelled.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _budgets(self, inputs: list[decode.AudioInput], probes: list[decode.Probed]) -> list[float]:
        """Checks durations known from headers; returns the seconds each input may decode to."""
        s = self.settings
        for item, probed in zip(inputs, probes, strict=True):
            if probed.seconds > s.max_input_seconds:
                label = repr(item.name) if item.name else "an input"
                raise LimitExceededError(
                    "max_input_seconds",
                    f"{label} lasts {probed.seconds:.1f} s; at most {s.max_input_seconds:g} s",
                )
        known = sum(p.seconds for p in probes)
        if known > s.max_request_seconds:
            raise LimitExceededError(
                "max_request_seconds", f"the inputs last {known:.1f} s; at most {s.max_request_seconds:g} s"
            )
        spare = s.max_request_seconds - known
        return [
            s.max_input_seconds if p.frames is not None else min(s.max_input_seconds, spare) for p in probes
        ]

    async def _embed_one(
        self,
        item: decode.AudioInput,
        probed: decode.Probed,
        options: EmbedOptions,
        budget: float,
        timings: Timings,
        cancelled: threading.Event,
    ) -> Embedded:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        with self.batcher.expecting():  # the batcher waits for these examples only while this runs
            decoded = await loop.run_in_executor(
                self.pool, decode.decode, item, probed, options, budget, cancelled
            )
        elapsed = time.perf_counter() - started
        self.metrics.decode_time.observe(elapsed)
        timings.add(decode_s=elapsed)
        if decoded.examples.shape[0] == 0:
            embeddings = np.empty((0, 128), dtype=np.float32)
        else:
            out: BatchOutput = await self.batcher.embed(decoded.examples)
            timings.add(queue_s=out.queue_seconds, inference_s=out.inference_seconds)
            embeddings = out.embeddings
        return Embedded(item.name, probed, decoded.num_samples, embeddings)

    def _response(
        self, results: list[Embedded], query: EmbedQuery, options: EmbedOptions
    ) -> EmbeddingsResponse:
        data = [self._data(index, r, query, options) for index, r in enumerate(results)]
        seconds = sum(d.duration for d in data)
        examples = sum(r.embeddings.shape[0] for r in results)
        return EmbeddingsResponse(
            weights=self.weights_id, data=data, usage=Usage(audio_seconds=seconds, examples=examples)
        )

    def _data(self, index: int, r: Embedded, query: EmbedQuery, options: EmbedOptions) -> EmbeddingData:
        count = r.embeddings.shape[0]
        post = None
        if query.postprocess:
            post = _vectors(self.model.postprocess(r.embeddings).numpy(), query.encoding)
        pooled = None
        if query.pooling == "mean" and count:
            pooled = _vectors(
                r.embeddings.mean(axis=0, dtype=np.float64)[None].astype(np.float32), query.encoding
            )[0]
        return EmbeddingData(
            index=index,
            name=r.name,
            sample_rate=r.probed.sample_rate,
            channels=r.probed.channels,
            duration=r.num_samples / r.probed.sample_rate,
            timestamps=example_timestamps(count, options.hop_seconds).tolist(),
            embeddings=_vectors(r.embeddings, query.encoding),
            postprocessed=post,
            embedding=pooled,
        )


def _vectors(rows: np.ndarray, encoding: str) -> list[Vector]:
    """(N, D) float32 or uint8 rows as lists of numbers, or as base64 of their little-endian bytes."""
    if encoding == "float":
        return list(rows.tolist())
    dtype = "<f4" if rows.dtype.kind == "f" else "u1"
    return [base64.b64encode(row.astype(dtype).tobytes()).decode("ascii") for row in rows]


def _warm_front_end() -> None:
    """Resampling and log-mel of one second of silence at 44.1 and 48 kHz, both resamplers."""
    for rate in (44100, 48000):
        for resampler in ("reference", "fast"):
            silence = np.zeros(rate, dtype=np.float32)
            list(iter_examples([silence], rate, EmbedOptions(resampler=resampler)))
