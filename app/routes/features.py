"""``POST /v1/features``: audio in (the same body forms as embeddings), log-mel examples out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from ..deps import ServiceDep, TimingsDep, require_api_key
from ..ingest import read_inputs
from ..openapi_docs import FEATURES_BODY, PROBLEM_RESPONSES
from ..responses import features_response
from ..schemas import FeaturesQuery, FeaturesResponse
from .embeddings import wait_for_disconnect

router = APIRouter(prefix="/v1", tags=["features"], dependencies=[Depends(require_api_key)])


@router.post(
    "/features",
    response_model=FeaturesResponse,
    response_model_exclude_none=True,
    summary="Log-mel examples of audio",
    openapi_extra=FEATURES_BODY,
    responses=PROBLEM_RESPONSES,
)
async def create_features(
    request: Request, query: Annotated[FeaturesQuery, Query()], service: ServiceDep, timings: TimingsDep
) -> Any:
    """The model's input for each input: one 96 × 64 log-mel example (96 frames of 10 ms, 64 mel
    bands, natural log, float32) per 0.96 s, with timestamps, made exactly as for `/v1/embeddings`.

    The examples of a whole request are held for the answer, so a request making more than
    `max_feature_examples` examples (see `GET /v1/models`) is refused with 413, from the files'
    headers before decoding where they tell their length. `encoding=base64` is ~4× smaller than
    numbers: each example as the base64 of its 6144 little-endian float32 values, row-major
    (frame, band).
    """
    s = service.settings
    inputs = await read_inputs(request, s.max_upload_bytes, s.max_inputs)
    options = service.options(query.hop, query.pad, query.resampler)
    examples = await service.features(inputs, options, timings, lambda: wait_for_disconnect(request))
    return features_response(examples, query, service.weights_id)
