"""``AsyncClient``: the same API as :class:`vggish.client.Client`, awaited (httpx.AsyncClient).

Only the transport differs: the operations (requests, parsing, retries) are the ones in ``core``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TypeVar, overload

import httpx
import numpy as np

from vggish import params
from vggish.audio.resample import ResamplerName
from vggish.client.core import (
    DEFAULT_MAX_RETRY_WAIT_S,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    AudioOptions,
    BaseClient,
    Op,
    Outcome,
    Pooling,
    Sleep,
    Step,
)
from vggish.client.inputs import AudioInput, FileSource, HeadKind
from vggish.client.results import Classification, ModelInfo, RemoteEmbeddingResult
from vggish.heads import FeatureSpec
from vggish.heads.store import HeadRecord
from vggish.search import AddResult, CollectionInfo, Item, Level, Match, Query

T = TypeVar("T")


class AsyncClient(BaseClient):
    """A VGGish service's API as coroutines; each method is :class:`Client`'s, awaited.

    >>> async with AsyncClient("http://127.0.0.1:8000") as client:
    ...     results = await client.embed(["dog.wav", "cat.flac"])

    Args:
        base_url: the service's URL.
        api_key: sent as ``Authorization: Bearer <key>``.
        timeout: seconds to wait for each answer (or an ``httpx.Timeout``); None: forever.
        retries: retries of 429 / 503 answers and of connection failures (0: none).
        max_retry_wait: the longest wait before a retry; a ``Retry-After`` above it is raised at once.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT_S,
    ) -> None:
        super().__init__(api_key=api_key, retries=retries, max_retry_wait=max_retry_wait)
        self._http = httpx.AsyncClient(base_url=base_url, headers=self._headers, timeout=timeout)

    async def _run(self, op: Op[T]) -> T:
        """Drives an operation: sends its requests, sleeps its waits, returns its result."""
        outcome: Outcome = None
        while True:
            try:
                step = op.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            outcome = await self._perform(step)

    async def _perform(self, step: Step) -> Outcome:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        try:
            return await self._http.request(
                step.method, step.path, params=step.params, content=step.content, headers=step.headers
            )
        except httpx.TransportError as e:
            return e

    async def close(self) -> None:
        """Closes the connections."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def models(self) -> list[ModelInfo]:
        """See :meth:`Client.models`."""
        return await self._run(self._models_op())

    async def ready(self) -> bool:
        """See :meth:`Client.ready`."""
        return await self._run(self._ready_op())

    @overload  # a str is one path, though also a Sequence[str]: this overload comes first
    async def embed(  # type: ignore[overload-overlap]
        self,
        inputs: AudioInput,
        *,
        hop: float = ...,
        pad: bool = ...,
        postprocess: bool | None = ...,
        resampler: ResamplerName = ...,
        pooling: Pooling | None = ...,
    ) -> RemoteEmbeddingResult: ...
    @overload
    async def embed(
        self,
        inputs: Sequence[AudioInput],
        *,
        hop: float = ...,
        pad: bool = ...,
        postprocess: bool | None = ...,
        resampler: ResamplerName = ...,
        pooling: Pooling | None = ...,
    ) -> list[RemoteEmbeddingResult]: ...
    async def embed(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        hop: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = False,
        postprocess: bool | None = None,
        resampler: ResamplerName = "reference",
        pooling: Pooling | None = None,
    ) -> RemoteEmbeddingResult | list[RemoteEmbeddingResult]:
        """See :meth:`Client.embed`."""
        return await self._run(
            self._embed_op(inputs, AudioOptions(hop, pad, resampler), postprocess, pooling)
        )

    @overload
    async def classify(  # type: ignore[overload-overlap]
        self,
        name: str,
        inputs: AudioInput,
        *,
        top_k: int | None = ...,
        hop: float = ...,
        pad: bool = ...,
        resampler: ResamplerName = ...,
        force: bool = ...,
    ) -> Classification: ...
    @overload
    async def classify(
        self,
        name: str,
        inputs: Sequence[AudioInput],
        *,
        top_k: int | None = ...,
        hop: float = ...,
        pad: bool = ...,
        resampler: ResamplerName = ...,
        force: bool = ...,
    ) -> list[Classification]: ...
    async def classify(
        self,
        name: str,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        top_k: int | None = None,
        hop: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = True,
        resampler: ResamplerName = "reference",
        force: bool = False,
    ) -> Classification | list[Classification]:
        """See :meth:`Client.classify`."""
        return await self._run(
            self._classify_op(name, inputs, AudioOptions(hop, pad, resampler), top_k, force)
        )

    async def train_head(
        self,
        name: str,
        clips: Mapping[str, Sequence[AudioInput]] | tuple[Sequence[AudioInput], Sequence[str]],
        *,
        kind: HeadKind = "linear",
        replace: bool = False,
        hop: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = True,
        resampler: ResamplerName = "reference",
    ) -> HeadRecord:
        """See :meth:`Client.train_head`."""
        return await self._run(self._train_op(name, clips, kind, replace, AudioOptions(hop, pad, resampler)))

    async def train_head_from_embeddings(
        self,
        name: str,
        embeddings: np.ndarray | Sequence[Sequence[float]],
        labels: Sequence[str],
        *,
        kind: HeadKind = "linear",
        replace: bool = False,
    ) -> HeadRecord:
        """See :meth:`Client.train_head_from_embeddings`."""
        return await self._run(self._train_embeddings_op(name, embeddings, labels, kind, replace))

    async def list_heads(self) -> list[HeadRecord]:
        """See :meth:`Client.list_heads`."""
        return await self._run(self._list_heads_op())

    async def get_head(self, name: str) -> HeadRecord:
        """See :meth:`Client.get_head`."""
        return await self._run(self._get_head_op(name))

    async def delete_head(self, name: str) -> None:
        """See :meth:`Client.delete_head`."""
        await self._run(self._delete_head_op(name))

    async def export_head(self, name: str) -> bytes:
        """See :meth:`Client.export_head`."""
        return await self._run(self._export_head_op(name))

    async def import_head(self, name: str, data: FileSource, *, force: bool = False) -> HeadRecord:
        """See :meth:`Client.import_head`."""
        return await self._run(self._import_head_op(name, data, force))

    async def add_items(
        self,
        name: str,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        ids: Sequence[str] | None = None,
        hop: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = True,
        resampler: ResamplerName = "reference",
        force: bool = False,
    ) -> AddResult:
        """Embeds clips on the server and adds them to the collection ``name`` (made on the first
        add; an existing id is replaced).

        Args:
            name: the collection.
            inputs: as for :meth:`embed`.
            ids: one id per input (default: a path's file name; bytes and arrays need one).
            hop, pad, resampler: as for :meth:`classify` (short clips are padded by default).
            force: add even when the collection holds embeddings of other weights or settings
                (else ``ConflictError``, the server's 409).
        """
        return await self._run(
            self._add_items_op(name, inputs, ids, AudioOptions(hop, pad, resampler), force)
        )

    async def add_embeddings(
        self, name: str, items: Sequence[Item], *, features: FeatureSpec | None = None, force: bool = False
    ) -> AddResult:
        """Adds items of embeddings made elsewhere (``vggish.search.Item.of(id, embeddings, ...)``),
        with the ``features`` that made them when known."""
        return await self._run(self._add_embeddings_op(name, items, features, force))

    async def search(
        self,
        name: str,
        query: AudioInput | Query,
        *,
        k: int = 10,
        level: Level = "clip",
        hop: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = True,
        resampler: ResamplerName = "reference",
        force: bool = False,
    ) -> list[Match]:
        """The ``k`` items of ``name`` most similar to one audio clip (or a ``vggish.search.Query``
        of vectors), best first; ``score`` is the cosine similarity.

        Args:
            level: ``clip`` (mean embeddings) or ``segment`` (each item's best pair of segments,
                named in ``segment`` and ``query_segment``).
            hop, pad, resampler, force: as for :meth:`add_items`.
        """
        audio = AudioOptions(hop, pad, resampler)
        return await self._run(self._search_op(name, query, k, level, audio, force))

    async def search_item(
        self, name: str, item_id: str, *, k: int = 10, level: Level = "clip"
    ) -> list[Match]:
        """The ``k`` items most similar to a stored item (itself left out), best first."""
        return await self._run(self._search_op(name, item_id, k, level, AudioOptions(), False, by_id=True))

    async def list_collections(self) -> list[CollectionInfo]:
        """Every collection, by name."""
        return await self._run(self._list_collections_op())

    async def get_collection(self, name: str) -> CollectionInfo:
        """One collection's counts and features (``NotFoundError`` when absent)."""
        return await self._run(self._get_collection_op(name))

    async def delete_collection(self, name: str) -> None:
        """Deletes a collection and its items (``NotFoundError`` when absent)."""
        await self._run(self._delete_collection_op(name))

    async def delete_item(self, name: str, item_id: str) -> None:
        """Deletes one item (``NotFoundError`` when absent)."""
        await self._run(self._delete_item_op(name, item_id))
