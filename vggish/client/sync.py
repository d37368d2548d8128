"""``Client``: the service's API as blocking calls (httpx.Client); the operations live in ``core``."""

from __future__ import annotations

import time
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


class Client(BaseClient):
    """A VGGish service's API: embeddings, classifier heads and the model card, as blocking calls.

    >>> with Client("http://127.0.0.1:8000", api_key="...") as client:
    ...     result = client.embed("dog.wav")          # a vggish.EmbeddingResult
    ...     results = client.embed([(x, 44100), "cat.flac"], pooling="mean")

    Errors answered by the server raise :class:`vggish.client.ProblemError` (by subclass:
    ``NotFoundError``, ``LimitExceededError``...); no answer raises ``TransportError``.

    Args:
        base_url: the service's URL, e.g. ``http://127.0.0.1:8000`` (a path prefix is kept).
        api_key: sent as ``Authorization: Bearer <key>`` (the server's ``VGGISH_API_KEYS``).
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
        self._http = httpx.Client(base_url=base_url, headers=self._headers, timeout=timeout)

    def _run(self, op: Op[T]) -> T:
        """Drives an operation: sends its requests, sleeps its waits, returns its result."""
        outcome: Outcome = None
        while True:
            try:
                step = op.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
            outcome = self._perform(step)

    def _perform(self, step: Step) -> Outcome:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        try:
            return self._http.request(
                step.method, step.path, params=step.params, content=step.content, headers=step.headers
            )
        except httpx.TransportError as e:
            return e

    def close(self) -> None:
        """Closes the connections."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def models(self) -> list[ModelInfo]:
        """``GET /v1/models``: the model, its weights' provenance, device and limits."""
        return self._run(self._models_op())

    def ready(self) -> bool:
        """``GET /readyz``: True once the model is loaded and warm, False while loading or stopping."""
        return self._run(self._ready_op())

    @overload  # a str is one path, though also a Sequence[str]: this overload comes first
    def embed(  # type: ignore[overload-overlap]
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
    def embed(
        self,
        inputs: Sequence[AudioInput],
        *,
        hop: float = ...,
        pad: bool = ...,
        postprocess: bool | None = ...,
        resampler: ResamplerName = ...,
        pooling: Pooling | None = ...,
    ) -> list[RemoteEmbeddingResult]: ...
    def embed(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        hop: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = False,
        postprocess: bool | None = None,
        resampler: ResamplerName = "reference",
        pooling: Pooling | None = None,
    ) -> RemoteEmbeddingResult | list[RemoteEmbeddingResult]:
        """Embeds audio on the server; the numbers are the library's (``model.embed_file`` /
        ``model.embed``) for the same input and options, to 1e-5.

        Args:
            inputs: one input or a sequence: paths, bytes, binary file objects, ``(array, rate)``.
            hop: seconds between example starts (a multiple of 0.01).
            pad: zero-pad a clip shorter than 0.975 s to one example.
            postprocess: AudioSet's PCA + uint8 features; None: when the server's weights have PCA.
            resampler: ``reference`` (exact) or ``fast``.
            pooling: ``mean`` also returns each input's mean embedding (``pooled``).

        Returns:
            One result per input, in order (a single result for a single input).
        """
        return self._run(self._embed_op(inputs, AudioOptions(hop, pad, resampler), postprocess, pooling))

    @overload
    def classify(  # type: ignore[overload-overlap]
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
    def classify(
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
    def classify(
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
        """Labels audio with the head ``name``: each clip's, and each example's (``frames``).

        Args:
            name: the head.
            inputs: as for :meth:`embed`.
            top_k: keep only the best ``top_k`` labels.
            hop: as for :meth:`embed`.
            pad: zero-pad a clip shorter than 0.975 s to one example (default: on, as the
                server's heads do).
            resampler: as for :meth:`embed`.
            force: classify even when the head was trained on other weights or settings
                (else ``ConflictError``, the server's 409).
        """
        return self._run(self._classify_op(name, inputs, AudioOptions(hop, pad, resampler), top_k, force))

    def train_head(
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
        """Trains and stores a head on labelled clips, each clip's embedding being its examples' mean.

        Clips go as files in one multipart request; an array off the 16-bit grid goes as a float
        WAV file, which the server rounds to 16 bits (for exact numbers, use :meth:`embed` with
        ``pooling="mean"`` and :meth:`train_head_from_embeddings`).

        Args:
            name: 1-64 characters of ``A-Z a-z 0-9 _ . -``.
            clips: ``{label: [inputs]}``, or ``(inputs, labels)`` with one label per input.
            kind: ``linear`` (logistic regression) or ``mlp``.
            replace: replace a head of the same name (else ``ConflictError``).
            hop: as for :meth:`embed`.
            pad: zero-pad a clip shorter than 0.975 s to one example (default: on, as the
                server's heads do).
            resampler: as for :meth:`embed`.
        """
        return self._run(self._train_op(name, clips, kind, replace, AudioOptions(hop, pad, resampler)))

    def train_head_from_embeddings(
        self,
        name: str,
        embeddings: np.ndarray | Sequence[Sequence[float]],
        labels: Sequence[str],
        *,
        kind: HeadKind = "linear",
        replace: bool = False,
    ) -> HeadRecord:
        """Trains and stores a head on clip-level (N, 128) embeddings and their N labels."""
        return self._run(self._train_embeddings_op(name, embeddings, labels, kind, replace))

    def list_heads(self) -> list[HeadRecord]:
        """Every stored head, by name."""
        return self._run(self._list_heads_op())

    def get_head(self, name: str) -> HeadRecord:
        """One head's classes, kind, metrics and version (``NotFoundError`` when absent)."""
        return self._run(self._get_head_op(name))

    def delete_head(self, name: str) -> None:
        """Deletes a head (``NotFoundError`` when absent)."""
        self._run(self._delete_head_op(name))

    def export_head(self, name: str) -> bytes:
        """The head as a safetensors file's bytes (``vggish.heads.from_safetensors`` reads them)."""
        return self._run(self._export_head_op(name))

    def import_head(self, name: str, data: FileSource, *, force: bool = False) -> HeadRecord:
        """Stores an exported head under ``name`` (replacing one of that name: ``version`` says).

        Args:
            name: the name to store it under.
            data: the safetensors file: its bytes, a path or a binary file object.
            force: store it even when it records other weights than the server's (else
                ``ConflictError``, the server's 409).
        """
        return self._run(self._import_head_op(name, data, force))

    def add_items(
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
        return self._run(self._add_items_op(name, inputs, ids, AudioOptions(hop, pad, resampler), force))

    def add_embeddings(
        self, name: str, items: Sequence[Item], *, features: FeatureSpec | None = None, force: bool = False
    ) -> AddResult:
        """Adds items of embeddings made elsewhere (``vggish.search.Item.of(id, embeddings, ...)``),
        with the ``features`` that made them when known."""
        return self._run(self._add_embeddings_op(name, items, features, force))

    def search(
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
        return self._run(self._search_op(name, query, k, level, audio, force))

    def search_item(self, name: str, item_id: str, *, k: int = 10, level: Level = "clip") -> list[Match]:
        """The ``k`` items most similar to a stored item (itself left out), best first."""
        return self._run(self._search_op(name, item_id, k, level, AudioOptions(), False, by_id=True))

    def list_collections(self) -> list[CollectionInfo]:
        """Every collection, by name."""
        return self._run(self._list_collections_op())

    def get_collection(self, name: str) -> CollectionInfo:
        """One collection's counts and features (``NotFoundError`` when absent)."""
        return self._run(self._get_collection_op(name))

    def delete_collection(self, name: str) -> None:
        """Deletes a collection and its items (``NotFoundError`` when absent)."""
        self._run(self._delete_collection_op(name))

    def delete_item(self, name: str, item_id: str) -> None:
        """Deletes one item (``NotFoundError`` when absent)."""
        self._run(self._delete_item_op(name, item_id))
