"""Library results -> response schemas (vectors as numbers or base64, pooling, usage)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from vggish import params
from vggish.heads import clip_mean
from vggish.pipeline.driver import EmbeddingResult
from vggish.pipeline.source import InputExamples

from .schemas import (
    EmbeddingData,
    EmbeddingsResponse,
    EmbedQuery,
    FeatureData,
    FeaturesQuery,
    FeaturesResponse,
    Usage,
    Vector,
)


def vectors(rows: np.ndarray, encoding: str) -> list[Vector]:
    """(N, D) float32 or uint8 rows as lists of numbers, or as base64 of their little-endian bytes."""
    if encoding == "float":
        return list(rows.tolist())
    dtype = "<f4" if rows.dtype.kind == "f" else "u1"
    return [base64.b64encode(row.astype(dtype).tobytes()).decode("ascii") for row in rows]


def short_clip_warning(duration: float, gives: str) -> str:
    """What to say of an input with no example (``gives``: what it therefore has none of)."""
    return (
        f"{duration:.3f} s is shorter than one example ({params.EXAMPLE_SPAN_SECONDS} s), so it has "
        f"no {gives}; send pad=true to zero-pad it to one example"
    )


def _input_fields(index: int, x: EmbeddingResult | InputExamples) -> dict[str, Any]:
    return {
        "index": index,
        "name": x.name,
        "sample_rate": x.sample_rate,
        "channels": x.channels,
        "duration": x.duration,
        "timestamps": x.timestamps.tolist(),
    }


def embeddings_response(
    results: list[EmbeddingResult], query: EmbedQuery, weights: str
) -> EmbeddingsResponse:
    """The body of ``POST /v1/embeddings``."""
    data = []
    for i, r in enumerate(results):
        pooled = None
        if query.pooling == "mean" and r.embeddings.shape[0]:
            pooled = vectors(clip_mean(r.embeddings)[None], query.encoding)[0]
        data.append(
            EmbeddingData(
                **_input_fields(i, r),
                embeddings=vectors(r.embeddings, query.encoding),
                postprocessed=None if r.postprocessed is None else vectors(r.postprocessed, query.encoding),
                embedding=pooled,
                warnings=None if r.embeddings.shape[0] else [short_clip_warning(r.duration, "embeddings")],
            )
        )
    usage = Usage(
        audio_seconds=sum(r.duration for r in results), examples=sum(len(r.embeddings) for r in results)
    )
    return EmbeddingsResponse(weights=weights, data=data, usage=usage)


def features_response(items: list[InputExamples], query: FeaturesQuery, weights: str) -> FeaturesResponse:
    """The body of ``POST /v1/features`` (``FeaturesQuery.encoding`` says how examples are written)."""
    data = []
    for i, x in enumerate(items):
        rows = x.examples  # nested lists, or each example's values flat for base64
        if query.encoding == "base64":
            rows = rows.reshape(len(rows), params.NUM_FRAMES * params.NUM_BANDS)
        examples: list[Any] = vectors(rows, query.encoding)
        data.append(FeatureData(**_input_fields(i, x), shape=list(x.examples.shape), examples=examples))
    usage = Usage(audio_seconds=sum(x.duration for x in items), examples=sum(len(x.examples) for x in items))
    return FeaturesResponse(weights=weights, data=data, usage=usage)
