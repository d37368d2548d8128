"""``POST /v1/embeddings`` and ``POST /v1/features``: audio in (multipart, raw or JSON), embeddings
or the model's log-mel input out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from ..deps import ServiceDep, TimingsDep, require_api_key
from ..ingest import read_inputs
from ..openapi_docs import EMBEDDINGS_BODY, PROBLEM_RESPONSES
from ..responses import embeddings_response, features_response
from ..schemas import EmbeddingsResponse, EmbedQuery, FeaturesQuery, FeaturesResponse

router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client closes the connection (the body must be read already)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


@router.post(
    "/embeddings",
    tags=["embeddings"],
    response_model=EmbeddingsResponse,
    response_model_exclude_none=True,
    summary="Embed audio",
    openapi_extra=EMBEDDINGS_BODY,
    responses=PROBLEM_RESPONSES,
)
async def create_embeddings(
    request: Request, query: Annotated[EmbedQuery, Query()], service: ServiceDep, timings: TimingsDep
) -> Any:
    """One 128-d embedding per 0.96 s example of each input, with timestamps.

    Send one or more files as multipart `file` parts, one file as the raw body (`audio/*` or
    `application/octet-stream`), or JSON `inputs` holding base64 files or sample arrays. JSON
    bodies are limited to `max_json_bytes` (see `GET /v1/models`): send long audio as multipart
    or raw, or compressed in base64.
    """
    s = service.settings
    inputs = await read_inputs(request, s.max_upload_bytes, s.max_inputs)
    options = service.options(query.hop, query.pad, query.resampler, query.postprocess)
    results = await service.embed(inputs, options, timings, lambda: wait_for_disconnect(request))
    return embeddings_response(results, query, service.weights_id)


@router.post(
    "/features",
    tags=["features"],
    response_model=FeaturesResponse,
    response_model_exclude_none=True,
    summary="Log-mel examples of audio",
    openapi_extra=EMBEDDINGS_BODY,  # the same three audio forms
    responses=PROBLEM_RESPONSES,
)
async def create_features(
    request: Request, query: Annotated[FeaturesQuery, Query()], service: ServiceDep, timings: TimingsDep
) -> Any:
    """The model's input for each input: one 96 × 64 log-mel example (96 frames of 10 ms, 64 mel
    bands, natural log, float32) per 0.96 s, with timestamps, made exactly as for `/v1/embeddings`.

    The examples of a whole request are held for the answer, so a request making more than
    `max_feature_examples` examples (see `GET /v1/models`) is refused with 413, from the files'
    headers before decoding where they tell their length. `encoding=base64` is ~4× smaller.
    """
    s = service.settings
    inputs = await read_inputs(request, s.max_upload_bytes, s.max_inputs)
    options = service.options(query.hop, query.pad, query.resampler)
    examples = await service.features(inputs, options, timings, lambda: wait_for_disconnect(request))
    return features_response(examples, query, service.weights_id)
