"""The client without I/O: every operation is a generator that yields steps and gets their outcomes.

An operation (embed, train a head, ...) builds its requests, parses the answers and decides on
retries; it never touches the network or a clock. It yields a :class:`Request` and receives the
``httpx.Response`` (or the ``httpx.TransportError``), or yields a :class:`Sleep` and receives None,
and finally returns its result. :class:`vggish.client.Client` drives these generators with
``httpx.Client`` and ``time.sleep``, :class:`vggish.client.AsyncClient` with ``httpx.AsyncClient``
and ``asyncio.sleep``: the transport is all that differs between them.

Retries (:class:`RetryPolicy`): 429 and 503 are retried, as the server refused the request before
doing any work, waiting what ``Retry-After`` asks (seconds or an HTTP date); an answer that asks
for more than ``max_wait`` is not retried but raised at once. Connection failures are retried when
nothing reached the server (connect errors), and for GETs also when the connection broke
afterwards. Timeouts are never retried: the caller chose how long to wait.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import httpx
import numpy as np

from vggish import __version__, params
from vggish.audio.resample import ResamplerName
from vggish.client.errors import (
    ClientTimeoutError,
    TransportError,
    problem_from_response,
    retry_after_seconds,
)
from vggish.client.inputs import (
    AudioInput,
    Body,
    FilePart,
    FileSource,
    HeadKind,
    SamplesPart,
    audio_body,
    is_single,
    json_body,
    labelled_clips,
    multipart,
    prepare,
    read_file,
    training_body,
)
from vggish.client.results import (
    Classification,
    ModelInfo,
    RemoteEmbeddingResult,
    add_result,
    classifications,
    collection_info,
    collection_infos,
    embedding_results,
    head_record,
    head_records,
    matches,
    model_infos,
    parse,
)
from vggish.heads import FeatureSpec
from vggish.heads.store import HeadRecord
from vggish.search import AddResult, CollectionInfo, Item, Level, Match, Query

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 150.0  # above the service's request_timeout_s (120 s): its 504 arrives first
DEFAULT_RETRIES = 3
DEFAULT_MAX_RETRY_WAIT_S = 30.0
RETRY_STATUSES = frozenset({429, 503})
Pooling = Literal["none", "mean"]


@dataclass(frozen=True)
class Request:
    """One HTTP request, re-sendable as it is.

    Attributes:
        method: ``GET``, ``POST``, ``PUT`` or ``DELETE``.
        path: relative to the client's base URL.
        params: query parameters.
        body: the body, or None.
        retry_overloaded: retry 429 / 503 (False where 503 is the answer sought: ``/readyz``).
        accept: error statuses handed to the operation instead of raised.
    """

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Body | None = None
    retry_overloaded: bool = True
    accept: frozenset[int] = frozenset()

    @property
    def headers(self) -> dict[str, str]:
        """The body's ``Content-Type``, when there is a body."""
        return {} if self.body is None else {"content-type": self.body.content_type}

    @property
    def content(self) -> bytes | None:
        return None if self.body is None else self.body.content


@dataclass(frozen=True)
class Sleep:
    """Wait this many seconds before the next step."""

    seconds: float


Step = Request | Sleep
Outcome = httpx.Response | httpx.TransportError | None
Op = Generator[Step, Outcome, T]
"""An operation: yields steps, receives each one's outcome, returns its result."""


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a request again.

    Attributes:
        retries: retries after the first attempt (0: none).
        max_wait: the longest single wait in seconds; an answer asking for more ends the retries.
        backoff: the first wait when the server does not say (doubling each retry, up to ``max_wait``).
    """

    retries: int = DEFAULT_RETRIES
    max_wait: float = DEFAULT_MAX_RETRY_WAIT_S
    backoff: float = 0.5

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more; got {self.retries}")
        if not self.max_wait >= 0:
            raise ValueError(f"max_retry_wait must be 0 or more seconds; got {self.max_wait}")

    def delay(
        self, request: Request, outcome: httpx.Response | httpx.TransportError, attempt: int
    ) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``, or None to stop here."""
        if attempt >= self.retries:
            return None
        fallback = min(self.backoff * 2.0**attempt, self.max_wait)
        if isinstance(outcome, httpx.TransportError):
            return fallback if _retryable_failure(request, outcome) else None
        if outcome.status_code not in RETRY_STATUSES or not request.retry_overloaded:
            return None
        asked = retry_after_seconds(outcome.headers.get("retry-after"))
        if asked is None:
            return fallback
        return asked if asked <= self.max_wait else None


def _retryable_failure(request: Request, error: httpx.TransportError) -> bool:
    """Connect failures never reached the server; a GET may be sent again after any other break."""
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return True
    if isinstance(error, httpx.TimeoutException):
        return False
    return request.method == "GET" and isinstance(error, httpx.NetworkError | httpx.RemoteProtocolError)


