"""Settings of the CLI and the service, from ``VGGISH_*`` environment variables (pydantic-settings).

One model for both: ``vggish embed`` reads ``VGGISH_BACKEND`` as ``vggish serve`` does, and a
command-line flag overrides the variable. The library's functions read nothing from the
environment; they take each choice as an argument, which the CLI and the service fill from here.
A malformed variable is refused in one line naming it (:func:`load_settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vggish.network.cpus import available_cpus

MIB = 1 << 20
ENV_PREFIX = "VGGISH_"
MAX_HEAD_CLASSES = 1000  # vggish.heads.MAX_CLASSES (not imported here: it would pull NumPy in)


def _split_csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


class Settings(BaseSettings):
    """Everything the CLI and the service can be told, with its default.

    Attributes:
        weights: a weights ``.safetensors`` file, ``random`` (demo weights), or empty for the
            library's default official weights (the service downloads them on start when missing).
        device: torch device for the model (``cpu``, ``cuda``, ``cuda:1``...).
        backend: ``auto`` (ONNX Runtime on the CPU when installed, else PyTorch), ``torch`` or
            ``onnx``.
        precision: ``fp32``; ``fp16``/``bf16`` weights and activations (GPUs; ``bf16`` also CPUs
            with bfloat16 instructions); only ``fp32`` gives Google's numbers.
        num_threads: the model's intra-op threads; 0: the CPUs this process may use (affinity and
            cgroup quota).
        data_dir: where the classifier heads' database (``heads.sqlite3``) lives.
        database_url: ``postgresql://user:password@host:port/db``: keep the heads in PostgreSQL
            (replicas given the same URL share them); empty: SQLite in ``data_dir``.
        host: address ``vggish serve`` binds to.
        port: port ``vggish serve`` listens on.
        workers: uvicorn worker processes for ``vggish serve`` (each loads its own model).
        max_batch_examples: most examples per model call; requests are merged up to this.
        max_batch_wait_ms: how long the inference worker waits for a batch to fill.
        max_queue_examples: examples waiting for the model at most; beyond, 429.
        decode_threads: threads that decode audio and compute log-mel examples.
        request_timeout_s: a request still unanswered after this gets 504.
        retry_after_s: the ``Retry-After`` sent with 429 and 503.
        max_upload_bytes: request body size limit (checked while streaming).
        max_json_bytes: JSON body size limit (audio as numbers or base64, head training): numbers
            take several bytes of text per sample, so long audio goes as multipart or a raw body.
        body_timeout_s: a request body not all there after this gets 408 (``request_timeout_s``
            counts from the end of the body); the default lets ``max_upload_bytes`` arrive over a
            link of 0.7 Mbit/s.
        min_body_bytes_per_s: a body arriving slower than this on average (after its first 10 s)
            gets 408, so that clients trickling bytes hold nothing for long; a tenth of the
            slowest link the ``body_timeout_s`` default is sized for.
        max_input_seconds: audio seconds per input.
        max_request_seconds: audio seconds per request, all inputs together.
        max_inputs: inputs per request.
        max_feature_examples: log-mel examples per ``POST /v1/features`` request, all inputs
            together (they are held for the response: 24 KiB each as float32).
        stream_max_message_bytes: bytes per ``/v1/stream`` message (uvicorn's ``ws_max_size``
            under ``vggish serve``: a larger message is refused as it arrives).
        stream_burst_seconds: how far ahead of real time a ``/v1/stream`` stream may run; beyond,
            it is read at real-time speed (its socket waits).
        api_keys: comma-separated bearer keys; when set, ``/v1/*`` needs one.
        protect_docs: with ``api_keys`` set, ``/metrics``, ``/docs``, ``/redoc``, ``/openapi.json``
            (and the docs' assets) need a key too; ``/healthz`` and ``/readyz`` never do.
        cors_origins: comma-separated origins allowed by CORS (``*`` for any); empty: no CORS.
        download: fetch the official weights on start when they are missing.
        warmup: run the model once before ``/readyz`` says ready.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        max_train_inputs: audio files per ``POST /v1/heads`` (training) request.
        max_train_examples: clips per head training (audio files or embedding rows).
        max_train_classes: distinct labels per head training (at most 1000).
        train_threads: head trainings run at once (each on one core); more wait their turn.
        search_max_collections: collections (``/v1/collections``) in the store.
        search_max_items: items per collection.
        search_max_items_per_request: items of one ``POST /v1/collections/{name}/items`` of embeddings.
        search_max_segments: segments (examples) per item.
        search_max_k: results per search.
        search_max_query_segments: segments of a segment-level query.
        search_ef_search: PostgreSQL's HNSW candidates per query (more: better recall, slower).
        max_heads: heads the store may hold; a new one past it is refused (507).
        max_answer_labels: labels in one classification answer (each clip's and each frame's,
            ``top_k`` of each); beyond, 413 before the answer is built.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    weights: str = ""
    device: str = "cpu"
    backend: Literal["auto", "torch", "onnx"] = "auto"
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    num_threads: int = Field(default=0, ge=0)
    data_dir: Path = Path("data")
    database_url: SecretStr = SecretStr("")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    max_batch_examples: int = Field(default=64, ge=1)
    max_batch_wait_ms: float = Field(default=5.0, ge=0)
    max_queue_examples: int = Field(default=4096, ge=1)
    decode_threads: int = Field(default_factory=available_cpus, ge=1)
    request_timeout_s: float = Field(default=120.0, gt=0)
    retry_after_s: int = Field(default=1, ge=1)
    max_upload_bytes: int = Field(default=100 * MIB, ge=1)
    max_json_bytes: int = Field(default=16 * MIB, ge=1)
    body_timeout_s: float = Field(default=1200.0, gt=0)
    min_body_bytes_per_s: int = Field(default=8192, ge=1)
    max_input_seconds: float = Field(default=600.0, gt=0)
    max_request_seconds: float = Field(default=1800.0, gt=0)
    max_inputs: int = Field(default=32, ge=1)
    max_feature_examples: int = Field(default=640, ge=1)
    stream_max_message_bytes: int = Field(default=4 * MIB, ge=1024)
    stream_burst_seconds: float = Field(default=10.0, ge=0)
    api_keys: str = ""
    protect_docs: bool = False
    cors_origins: str = ""
    download: bool = True
    warmup: bool = True
    log_level: str = "info"
    max_train_inputs: int = Field(default=1000, ge=2)
    max_train_examples: int = Field(default=10_000, ge=2)
    max_train_classes: int = Field(default=100, ge=2, le=MAX_HEAD_CLASSES)
    train_threads: int = Field(default=2, ge=1)
    search_max_collections: int = Field(default=1000, ge=1)
    search_max_items: int = Field(default=1_000_000, ge=1)
    search_max_items_per_request: int = Field(default=1000, ge=1)
    search_max_segments: int = Field(default=10_000, ge=1)
    search_max_k: int = Field(default=100, ge=1)
    search_max_query_segments: int = Field(default=64, ge=1)
    search_ef_search: int = Field(default=200, ge=1, le=1000)
    max_heads: int = Field(default=1000, ge=1)
    max_answer_labels: int = Field(default=50_000, ge=1)

    @field_validator("backend", "precision", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError(f"log_level must be debug, info, warning or error; got {value!r}")
        return value

    @model_validator(mode="after")
    def _keys_to_protect_with(self) -> Settings:
        if self.protect_docs and not self.api_key_list:
            raise ValueError("protect_docs needs api_keys (VGGISH_API_KEYS): the keys that open them")
        return self

    @property
    def heads_location(self) -> str | Path:
        """Where the heads live: the PostgreSQL URL when set, else the data directory."""
        return self.database_url.get_secret_value().strip() or self.data_dir

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """The accepted bearer keys (empty: no authentication)."""
        return _split_csv(self.api_keys)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """The origins CORS allows (empty: CORS off)."""
        return _split_csv(self.cors_origins)

    def load_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`vggish.load_model` these settings give."""
        return {
            "device": self.device,
            "backend": self.backend,
            "precision": self.precision,
            "threads": self.num_threads or None,
        }


def load_settings(**overrides: Any) -> Settings:
    """:class:`Settings` from the environment, ``overrides`` (a CLI's flags) winning.

    Raises:
        ValueError: one line naming the variable (or flag value) that is malformed and why.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        name = f"{ENV_PREFIX}{field.upper()}" if first["loc"] else "settings"
        raise ValueError(f"{name}: {first['msg']}; got {first.get('input')!r}") from None
