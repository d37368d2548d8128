"""Answers -> results: the library's own types where they fit, small frozen dataclasses elsewhere.

Embeddings come back as :class:`vggish.EmbeddingResult` (``encoding=base64`` on the wire: the
float32 and uint8 bytes, decoded with NumPy), heads as :class:`vggish.heads.store.HeadRecord`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

import httpx
import numpy as np

from vggish import params
from vggish.client.errors import ClientError
from vggish.heads import FeatureSpec, HeadMetrics
from vggish.heads.store import HeadRecord
from vggish.pipeline.driver import EmbeddingResult
from vggish.search import AddResult, CollectionInfo, Match, Segment

T = TypeVar("T")
_RESULT_FIELDS = frozenset(f.name for f in fields(EmbeddingResult))


@dataclass(frozen=True)
class RemoteEmbeddingResult(EmbeddingResult):
    """An :class:`vggish.EmbeddingResult` computed by the service, plus the pooled embedding.

    Attributes:
        pooled: (128,) float32 mean of ``embeddings`` with ``pooling="mean"`` (None without it, or
            when the input has no example).
    """

    pooled: np.ndarray | None = None


@dataclass(frozen=True)
class LabelScore:
    """A class label and its softmax probability."""

    label: str
    score: float


@dataclass(frozen=True)
class FrameLabels:
    """The labels of one example: [start, end] seconds, best first."""

    start: float
    end: float
    labels: tuple[LabelScore, ...]


@dataclass(frozen=True)
class Classification:
    """One input's labels: the clip's (the head applied to its mean embedding; best first, empty
    without an example) and each example's (``frames``); ``name``: a path's file name, or None."""

    name: str | None
    duration: float
    labels: tuple[LabelScore, ...]
    frames: tuple[FrameLabels, ...]


@dataclass(frozen=True)
class ModelInfo:
    """``GET /v1/models``: the model a server runs, its weights' provenance (their metadata and
    ``sha256``), whether they carry AudioSet's PCA parameters (``postprocessing``), where and how it
    runs, its decoders and the server's limits (``max_upload_bytes``, ``max_inputs``, ...)."""

    id: str
    weights: dict[str, str]
    parameters: int
    embedding_size: int
    sample_rate: int
    postprocessing: bool
    device: str
    backend: str
    decoders: tuple[str, ...]
    limits: dict[str, float]


def parse(response: httpx.Response, parser: Callable[[Any], T]) -> T:
    """Applies ``parser`` to the JSON body; an answer of another shape is a :class:`ClientError`."""
    try:
        return parser(response.json())
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise ClientError(
            f"unexpected answer to {response.request.method} {response.request.url.path}: {e!r}"
        ) from e


def _vectors(rows: Sequence[str], dtype: str) -> np.ndarray:
    """base64 rows of little-endian ``dtype`` -> (N, 128) array (native byte order)."""
    data = b"".join(base64.b64decode(row, validate=True) for row in rows)
    out = np.frombuffer(data, dtype=dtype).reshape(len(rows), params.EMBEDDING_SIZE)
    return out.astype(dtype.lstrip("<"))


def embedding_results(body: Any, names: Sequence[str | None]) -> list[RemoteEmbeddingResult]:
    """The ``data`` of an ``encoding=base64`` embeddings answer, in input order."""
    data = sorted(body["data"], key=lambda d: d["index"])
    if len(data) != len(names):
        raise ValueError(f"{len(data)} results for {len(names)} inputs")
    return [_embedding_result(d, name) for d, name in zip(data, names, strict=True)]


def _embedding_result(d: dict[str, Any], name: str | None) -> RemoteEmbeddingResult:
    embeddings = _vectors(d["embeddings"], "<f4")
    post = d.get("postprocessed")
    pooled = d.get("embedding")
    sample_rate = int(d["sample_rate"])
    kwargs: dict[str, Any] = {
        "embeddings": embeddings,
        "timestamps": np.asarray(d["timestamps"], dtype=np.float64).reshape(-1, 2),
        "postprocessed": None if post is None else _vectors(post, "u1"),
        "sample_rate": sample_rate,
        "channels": int(d["channels"]),
        "num_samples": round(float(d["duration"]) * sample_rate),
        "pooled": None if pooled is None else _vectors([pooled], "<f4")[0],
    }
    if "name" in _RESULT_FIELDS:  # the library's result names its input (newer versions)
        kwargs["name"] = name
    return RemoteEmbeddingResult(**kwargs)


