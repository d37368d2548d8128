"""Answers -> results: the library's own types where they fit, small frozen dataclasses elsewhere."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import numpy as np

from vggish import params
from vggish.client.errors import ClientError
from vggish.heads import FeatureSpec, HeadMetrics
from vggish.heads.store import HeadRecord
from vggish.pipeline.driver import EmbeddingResult

T = TypeVar("T")


@dataclass(frozen=True)
class RemoteEmbeddingResult(EmbeddingResult):
    """An :class:`vggish.EmbeddingResult` computed by the service, plus the (128,) ``pooled`` mean
    embedding (with ``pooling="mean"``)."""

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
    """``GET /v1/models``: the model a server runs, its weights, device, decoders and limits."""

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
    """``parser`` of the JSON body; an answer of another shape is a :class:`ClientError`."""
    try:
        return parser(response.json())
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise ClientError(
            f"unexpected answer to {response.request.method} {response.request.url.path}: {e!r}"
        ) from e


def _vectors(rows: Sequence[str], dtype: str) -> np.ndarray:
    data = b"".join(base64.b64decode(row, validate=True) for row in rows)
    out = np.frombuffer(data, dtype=dtype).reshape(len(rows), params.EMBEDDING_SIZE)
    return out.astype(dtype.lstrip("<"))


def _in_order(body: Any, names: Sequence[str | None]) -> Any:
    data = sorted(body["data"], key=lambda d: d["index"])
    if len(data) != len(names):
        raise ValueError(f"{len(data)} results for {len(names)} inputs")
    return zip(data, names, strict=True)


def embedding_results(body: Any, names: Sequence[str | None]) -> list[RemoteEmbeddingResult]:
    return [_embedding_result(d, name) for d, name in _in_order(body, names)]


def _embedding_result(d: dict[str, Any], name: str | None) -> RemoteEmbeddingResult:
    embeddings = _vectors(d["embeddings"], "<f4")
    post = d.get("postprocessed")
    pooled = d.get("embedding")
    sample_rate = int(d["sample_rate"])
    return RemoteEmbeddingResult(
        embeddings=embeddings,
        timestamps=np.asarray(d["timestamps"], dtype=np.float64).reshape(-1, 2),
        postprocessed=None if post is None else _vectors(post, "u1"),
        sample_rate=sample_rate,
        channels=int(d["channels"]),
        num_samples=round(float(d["duration"]) * sample_rate),
        name=name,
        pooled=None if pooled is None else _vectors([pooled], "<f4")[0],
    )


def head_record(body: Any) -> HeadRecord:
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
    return [head_record(item) for item in body["data"]]


def _scores(items: Sequence[dict[str, Any]]) -> tuple[LabelScore, ...]:
    return tuple(LabelScore(str(s["label"]), float(s["score"])) for s in items)


def classifications(body: Any, names: Sequence[str | None]) -> list[Classification]:
    return [
        Classification(
            name=name,
            duration=float(d["duration"]),
            labels=_scores(d["labels"]),
            frames=tuple(
                FrameLabels(float(f["start"]), float(f["end"]), _scores(f["labels"])) for f in d["frames"]
            ),
        )
        for d, name in _in_order(body, names)
    ]


def model_infos(body: Any) -> list[ModelInfo]:
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
