"""Request and response schemas of the HTTP API (pydantic), apart from the ML code."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vggish import params
from vggish.audio.decode import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from vggish.features.logmel import hop_to_frames

Pooling = Literal["none", "mean"]
Encoding = Literal["float", "base64"]
Resampler = Literal["reference", "fast"]
MAX_HOP_SECONDS = 3600.0  # bounds hop so that frame counts and sample positions cannot overflow
HOP_RESOLUTION_SECONDS = params.STFT_HOP_SECONDS  # hops are whole 10 ms frames
Vector = list[int] | list[float] | str
"""A vector as numbers, or (``encoding=base64``) its little-endian float32 / uint8 bytes in base64."""


class _Strict(BaseModel):
    """A request model: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class AudioOptions(_Strict):
    """How audio becomes examples: the query options shared by embeddings, classification and training."""

    hop: float = Field(
        params.EXAMPLE_HOP_SECONDS,
        gt=0,
        le=MAX_HOP_SECONDS,
        description="seconds between example starts, a multiple of 0.01",
        json_schema_extra={"multipleOf": HOP_RESOLUTION_SECONDS},  # checked by _hop_in_frames
    )
    pad: bool = Field(False, description="zero-pad a clip shorter than 0.975 s to one example")
    resampler: Resampler = Field("reference", description="`reference` (resampy kaiser_best), `fast` (soxr)")

    @field_validator("hop")
    @classmethod
    def _hop_in_frames(cls, value: float) -> float:
        hop_to_frames(value)
        return value


class EmbedQuery(AudioOptions):
    """Query parameters of ``POST /v1/embeddings``: the audio options and what the answer holds."""

    postprocess: bool | None = Field(
        None,
        description="add AudioSet's 8-bit features (`postprocessed`); default: when the weights carry PCA",
    )
    pooling: Pooling = Field("none", description="`mean` adds `embedding`, the mean over examples")
    encoding: Encoding = Field("float", description="`base64`: vectors as base64 of little-endian float32")


MAX_FLOAT_SAMPLE = 2.0
"""The largest float sample accepted: full scale (1) with headroom; int16 values sent as floats exceed it."""
INT16_MIN, INT16_MAX = -32768, 32767
FloatSample = Annotated[float, Field(ge=-MAX_FLOAT_SAMPLE, le=MAX_FLOAT_SAMPLE)]
Int16Sample = Annotated[int, Field(ge=INT16_MIN, le=INT16_MAX)]
SampleRate = Annotated[
    int, Field(ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE, description="Hz (resampled to 16 kHz)")
]
SampleType = Literal["float32", "int16"]
InputName = Annotated[str | None, Field(max_length=256, description="echoed back in the result")]
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"
_FRAMES = f"a list (mono) or a list of frames of 1 to {MAX_CHANNELS} channels (samples, channels)"


class Base64Audio(_Strict):
    """An audio file (any format the server decodes), base64-encoded."""

    audio_base64: str = Field(
        pattern=BASE64_PATTERN, description="the file's bytes (standard base64, padded)"
    )
    name: InputName = None


class Samples(_Strict):
    """Float samples as numbers (``dtype`` ``float32``, the default)."""

    samples: (
        list[FloatSample] | list[Annotated[list[FloatSample], Field(min_length=1, max_length=MAX_CHANNELS)]]
    ) = Field(description=f"{_FRAMES}; full scale is 1, magnitudes up to {MAX_FLOAT_SAMPLE:g}")
    sample_rate: SampleRate
    dtype: Literal["float32"] = Field("float32", description="float samples, read as float32")
    name: InputName = None


class Int16Samples(_Strict):
    """16-bit integer samples as numbers, scaled by 1/32768 as audio files are."""

    samples: (
        list[Int16Sample] | list[Annotated[list[Int16Sample], Field(min_length=1, max_length=MAX_CHANNELS)]]
    ) = Field(description=f"{_FRAMES}; integers in [{INT16_MIN}, {INT16_MAX}]")
    sample_rate: SampleRate
    dtype: Literal["int16"] = Field(description="integer samples, divided by 32768")
    name: InputName = None


class EmbeddingsRequest(_Strict):
    """The JSON form of ``POST /v1/embeddings`` (also ``POST /v1/heads/{name}/classify``)."""

    inputs: Annotated[list[Base64Audio | Samples | Int16Samples], Field(min_length=1)]


class _InputData(BaseModel):
    index: int = Field(description="position of the input in the request")
    name: str | None = Field(None, description="the file name, or the input's `name` (absent when none)")
    sample_rate: int = Field(description="the input's rate in Hz")
    channels: int
    duration: float = Field(description="seconds")
    timestamps: list[list[float]] = Field(description="[start, end] seconds of each example")


