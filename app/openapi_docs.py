"""OpenAPI additions: the bodies of the routes that read them themselves, their problems, and
security as configured (bearer and 401 only where a key is needed).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .config import Settings
from .schemas import HEAD_NAME_PATTERN, EmbeddingsRequest, TrainRequest

_BINARY = {"type": "string", "format": "binary", "minLength": 1}
_FILES = {"type": "array", "items": _BINARY, "minItems": 1}
_SINE = [round(0.5 * ((i % 16) / 8 - 1), 3) for i in range(16)]

EMBEDDINGS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": _FILES},
                    "required": ["file"],
                },
                "encoding": {"file": {"contentType": "audio/*, application/octet-stream"}},
            },
            "application/json": {
                "schema": {"$ref": "#/components/schemas/EmbeddingsRequest"},
                "examples": {
                    "file": {
                        "summary": "a base64-encoded audio file",
                        "value": {
                            "inputs": [{"audio_base64": "UklGRiQAAABXQVZFZm10IBAAAA...", "name": "dog.wav"}]
                        },
                    },
                    "samples": {
                        "summary": "samples as numbers (pad=true gives one example for a short clip)",
                        "value": {"inputs": [{"samples": _SINE, "sample_rate": 16000, "name": "tone"}]},
                    },
                },
            },
            "audio/*": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
        },
    }
}

_EMBEDDING_EXAMPLE = [round(0.01 * (i % 7), 2) for i in range(128)]
TRAIN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "pattern": HEAD_NAME_PATTERN},
                        "file": _FILES,
                        "label": {
                            "type": "array",
                            "items": {"type": "string", "minLength": 1, "maxLength": 256},
                            "minItems": 1,
                            "description": "one per `file`, in the same order",
                        },
                        "kind": {"type": "string", "enum": ["linear", "mlp"], "default": "linear"},
                        "replace": {"type": "boolean", "default": False},
                    },
                    "required": ["name", "file", "label"],
                },
                "encoding": {"file": {"contentType": "audio/*, application/octet-stream"}},
            },
            "application/json": {
                "schema": {"$ref": "#/components/schemas/TrainRequest"},
                "examples": {
                    "embeddings": {
                        "summary": "clip-level embeddings (e.g. `pooling=mean` of /v1/embeddings)",
                        "value": {
                            "name": "doorbell",
                            "embeddings": [_EMBEDDING_EXAMPLE, _EMBEDDING_EXAMPLE[::-1]],
                            "labels": ["ring", "silence"],
                            "kind": "linear",
                        },
                    }
                },
            },
        },
    }
}

IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a file from `GET /v1/heads/{name}/export` (safetensors; pickle is never read)",
        "content": {"application/octet-stream": {"schema": _BINARY}},
    }
}

_PROBLEM = {
    "content": {
        "application/problem+json": {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                },
            }
        }
    }
}
UNAUTHORIZED = {"description": "Missing or wrong API key", **_PROBLEM}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "No audio in the request", **_PROBLEM},
    408: {"description": "The body did not arrive within `body_timeout_s`, or too slowly", **_PROBLEM},
    409: {"description": "A head of that name exists, or was made for other weights", **_PROBLEM},
    413: {"description": "Over a limit (the `limit` field names it)", **_PROBLEM},
    415: {"description": "Unsupported media type or undecodable audio", **_PROBLEM},
    404: {"description": "No head of that name", **_PROBLEM},
    422: {"description": "Invalid parameter or invalid audio", **_PROBLEM},
    429: {"description": "Queue full; retry after `Retry-After` seconds", **_PROBLEM},
    503: {
        "description": "Model not loaded yet, shutting down, or too many JSON bodies arriving at once "
        "(retry after `Retry-After` seconds)",
        **_PROBLEM,
    },
    504: {"description": "Not done within the request timeout", **_PROBLEM},
}


def install_openapi(app: FastAPI, protected: tuple[str, ...] = ()) -> None:
    """Makes ``app.openapi()`` include the JSON request schemas the bodies refer to, and the bearer
    scheme where the settings ask for a key (and on ``protected`` paths)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (EmbeddingsRequest, TrainRequest):
            request_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(request_schema.pop("$defs", {}))
            components[model.__name__] = request_schema
        settings: Settings = app.state.settings
        _declare_security(schema, bool(settings.api_key_list), protected)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _declare_security(schema: dict[str, Any], keys: bool, protected: tuple[str, ...]) -> None:
    """With keys, every operation that needs one lists the bearer scheme and 401; without, none does."""
    schemes = schema["components"].get("securitySchemes", {})
    bearer: list[dict[str, list[str]]] = [{name: []} for name in schemes]
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if keys and (operation.get("security") or path in protected):
                operation["security"] = bearer
                operation["responses"].setdefault("401", UNAUTHORIZED)
            else:
                operation.pop("security", None)
    if not keys:
        schema["components"].pop("securitySchemes", None)
