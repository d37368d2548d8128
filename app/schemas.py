"""Request and response schemas of the HTTP API (pydantic), apart from the ML code."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vggish import params
from vggish.features import hop_to_frames

Pooling = Literal["none", "mean"]
Encoding = Literal["float", "base64"]
Resampler = Literal["reference", "fast"]
Vector = list[int] | list[float] | str
"""A vector as numbers, or (``encoding=base64``) its little-endian float32 / uint8 bytes in base64."""


class EmbedQuery(BaseModel):
    """Query parameters of ``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="forbid")

    postprocess: bool = Field(False, description="add AudioSet's PCA + 8-bit features (`postprocessed`)")
    pooling: Pooling = Field("none", description="`mean` adds `embedding`, the mean over examples")
    hop: float = Field(
        params.EXAMPLE_HOP_SECONDS, description="seconds between example starts, a multiple of 0.01"
    )
    pad: bool = Field(False, description="zero-pad a clip shorter than 0.975 s to one example")
    resampler: Resampler = Field(
        "reference", description="`reference` (resampy kaiser_best) or `fast` (soxr)"
    )
    encoding: Encoding = Field("float", description="`base64`: vectors as base64 of little-endian float32")

    @field_validator("hop")
    @classmethod
    def _hop_in_frames(cls, value: float) -> float:
        hop_to_frames(value)
        return value


class Base64Audio(BaseModel):
    """An audio file (any format the server decodes), base64-encoded."""

    model_config = ConfigDict(extra="forbid")

    audio_base64: str = Field(description="the file's bytes in base64")
    name: str | None = Field(None, max_length=256, description="echoed back in the result")


class Samples(BaseModel):
    """Samples as numbers: a list (mono) or a list of frames (samples, channels)."""

    model_config = ConfigDict(extra="forbid")

    samples: list[float] | list[list[float]] = Field(description="float samples in [-1, 1]")
    sample_rate: int = Field(description="Hz")
    name: str | None = Field(None, max_length=256, description="echoed back in the result")


class EmbeddingsRequest(BaseModel):
    """The JSON form of ``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="forbid")

    inputs: Annotated[list[Base64Audio | Samples], Field(min_length=1)]


class EmbeddingData(BaseModel):
    """One input's embeddings."""

    index: int = Field(description="position of the input in the request")
    name: str | None = Field(description="the file name, or the input's `name`")
    sample_rate: int = Field(description="the input's rate in Hz")
    channels: int
    duration: float = Field(description="seconds")
    timestamps: list[list[float]] = Field(description="[start, end] seconds of each example")
    embeddings: list[Vector] = Field(description="one 128-d vector per example")
    postprocessed: list[Vector] | None = Field(
        None, description="AudioSet's uint8 features per example (with `postprocess=true`)"
    )
    embedding: Vector | None = Field(
        None, description="mean of `embeddings` (with `pooling=mean`, when there is an example)"
    )


class Usage(BaseModel):
    audio_seconds: float
    examples: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str = "vggish"
    weights: str = Field(description="the weights file's SHA-256 prefix, or `random`")
    data: list[EmbeddingData]
    usage: Usage


class Limits(BaseModel):
    max_upload_bytes: int
    max_input_seconds: float
    max_request_seconds: float
    max_inputs: int
    max_batch_examples: int
    max_batch_wait_ms: float
    max_queue_examples: int
    request_timeout_s: float


class ModelCard(BaseModel):
    """``GET /v1/models``: what answers, from which weights, under which limits."""

    id: str = "vggish"
    object: Literal["model"] = "model"
    weights: dict[str, str] = Field(description="provenance of the weights file (its metadata + sha256)")
    parameters: int
    embedding_size: int = params.EMBEDDING_SIZE
    sample_rate: int = params.SAMPLE_RATE
    example_seconds: float = params.EXAMPLE_SPAN_SECONDS
    default_hop_seconds: float = params.EXAMPLE_HOP_SECONDS
    postprocessing: bool = Field(description="whether the weights carry PCA parameters")
    device: str
    backend: str = Field(description="torch version and its threads")
    decoders: list[str]
    limits: Limits


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: str
