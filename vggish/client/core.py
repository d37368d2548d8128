"""The client without I/O: :class:`Api` holds every operation as a generator that yields a
:class:`Request` or a :class:`Sleep` and returns its result; :mod:`.transport` drives it. Retried:
429 and 503 (``Retry-After`` up to ``max_wait``), connect failures, a GET's broken connection.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, TypeVar, Unpack, overload

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
    FileSource,
    as_file,
    audio_body,
    is_single,
    json_body,
    labelled_clips,
    multipart,
    prepare,
    read_file,
)
from vggish.client.results import (
    Classification,
    ModelInfo,
    RemoteEmbeddingResult,
    classifications,
    embedding_results,
    head_record,
    head_records,
    model_infos,
    parse,
)
from vggish.heads import HeadKind
from vggish.heads.store import HeadRecord

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 150.0  # above the service's request_timeout_s (120 s): its 504 arrives first
DEFAULT_RETRIES = 3
DEFAULT_MAX_RETRY_WAIT_S = 30.0
RETRY_STATUSES = frozenset({429, 503})
HEADS, COLLECTIONS = "/v1/heads/", "/v1/collections/"
HEADS_PAGE = 100  # heads per GET /v1/heads page (the most the server gives)
Pooling = Literal["none", "mean"]


@dataclass(frozen=True)
class Request:
    """One HTTP request, re-sendable as it is; ``accept``: error statuses handed to the operation."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Body | None = None
    retry_overloaded: bool = True
    accept: frozenset[int] = frozenset()

    @property
    def options(self) -> dict[str, Any]:
        """``httpx.Client.request``'s keyword arguments."""
        if self.body is None:
            return {"params": self.params}
        headers = {"content-type": self.body.content_type}
        return {"params": self.params, "content": self.body.content, "headers": headers}


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Request | Sleep
Outcome = httpx.Response | httpx.TransportError | None
Op = Generator[Step, Outcome, T]
"""An operation: yields steps, receives each one's outcome, returns its result."""


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before sending a request again (``backoff``: the first wait when
    the server does not say, doubling each retry, up to ``max_wait``)."""

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
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return True
    if isinstance(error, httpx.TimeoutException):
        return False
    return request.method == "GET" and isinstance(error, httpx.NetworkError | httpx.RemoteProtocolError)


class _AudioOptions(TypedDict, total=False):
    """The keyword arguments of the typed overloads of ``embed`` and ``classify``."""

    hop: float
    pad: bool
    resampler: ResamplerName


class _EmbedOptions(_AudioOptions, total=False):
    postprocess: bool | None
    pooling: Pooling | None


class _ClassifyOptions(_AudioOptions, total=False):
    top_k: int | None
    force: bool


def audio_query(hop: float, pad: bool, resampler: ResamplerName, force: bool = False) -> dict[str, str]:
    """The query of how audio becomes examples (and ``force``, when set)."""
    query = {"hop": repr(float(hop)), "pad": _flag(pad), "resampler": resampler}
    return query | {"force": "true"} if force else query


def _flag(value: bool) -> str:
    return "true" if value else "false"


def resource_path(prefix: str, name: str, suffix: str = "") -> str:
    return prefix + urllib.parse.quote(name, safe="") + suffix


class Api:
    """The service's API as operations: the public methods of ``Client`` and ``AsyncClient`` (the
    collections' are in :mod:`.collections`)."""

    def __init__(self, *, api_key: str | None, retries: int, max_retry_wait: float) -> None:
        self.policy = RetryPolicy(retries=retries, max_wait=max_retry_wait)
        self.headers = {"user-agent": f"vggish-client/{__version__}", "accept": "application/json"}
        if api_key:
            self.headers["authorization"] = f"Bearer {api_key}"
        self._has_pca: bool | None = None

    def call(self, request: Request) -> Op[httpx.Response]:
        """Sends ``request`` (retrying per the policy); returns a success or an accepted status,
        else raises ProblemError (an error answer) or TransportError (none)."""
        attempt = 0
        while True:
            outcome = yield request
            assert outcome is not None
            wait = self.policy.delay(request, outcome, attempt)
            if wait is None:
                break
            yield Sleep(wait)
            attempt += 1
        if isinstance(outcome, httpx.TransportError):
            kind = ClientTimeoutError if isinstance(outcome, httpx.TimeoutException) else TransportError
            raise kind(f"{request.method} {request.path}: {type(outcome).__name__}: {outcome}") from outcome
        if outcome.is_success or outcome.status_code in request.accept:
            return outcome
        raise problem_from_response(outcome)

    def parsed(self, request: Request, parser: Callable[[Any], T]) -> Op[T]:
        return parse((yield from self.call(request)), parser)

    def models(self) -> Op[list[ModelInfo]]:
        """``GET /v1/models``: the model, its weights' provenance, device and limits."""
        models = yield from self.parsed(Request("GET", "/v1/models"), model_infos)
        if models:
            self._has_pca = models[0].postprocessing
        return models

    def ready(self) -> Op[bool]:
        """``GET /readyz``: True once the model is loaded and warm, False while loading or stopping."""
        request = Request("GET", "/readyz", retry_overloaded=False, accept=frozenset({503}))
        response = yield from self.call(request)
        return response.is_success

    @overload  # a str is one path, though also a Sequence[str]: this overload comes first
    def embed(  # type: ignore[overload-overlap]
        self, inputs: AudioInput, **options: Unpack[_EmbedOptions]
    ) -> Op[RemoteEmbeddingResult]: ...
    @overload
    def embed(
        self, inputs: Sequence[AudioInput], **options: Unpack[_EmbedOptions]
    ) -> Op[list[RemoteEmbeddingResult]]: ...
    def embed(
        self,
        inputs: AudioInput | Sequence[AudioInput],
        *,
        hop: float = params.EXAMPLE_HOP_SECONDS,
        pad: bool = False,
        postprocess: bool | None = None,
        resampler: ResamplerName = "reference",
        pooling: Pooling | None = None,
    ) -> Op[RemoteEmbeddingResult | list[RemoteEmbeddingResult]]:
        """Embeds audio on the server: the library's numbers for the same input and options.

        Args:
            inputs: one input or a sequence (one result, or a list in order).
            postprocess: AudioSet's PCA + uint8 features; None: when the server's weights have PCA.
            pooling: ``mean`` also returns each input's mean embedding (``pooled``).
        """
        parts = prepare(inputs)
        if postprocess is None:  # whether the server's weights carry PCA, asked once
            if self._has_pca is None:
                yield from self.models()
            postprocess = bool(self._has_pca)
        query = audio_query(hop, pad, resampler) | {
            "postprocess": _flag(postprocess),
            "pooling": pooling or "none",
            "encoding": "base64",
        }
        request = Request("POST", "/v1/embeddings", query, audio_body(parts))
        names = [p.name for p in parts]
        results = yield from self.parsed(request, lambda body: embedding_results(body, names))
        return results[0] if is_single(inputs) else results

    @overload
    def classify(  # type: ignore[overload-overlap]
        self, name: str, inputs: AudioInput, **options: Unpack[_ClassifyOptions]
    ) -> Op[Classification]: ...
    @overload
    def classify(
        self, name: str, inputs: Sequence[AudioInput], **options: Unpack[_ClassifyOptions]
    ) -> Op[list[Classification]]: ...
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
    ) -> Op[Classification | list[Classification]]:
        """Labels audio with the head ``name``: each clip's and each example's (``frames``) best
        ``top_k`` labels (a frame's best 5 when None); ``force``: even on other weights."""
        parts = prepare(inputs)
        query = audio_query(hop, pad, resampler, force) | ({} if top_k is None else {"top_k": str(top_k)})
        request = Request("POST", resource_path(HEADS, name, "/classify"), query, audio_body(parts))
        names = [p.name for p in parts]
        results = yield from self.parsed(request, lambda body: classifications(body, names))
        return results[0] if is_single(inputs) else results

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
    ) -> Op[HeadRecord]:
        """Trains and stores a head on labelled clips (``{label: [inputs]}`` or ``(inputs, labels)``),
        each clip's embedding being its examples' mean; ``replace``: else ConflictError."""
        inputs, labels = labelled_clips(clips)
        files = [as_file(part, i) for i, part in enumerate(prepare(inputs))]
        body = multipart({"name": name, "label": labels, "kind": kind, "replace": _flag(replace)}, files)
        request = Request("POST", "/v1/heads", audio_query(hop, pad, resampler), body)
        return (yield from self.parsed(request, head_record))

    def train_head_from_embeddings(
        self,
        name: str,
        embeddings: np.ndarray | Sequence[Sequence[float]],
        labels: Sequence[str],
        *,
        kind: HeadKind = "linear",
        replace: bool = False,
    ) -> Op[HeadRecord]:
        """Trains and stores a head on clip-level (N, 128) embeddings and their N labels."""
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
        return (yield from self.parsed(Request("POST", "/v1/heads", body=json_body(payload)), head_record))

    def list_heads(self) -> Op[list[HeadRecord]]:
        """Every stored head, by name (the server's pages one after another)."""
        records: list[HeadRecord] = []
        query = {"limit": str(HEADS_PAGE)}
        while True:
            response = yield from self.call(Request("GET", "/v1/heads", query))
            records += parse(response, head_records)
            if not response.json().get("next"):  # the last page (or a server without pages)
                return records
            query = {"limit": str(HEADS_PAGE), "cursor": records[-1].name}

    def get_head(self, name: str) -> Op[HeadRecord]:
        """One head's classes, kind, metrics and version (``NotFoundError`` when absent)."""
        return (yield from self.parsed(Request("GET", resource_path(HEADS, name)), head_record))

    def delete_head(self, name: str) -> Op[None]:
        yield from self.call(Request("DELETE", resource_path(HEADS, name)))

    def export_head(self, name: str) -> Op[bytes]:
        """The head as a safetensors file's bytes (``vggish.heads.from_safetensors`` reads them)."""
        response = yield from self.call(Request("GET", resource_path(HEADS, name, "/export")))
        return response.content

    def import_head(self, name: str, data: FileSource, *, force: bool = False) -> Op[HeadRecord]:
        """Stores an exported safetensors head (bytes, path or file) under ``name``; ``force``:
        even when it records other weights than the server's (else ConflictError)."""
        body = Body(read_file(data)[1], "application/octet-stream")
        query = {"force": "true"} if force else {}
        return (yield from self.parsed(Request("PUT", resource_path(HEADS, name), query, body), head_record))