def _failure(request: Request, error: httpx.TransportError) -> TransportError:
    kind = ClientTimeoutError if isinstance(error, httpx.TimeoutException) else TransportError
    return kind(f"{request.method} {request.path}: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class AudioOptions:
    """How audio becomes examples (the query options of embeddings, classification and training)."""

    hop: float = params.EXAMPLE_HOP_SECONDS
    pad: bool = False
    resampler: ResamplerName = "reference"

    def query(self) -> dict[str, str]:
        return {"hop": repr(float(self.hop)), "pad": _flag(self.pad), "resampler": self.resampler}


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _head_path(name: str, suffix: str = "") -> str:
    return "/v1/heads/" + urllib.parse.quote(name, safe="") + suffix


def _collection_path(name: str, suffix: str = "") -> str:
    return "/v1/collections/" + urllib.parse.quote(name, safe="") + suffix


def _names(parts: Sequence[object]) -> list[str | None]:
    return [part.name if isinstance(part, FilePart) else None for part in parts]


def _named(part: object, name: str) -> dict[str, object]:
    """A JSON ``inputs`` entry of ``part`` named ``name`` (the item's id)."""
    if isinstance(part, FilePart):
        return {"audio_base64": base64.b64encode(part.data).decode("ascii"), "name": name}
    assert isinstance(part, SamplesPart)
    return {"samples": part.samples.tolist(), "sample_rate": part.sample_rate, "name": name}


class BaseClient:
    """What :class:`Client` and :class:`AsyncClient` share: settings, the model cache and every
    operation (see the module's docstring).

    Args:
        api_key: sent as ``Authorization: Bearer <key>``.
        retries: retries of 429 / 503 answers and of connection failures (see :class:`RetryPolicy`).
        max_retry_wait: the longest wait before a retry, in seconds.
    """

    def __init__(self, *, api_key: str | None, retries: int, max_retry_wait: float) -> None:
        self._policy = RetryPolicy(retries=retries, max_wait=max_retry_wait)
        self._headers = {"user-agent": f"vggish-client/{__version__}", "accept": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._has_pca: bool | None = None

    # --- the one request primitive ------------------------------------------------------------

    def _call(self, request: Request) -> Op[httpx.Response]:
        """Sends ``request`` (retrying per the policy); returns a success or an accepted status.

        Raises:
            ProblemError: an error answer (of the subclass its type or status calls for).
            TransportError: no answer (``ClientTimeoutError`` when the timeout passed).
        """
        attempt = 0
        while True:
            outcome = yield request
            assert outcome is not None
            wait = self._policy.delay(request, outcome, attempt)
            if wait is None:
                break
            yield Sleep(wait)
            attempt += 1
        if isinstance(outcome, httpx.TransportError):
            raise _failure(request, outcome) from outcome
        if outcome.is_success or outcome.status_code in request.accept:
            return outcome
        raise problem_from_response(outcome)

    # --- operations -------------------------------------------------------------------------

    def _models_op(self) -> Op[list[ModelInfo]]:
        response = yield from self._call(Request("GET", "/v1/models"))
        models = parse(response, model_infos)
        if models:
            self._has_pca = models[0].postprocessing
        return models

    def _postprocess_op(self, postprocess: bool | None) -> Op[bool]:
        """``postprocess``, or (None) whether the server's weights carry PCA, asked once."""
        if postprocess is not None:
            return postprocess
        if self._has_pca is None:
            yield from self._models_op()
        return bool(self._has_pca)

    def _embed_op(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        audio: AudioOptions,
        postprocess: bool | None,
        pooling: Pooling | None,
    ) -> Op[RemoteEmbeddingResult | list[RemoteEmbeddingResult]]:
        parts = prepare(inputs)
        post = yield from self._postprocess_op(postprocess)
        query = {
            **audio.query(),
            "postprocess": _flag(post),
            "pooling": pooling or "none",
            "encoding": "base64",
        }
        response = yield from self._call(Request("POST", "/v1/embeddings", query, audio_body(parts)))
        results = parse(response, lambda body: embedding_results(body, _names(parts)))
        return results[0] if is_single(inputs) else results

    def _classify_op(
        self,
        name: str,
        inputs: AudioInput | Sequence[AudioInput],
        audio: AudioOptions,
        top_k: int | None,
        force: bool = False,
    ) -> Op[Classification | list[Classification]]:
        parts = prepare(inputs)
        query = audio.query() | ({} if top_k is None else {"top_k": str(top_k)})
        if force:
            query["force"] = "true"
        request = Request("POST", _head_path(name, "/classify"), query, audio_body(parts))
        response = yield from self._call(request)
        results = parse(response, lambda body: classifications(body, _names(parts)))
        return results[0] if is_single(inputs) else results

    def _train_op(
        self,
        name: str,
        clips: Mapping[str, Sequence[AudioInput]] | tuple[Sequence[AudioInput], Sequence[str]],
        kind: HeadKind,
        replace: bool,
        audio: AudioOptions,
    ) -> Op[HeadRecord]:
        inputs, labels = labelled_clips(clips)
        body = training_body(name, prepare(inputs), labels, kind, replace)
        response = yield from self._call(Request("POST", "/v1/heads", audio.query(), body))
        return parse(response, head_record)

    def _train_embeddings_op(
        self,
        name: str,
        embeddings: np.ndarray | Sequence[Sequence[float]],
        labels: Sequence[str],
        kind: HeadKind,
        replace: bool,
    ) -> Op[HeadRecord]:
        x = np.asarray(embeddings, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError("embeddings hold NaN or infinite values")
        payload = {
            "name": name,
            "embeddings": x.tolist(),
            "labels": list(labels),
            "kind": kind,
            "replace": replace,
        }
        response = yield from self._call(Request("POST", "/v1/heads", body=json_body(payload)))
        return parse(response, head_record)

    def _list_heads_op(self) -> Op[list[HeadRecord]]:
        response = yield from self._call(Request("GET", "/v1/heads"))
        return parse(response, head_records)

    def _get_head_op(self, name: str) -> Op[HeadRecord]:
        response = yield from self._call(Request("GET", _head_path(name)))
        return parse(response, head_record)

    def _delete_head_op(self, name: str) -> Op[None]:
        yield from self._call(Request("DELETE", _head_path(name)))

    def _export_head_op(self, name: str) -> Op[bytes]:
        response = yield from self._call(Request("GET", _head_path(name, "/export")))
        return response.content

    def _import_head_op(self, name: str, data: FileSource, force: bool = False) -> Op[HeadRecord]:
        body = Body(read_file(data)[1], "application/octet-stream")
        query = {"force": "true"} if force else {}
        response = yield from self._call(Request("PUT", _head_path(name), query, body=body))
        return parse(response, head_record)

    # --- collections ------------------------------------------------------------------------

    def _add_items_op(
        self,
        name: str,
        inputs: AudioInput | Sequence[AudioInput],
        ids: Sequence[str] | None,
        audio: AudioOptions,
        force: bool,
    ) -> Op[AddResult]:
        parts = prepare(inputs)
        if ids is not None and len(ids) != len(parts):
            raise ValueError(f"{len(parts)} inputs but {len(ids)} ids: give one id per input")
        names = list(ids) if ids is not None else [p.name if isinstance(p, FilePart) else None for p in parts]
        if any(not n for n in names):
            raise ValueError("bytes, file objects without a name and arrays need ids: pass ids=[...]")
        if all(isinstance(p, FilePart) for p in parts):
            files = [(str(n), p.data) for n, p in zip(names, parts, strict=True) if isinstance(p, FilePart)]
            body = multipart({"id": [str(n) for n in names]}, files)
        else:
            body = json_body({"inputs": [_named(p, str(n)) for p, n in zip(parts, names, strict=True)]})
        query = audio.query() | ({"force": "true"} if force else {})
        response = yield from self._call(Request("POST", _collection_path(name, "/items"), query, body))
        return parse(response, add_result)

    def _add_embeddings_op(
        self, name: str, items: Sequence[Item], features: FeatureSpec | None, force: bool
    ) -> Op[AddResult]:
        payload: dict[str, object] = {
            "items": [
                {"id": i.id, "embeddings": i.embeddings.tolist(), "timestamps": i.timestamps.tolist()}
                | ({} if i.metadata is None else {"metadata": i.metadata})
                for i in items
            ]
        }
        if features is not None:
            payload["features"] = features.to_dict()
        query = {"force": "true"} if force else {}
        request = Request("POST", _collection_path(name, "/items"), query, json_body(payload))
        response = yield from self._call(request)
        return parse(response, add_result)

    def _search_op(
        self,
        name: str,
        query: AudioInput | Query | str,
        k: int,
        level: Level,
        audio: AudioOptions,
        force: bool,
        by_id: bool = False,
    ) -> Op[list[Match]]:
        params = audio.query() | {"k": str(k), "level": level} | ({"force": "true"} if force else {})
        if by_id:
            body = json_body({"id": query})
        elif isinstance(query, Query) and query.timestamps is None:
            body = json_body({"embedding": query.clip.tolist()})
        elif isinstance(query, Query):
            times = np.asarray(query.timestamps).tolist()
            body = json_body({"embeddings": query.vectors.tolist(), "timestamps": times})
        else:
            body = audio_body(prepare(query))  # type: ignore[arg-type]
        response = yield from self._call(Request("POST", _collection_path(name, "/search"), params, body))
        return parse(response, matches)

    def _list_collections_op(self) -> Op[list[CollectionInfo]]:
        response = yield from self._call(Request("GET", "/v1/collections"))
        return parse(response, collection_infos)

    def _get_collection_op(self, name: str) -> Op[CollectionInfo]:
        response = yield from self._call(Request("GET", _collection_path(name)))
        return parse(response, collection_info)

    def _delete_collection_op(self, name: str) -> Op[None]:
        yield from self._call(Request("DELETE", _collection_path(name)))

    def _delete_item_op(self, name: str, item_id: str) -> Op[None]:
        yield from self._call(
            Request("DELETE", _collection_path(name, "/items/" + urllib.parse.quote(item_id, safe="")))
        )

    def _ready_op(self) -> Op[bool]:
        request = Request("GET", "/readyz", retry_overloaded=False, accept=frozenset({503}))
        response = yield from self._call(request)
        return response.is_success