class EmbeddingData(_InputData):
    """One input's embeddings."""

    embeddings: list[Vector] = Field(description="one 128-d vector per example")
    postprocessed: list[Vector] | None = Field(None, description="AudioSet's uint8 features (`postprocess`)")
    embedding: Vector | None = Field(None, description="mean of `embeddings` (`pooling=mean`, if any)")
    warnings: list[str] | None = Field(None, description="e.g. that it is too short for an example")


class Usage(BaseModel):
    audio_seconds: float
    examples: int


class _Answer(BaseModel):
    object: Literal["list"] = "list"
    model: str = "vggish"
    weights: str = Field(description="the weights file's SHA-256 prefix, or `random`")


class EmbeddingsResponse(_Answer):
    data: list[EmbeddingData]
    usage: Usage


class FeaturesQuery(AudioOptions):
    """Query parameters of ``POST /v1/features``: the audio options and how examples are written."""

    encoding: Encoding = Field(
        "float",
        description="`float`: nested lists (96 frames × 64 bands); `base64`: each example's 6144 "
        "little-endian float32 values, row-major (frame, band)",
    )


Example = list[list[float]] | str
"""A log-mel example: 96 rows of 64 numbers, or (``encoding=base64``) its little-endian float32 bytes."""


class FeatureData(_InputData):
    """One input's log-mel examples: what the model takes."""

    shape: list[int] = Field(description="[examples, 96, 64]")
    examples: list[Example] = Field(description="natural-log mel energies, 96 frames of 10 ms × 64 bands")


class FeaturesResponse(_Answer):
    data: list[FeatureData]
    usage: Usage


class Limits(BaseModel):
    max_upload_bytes: int
    max_json_bytes: int
    body_timeout_s: float
    min_body_bytes_per_s: int
    max_input_seconds: float
    max_request_seconds: float
    max_inputs: int
    max_feature_examples: int
    stream_max_message_bytes: int
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
    backend: str = Field(description="the runtime: torch or onnxruntime, its version and threads")
    decoders: list[str]
    limits: Limits


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: str
    warnings: list[str] | None = Field(
        default=None,
        exclude_if=lambda value: not value,  # omitted when there is nothing to say
        description="what works only in part, e.g. a heads store that can be read but not written",
    )


# --- classifier heads (``/v1/heads``) --------------------------------------------------------

HEAD_NAME_PATTERN = (  # 1-64 of [A-Za-z0-9_.-], but not "." or "..": no lookahead, which Rust's regex lacks
    r"^(?:[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}|\.[A-Za-z0-9_-][A-Za-z0-9_.-]{0,62}|\.\.[A-Za-z0-9_.-]{1,62})$"
)
HeadKind = Literal["linear", "mlp"]
HeadName = Annotated[
    str, Field(pattern=HEAD_NAME_PATTERN, description="1-64 characters of A-Z a-z 0-9 _ . -, not . or ..")
]


class HeadAudioOptions(AudioOptions):
    """The audio options of heads: as embeddings', but short clips are zero-padded by default."""

    pad: bool = Field(True, description="zero-pad a clip shorter than 0.975 s to one example")


DEFAULT_FRAME_TOP_K = 5  # labels of each frame when top_k is not given


class ClassifyQuery(HeadAudioOptions):
    """Query parameters of ``POST /v1/heads/{name}/classify``."""

    top_k: int | None = Field(
        None,
        ge=1,
        description=f"the best `top_k` labels of each clip (default: all) and of each frame "
        f"(default: {DEFAULT_FRAME_TOP_K})",
    )
    force: bool = Field(False, description="classify even if the head has other weights (else 409)")


class ImportQuery(_Strict):
    """Query parameters of ``PUT /v1/heads/{name}``."""

    force: bool = Field(False, description="import a head trained on other weights (else 409)")


class Features(_Strict):
    """What made a head's training features (null: unknown)."""

    weights_sha256: str | None = Field(None, description="`weights.sha256` of `GET /v1/models`, or `random`")
    hop_seconds: float | None = Field(None, description="seconds between example starts")
    pad: bool | None = Field(None, description="whether short clips were zero-padded to one example")
    resampler: Resampler | None = None


class TrainForm(_Strict):
    """The text fields of a multipart ``POST /v1/heads`` (one `label` per `file`, same order)."""

    name: HeadName
    label: Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(min_length=1)]
    kind: HeadKind = "linear"
    replace: bool = False