def head_record(body: Any) -> HeadRecord:
    """A ``HeadInfo`` answer as the library's record."""
    m = body["metrics"]
    metrics = (
        None if m is None else HeadMetrics(m["cv_accuracy"], float(m["train_accuracy"]), int(m["folds"]))
    )
    return HeadRecord(
        name=str(body["name"]),
        kind=str(body["kind"]),
        classes=tuple(str(c) for c in body["classes"]),
        num_examples=int(body["num_examples"]),
        metrics=metrics,
        created_at=str(body["created_at"]),
        version=int(body["version"]),
        features=FeatureSpec.from_dict(body.get("features") or {}),  # absent from older servers
    )


def head_records(body: Any) -> list[HeadRecord]:
    """A ``HeadList`` answer."""
    return [head_record(item) for item in body["data"]]


def _scores(items: Sequence[dict[str, Any]]) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(str(s["label"]), float(s["score"])) for s in items)


def classifications(body: Any, names: Sequence[str | None]) -> list[Classification]:
    """A ``ClassifyResponse``'s ``data``, in input order."""
    data = sorted(body["data"], key=lambda d: d["index"])
    if len(data) != len(names):
        raise ValueError(f"{len(data)} results for {len(names)} inputs")
    return [
        Classification(
            name=name,
            duration=float(d["duration"]),
            labels=_scores(d["labels"]),
            frames=tuple(
                FrameLabels(float(f["start"]), float(f["end"]), _scores(f["labels"])) for f in d["frames"]
            ),
        )
        for d, name in zip(data, names, strict=True)
    ]


def model_infos(body: Any) -> list[ModelInfo]:
    """A ``ModelList`` answer."""
    return [
        ModelInfo(
            id=str(card["id"]),
            weights={str(k): str(v) for k, v in card["weights"].items()},
            parameters=int(card["parameters"]),
            embedding_size=int(card["embedding_size"]),
            sample_rate=int(card["sample_rate"]),
            postprocessing=bool(card["postprocessing"]),
            device=str(card["device"]),
            backend=str(card["backend"]),
            decoders=tuple(str(d) for d in card["decoders"]),
            limits={str(k): float(v) for k, v in card["limits"].items()},
        )
        for card in body["data"]
    ]


def collection_info(body: Any) -> CollectionInfo:
    """A ``CollectionInfoOut`` answer as the library's record."""
    return CollectionInfo(
        name=str(body["name"]),
        features=FeatureSpec.from_dict(body.get("features") or {}),
        items=int(body["items"]),
        segments=int(body["segments"]),
        created_at=str(body["created_at"]),
    )


def collection_infos(body: Any) -> list[CollectionInfo]:
    """A ``CollectionList`` answer."""
    return [collection_info(item) for item in body["data"]]


def add_result(body: Any) -> AddResult:
    """An ``AddItemsResponse`` as the library's result."""
    replaced = tuple(str(i["id"]) for i in body["items"] if i["replaced"])
    warning = "; ".join(body.get("warnings") or []) or None
    return AddResult(collection_info(body["collection"]), bool(body["created"]), replaced, warning)


def _segment(raw: Any) -> Segment | None:
    return None if raw is None else Segment(int(raw["index"]), float(raw["start"]), float(raw["end"]))


def matches(body: Any) -> list[Match]:
    """A ``SearchResponse``'s results, best first, as the library's matches."""
    return [
        Match(
            str(r["id"]),
            float(r["score"]),
            r.get("metadata"),
            _segment(r.get("segment")),
            _segment(r.get("query_segment")),
        )
        for r in body["results"]
    ]
