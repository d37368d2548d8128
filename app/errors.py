"""Errors the service answers with, and the one place that maps every error to problem+json.

Handlers and services raise :class:`ProblemError` subclasses; FastAPI's validation errors,
Starlette's HTTP errors and anything unexpected are mapped here too, so each answer is an
``application/problem+json`` body (RFC 9457) with ``type``, ``title``, ``status`` and ``detail``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("app.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:vggish:problem:"


class ProblemError(Exception):
    """An error with an HTTP status; ``slug`` names its problem type."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal server error"
    slug: ClassVar[str] = "internal"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class MissingAudioError(ProblemError):
    status, title, slug = 400, "Missing audio", "missing-audio"


class UnauthorizedError(ProblemError):
    status, title, slug = 401, "UnauthorizedError", "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="vggish"'})


class LimitExceededError(ProblemError):
    """Over a size limit; ``limit`` names the setting (e.g. ``max_upload_bytes``)."""

    status, title, slug = 413, "Limit exceeded", "limit-exceeded"

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"{limit}: {detail}", limit=limit)


class UnsupportedMediaTypeError(ProblemError):
    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class UndecodableAudioError(ProblemError):
    status, title, slug = 415, "Undecodable audio", "undecodable-audio"


class InvalidAudioError(ProblemError):
    """Audio that decodes partly (truncated, corrupt) or samples that are not audio (NaN...)."""

    status, title, slug = 422, "Invalid audio", "invalid-audio"


class InvalidParameterError(ProblemError):
    status, title, slug = 422, "Invalid parameter", "invalid-parameter"


class HeadNotFoundError(ProblemError):
    status, title, slug = 404, "Head not found", "head-not-found"


class HeadExistsError(ProblemError):
    """The name is taken; training again needs ``replace=true``."""

    status, title, slug = 422, "Head exists", "head-exists"


class QueueFullError(ProblemError):
    status, title, slug = 429, "Too many requests", "queue-full"


class ClientDisconnectedError(ProblemError):
    status, title, slug = 499, "Client closed request", "client-disconnected"


class NotReadyError(ProblemError):
    status, title, slug = 503, "Service unavailable", "not-ready"


class RequestTimeoutError(ProblemError):
    status, title, slug = 504, "Request timed out", "timeout"


def problem_response(
    status: int, title: str, slug: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An ``application/problem+json`` response."""
    body = {"type": TYPE_PREFIX + slug, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _count_failure(request: Request, reason: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.failures.labels(reason=reason).inc()


def _location(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc) or "request"


def _validation_details(errors: Sequence[Any]) -> list[dict[str, str]]:
    """FastAPI's / pydantic's error list -> [{"field": "query.hop", "message": "..."}]."""
    return [{"field": _location(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in errors]


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProblemError)
    _count_failure(request, exc.slug)
    return problem_response(exc.status, exc.title, exc.slug, exc.detail, exc.headers, **exc.extra)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    errors = _validation_details(exc.errors())
    _count_failure(request, InvalidParameterError.slug)
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return problem_response(
        422, InvalidParameterError.title, InvalidParameterError.slug, detail, errors=errors
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "bad-request")
    _count_failure(request, slug)
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "Bad request")
    return problem_response(exc.status_code, title, slug, str(exc.detail), dict(exc.headers or {}))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    _count_failure(request, ProblemError.slug)
    return problem_response(500, ProblemError.title, ProblemError.slug, "the server failed; see its log")


def install_error_handlers(app: FastAPI) -> None:
    """Routes every error raised while handling a request to its problem+json answer."""
    app.add_exception_handler(ProblemError, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(ValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