class TrainOptions(_Strict):
    """The small fields of a JSON ``POST /v1/heads`` (``app.heads_json`` reads the others)."""

    name: HeadName
    kind: HeadKind = Field("linear", description="`linear` (logistic regression) or `mlp` (64 hidden)")
    replace: bool = Field(False, description="replace a head of the same name")
    features: Features | None = Field(
        None,
        description="what made the embeddings (its `weights_sha256` is checked when the head classifies "
        "audio); omitted: unknown (the head is then never refused, and says so in `warnings`)",
    )


class TrainRequest(TrainOptions):
    """The JSON form of ``POST /v1/heads``: clip-level embeddings and their labels."""

    labels: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=256)]],
        Field(min_length=2, description="one label per embedding, same order"),
    ]
    embeddings: Annotated[
        list[Annotated[list[float], Field(min_length=128, max_length=128)]],
        Field(min_length=2, description="one 128-d embedding per clip"),
    ]


class HeadMetricsOut(BaseModel):
    cv_accuracy: float | None = Field(description="stratified k-fold accuracy; null if a class has one clip")
    train_accuracy: float
    folds: int = Field(description="min(5, smallest class count); 0 when not cross-validated")


class HeadInfo(BaseModel):
    """A stored head."""

    name: str
    kind: HeadKind
    classes: list[str] = Field(description="the labels, in score order")
    num_examples: int = Field(description="clips it was trained on")
    metrics: HeadMetricsOut | None = Field(description="null for an imported head without metrics")
    created_at: str = Field(description="ISO 8601, UTC")
    version: int = Field(description="1, then +1 each time the name is replaced")
    features: Features = Field(description="its weights and front-end settings (null: unknown)")
    warnings: list[str] | None = Field(
        None,
        exclude_if=lambda value: not value,  # omitted when there is nothing to say
        description="e.g. that it does not record the weights it was trained on (omitted when none)",
    )


MAX_HEADS_PAGE = 100  # heads per page of GET /v1/heads at most (each lists up to 1000 labels)


class HeadListQuery(_Strict):
    """Query parameters of ``GET /v1/heads``."""

    limit: int = Field(20, ge=1, le=MAX_HEADS_PAGE, description="heads per page")
    cursor: str | None = Field(None, pattern=HEAD_NAME_PATTERN, description="the page after this head")


class HeadList(BaseModel):
    object: Literal["list"] = "list"
    data: list[HeadInfo]
    next: str | None = Field(None, description="the next page's URL; null on the last page")


class LabelScore(BaseModel):
    label: str
    score: float = Field(description="softmax probability")


class FrameLabels(BaseModel):
    start: float = Field(description="seconds")
    end: float = Field(description="seconds")
    labels: list[LabelScore]


class Classification(BaseModel):
    """One input's labels: the clip's (head applied to its mean embedding) and each example's."""

    index: int
    name: str | None = Field(None, description="the file name, or the input's `name` (omitted when none)")
    duration: float = Field(description="seconds")
    labels: list[LabelScore] = Field(description="best first; empty when the clip has no example")
    frames: list[FrameLabels]
    warnings: list[str] | None = Field(None, description="e.g. that the clip has no example")


class ClassifyResponse(BaseModel):
    object: Literal["list"] = "list"
    head: str
    weights: str = Field(description="the VGGish weights' SHA-256 prefix, or `random`")
    data: list[Classification]
    warnings: list[str] | None = Field(None, description="e.g. that the head was forced onto other weights")


# --- live streaming (``/v1/stream``) ---------------------------------------------------------

PcmFormat = Literal["s16le", "f32le"]


class StreamStart(AudioOptions):
    """The first message of ``/v1/stream`` (text JSON): what the binary messages after it hold."""

    type: Literal["start"] = "start"
    sample_rate: int = Field(ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE, description="Hz of the PCM that follows")
    format: PcmFormat = Field(description="`s16le` (int16, scaled by 1/32768) or `f32le`, little-endian")
    channels: int = Field(1, ge=1, le=MAX_CHANNELS, description="interleaved channels, mixed to mono")
    head: HeadName | None = Field(None, description="a classifier head: each embedding comes with its labels")
    top_k: int | None = Field(
        None,
        ge=1,
        description=f"with a head: the best `top_k` labels of each embedding (default {DEFAULT_FRAME_TOP_K})",
    )
    force: bool = Field(False, description="use the head even if made for other weights or settings")
    postprocess: bool = Field(False, description="add AudioSet's 8-bit features (`postprocessed`)")
    api_key: str | None = Field(
        None, max_length=1024, description="the API key (or `Authorization: Bearer` on the handshake)"
    )
