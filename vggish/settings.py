"""Settings of the CLI and the service, from ``VGGISH_*`` environment variables (pydantic-settings);
a command-line flag overrides its variable. The library itself reads no environment."""

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
    """Everything the CLI and the service can be told, with its default: each field is the variable
    ``VGGISH_<FIELD>``, described in docs/service.md (the limits in docs/security.md)."""

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
    log_level: Literal["debug", "info", "warning", "error"] = "info"
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
    max_heads: int = Field(default=1000, ge=1)  # heads the store holds; a new one past it: 507
    max_answer_labels: int = Field(default=50_000, ge=1)  # labels in one classify answer; then 413

    @field_validator("backend", "precision", "log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

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
        return _split_csv(self.api_keys)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return _split_csv(self.cors_origins)

    def load_kwargs(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "backend": self.backend,
            "precision": self.precision,
            "threads": self.num_threads or None,
        }


def load_settings(**overrides: Any) -> Settings:
    """:class:`Settings` from the environment, ``overrides`` (a CLI's flags) winning; a malformed
    value is a one-line ValueError naming the variable."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        name = f"{ENV_PREFIX}{field.upper()}" if first["loc"] else "settings"
        raise ValueError(f"{name}: {first['msg']}; got {first.get('input')!r}") from None
