"""Service settings, read from ``VGGISH_*`` environment variables (pydantic-settings).

Every choice the service makes at run time lives here; nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vggish.cpus import available_cpus
from vggish.heads import MAX_CLASSES
from vggish.runtime import BackendName, PrecisionName

MIB = 1 << 20


def _split_csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


class Settings(BaseSettings):
    """Everything the service can be told, with its default.

    Attributes:
        weights: a weights ``.safetensors`` file, ``random`` (demo weights), or empty for the
            library's default official weights (downloaded on start when missing and online).
        device: torch device for the model (``cpu``, ``cuda``, ``cuda:1``...).
        backend: ``auto`` (ONNX Runtime on the CPU when installed, else PyTorch), ``torch`` or
            ``onnx``.
        precision: ``fp32``; ``fp16``/``bf16`` weights and activations (GPUs; ``bf16`` also CPUs
            with bfloat16 instructions); only ``fp32`` gives Google's numbers.
        num_threads: the model's intra-op threads; 0: the CPUs this process may use (affinity and
            cgroup quota).
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
        max_input_seconds: audio seconds per input.
        max_request_seconds: audio seconds per request, all inputs together.
        max_inputs: inputs per request.
        max_feature_examples: log-mel examples per ``POST /v1/features`` request, all inputs
            together (they are held for the response: 24 KiB each as float32).
        stream_max_message_bytes: bytes per ``/v1/stream`` message.
        api_keys: comma-separated bearer keys; when set, ``/v1/*`` needs one.
        protect_docs: with ``api_keys`` set, ``/metrics``, ``/docs``, ``/redoc``, ``/openapi.json``
            (and the docs' assets) need a key too; ``/healthz`` and ``/readyz`` never do.
        cors_origins: comma-separated origins allowed by CORS (``*`` for any); empty: no CORS.
        download: fetch the official weights on start when they are missing.
        warmup: run the model once before ``/readyz`` says ready.
        log_level: ``debug``, ``info``, ``warning`` or ``error``.
        cache_dir: where the ONNX backend keeps exported graphs (default
            ``~/.cache/vggish``).
        data_dir: where the classifier heads' database (``heads.sqlite3``) lives.
        database_url: ``postgresql://user:password@host:port/db``: keep the heads in PostgreSQL
            (replicas given the same URL share them); empty: SQLite in ``data_dir``.
        max_train_inputs: audio files per ``POST /v1/heads`` (training) request.
        max_train_examples: clips per head training (audio files or embedding rows).
        max_train_classes: distinct labels per head training (at most the library's 1000).
        train_threads: head trainings run at once (each on one core); more wait their turn.
    """

    model_config = SettingsConfigDict(env_prefix="VGGISH_", extra="ignore", frozen=True)

    weights: str = ""
    device: str = "cpu"
    backend: BackendName = "auto"
    precision: PrecisionName = "fp32"
    num_threads: int = Field(default=0, ge=0)
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
    max_input_seconds: float = Field(default=600.0, gt=0)
    max_request_seconds: float = Field(default=1800.0, gt=0)
    max_inputs: int = Field(default=32, ge=1)
    max_feature_examples: int = Field(default=640, ge=1)
    stream_max_message_bytes: int = Field(default=4 * MIB, ge=1024)
    api_keys: str = ""
    protect_docs: bool = False
    cors_origins: str = ""
    download: bool = True
    warmup: bool = True
    log_level: str = "info"
    cache_dir: Path | None = None
    data_dir: Path = Path("data")
    database_url: SecretStr = SecretStr("")
    max_train_inputs: int = Field(default=1000, ge=2)
    max_train_examples: int = Field(default=10_000, ge=2)
    max_train_classes: int = Field(default=100, ge=2, le=MAX_CLASSES)
    train_threads: int = Field(default=2, ge=1)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError(f"log_level must be debug, info, warning or error; got {value!r}")
        return value.lower()

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
