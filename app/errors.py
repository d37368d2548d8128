"""Every error the service answers with, mapped to problem+json (RFC 9457) in this one place: the
library's exceptions by :data:`DOMAIN_PROBLEMS`, the service's own (:class:`ProblemError`
subclasses) by the problem they carry, and FastAPI's, Starlette's and unexpected errors too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.routing import Match

from vggish import errors as domain
from vggish.heads import WeightsMismatchError
from vggish.heads.store import (
    HeadExistsError,
    HeadNotFoundError,
    StoreFullError,
    StoreUnavailableError,
    TooManyHeadsError,
)
from vggish.search import CollectionNotFoundError, FeaturesMismatchError, ItemNotFoundError

logger = logging.getLogger("app.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:vggish:problem:"


@dataclass(frozen=True)
class Problem:
    """A problem type: its status, title and the slug that ends its ``type`` URN."""

    status: int
    title: str
    slug: str


# The library's exceptions -> problems; an exception takes the entry of its nearest class.
DOMAIN_PROBLEMS: dict[type[Exception], Problem] = {
    HeadNotFoundError: Problem(404, "Head not found", "head-not-found"),
    HeadExistsError: Problem(409, "Head exists", "head-exists"),
    WeightsMismatchError: Problem(409, "Head trained on other weights", "weights-mismatch"),
    TooManyHeadsError: Problem(507, "Too many heads", "too-many-heads"),
    StoreFullError: Problem(507, "Insufficient storage", "store-full"),
    StoreUnavailableError: Problem(503, "Heads store unavailable", "store-unavailable"),
    CollectionNotFoundError: Problem(404, "Collection not found", "collection-not-found"),
    ItemNotFoundError: Problem(404, "Item not found", "item-not-found"),
    FeaturesMismatchError: Problem(409, "Collection of other features", "features-mismatch"),
    domain.LimitExceededError: Problem(413, "Limit exceeded", "limit-exceeded"),
    domain.UndecodableAudioError: Problem(415, "Undecodable audio", "undecodable-audio"),
    domain.InvalidAudioError: Problem(422, "Invalid audio", "invalid-audio"),
    domain.InvalidInputError: Problem(422, "Invalid parameter", "invalid-parameter"),
    domain.NotFoundError: Problem(404, "Not found", "not-found"),
    domain.ConflictError: Problem(409, "Conflict", "conflict"),
    domain.CancelledError: Problem(499, "Client closed request", "client-disconnected"),
}
INTERNAL = Problem(500, "Internal server error", "internal")


class ProblemError(Exception):
    """An error of the service itself, with its problem type."""

    problem: ClassVar[Problem] = INTERNAL

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class MissingAudioError(ProblemError):
    problem = Problem(400, "Missing audio", "missing-audio")


class UnauthorizedError(ProblemError):
    problem = Problem(401, "Unauthorized", "unauthorized")

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="vggish"'})


class ForbiddenOriginError(ProblemError):
    problem = Problem(403, "Forbidden", "forbidden-origin")


class StreamTimeoutError(ProblemError):
    problem = Problem(408, "Request timeout", "stream-timeout")


class BodyTimeoutError(ProblemError):
    problem = Problem(408, "Request timeout", "body-timeout")


class UnsupportedMediaTypeError(ProblemError):
    problem = Problem(415, "Unsupported media type", "unsupported-media-type")


class InvalidParameterError(ProblemError):
    problem = DOMAIN_PROBLEMS[domain.InvalidInputError]


class QueueFullError(ProblemError):
    problem = Problem(429, "Too many requests", "queue-full")


class ClientDisconnectedError(ProblemError):
    problem = DOMAIN_PROBLEMS[domain.CancelledError]


class NotReadyError(ProblemError):
    problem = Problem(503, "Service unavailable", "not-ready")


class BusyError(ProblemError):
    problem = Problem(503, "Service unavailable", "busy")


class RequestTimeoutError(ProblemError):
    problem = Problem(504, "Request timed out", "timeout")


def problem_of(exc: BaseException) -> Problem:
    """The problem type of any exception (unexpected ones are 500)."""
    if isinstance(exc, ProblemError):
        return exc.problem
    return next((DOMAIN_PROBLEMS[c] for c in type(exc).__mro__ if c in DOMAIN_PROBLEMS), INTERNAL)


def problem_detail(exc: BaseException, problem: Problem) -> tuple[str, dict[str, Any]]:
    """An exception's ``detail`` and the extra members of its problem body (e.g. ``limit``)."""
    if isinstance(exc, ProblemError):
        return exc.detail, dict(exc.extra)
    if problem is INTERNAL:
        return "the server failed; its log has the details", {}
    if isinstance(exc, domain.LimitExceededError):
        return str(exc), {"limit": exc.limit}
    if isinstance(exc, TooManyHeadsError):
        return str(exc), {"limit": "max_heads"}
    return str(exc), {}


WS_SERVER_FAULT = 1011  # RFC 6455: the server met a condition that prevented it from going on
WS_PROBLEM_BASE = 4000  # + the HTTP status: 4401, 4404, 4413, 4422, 4429, ...


def stream_error(exc: BaseException) -> tuple[dict[str, Any], int]:
    """A failed stream's ``{"type": "error", ...}`` message (the problem body, its ``type`` URN as
    ``problem_type``) and close code: 4000 + the HTTP status, or 1011 for a server fault."""
    problem = problem_of(exc)
    detail, extra = problem_detail(exc, problem)
    body = {"title": problem.title, "status": problem.status, "detail": detail, **extra}
    message = {"type": "error", "problem_type": TYPE_PREFIX + problem.slug, **body}
    if problem is INTERNAL:
        logger.error("a stream failed", exc_info=exc)
        return message, WS_SERVER_FAULT
    return message, WS_PROBLEM_BASE + problem.status


def problem_response(
    problem: Problem, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """An ``application/problem+json`` response."""
    body = {"type": TYPE_PREFIX + problem.slug, "title": problem.title, "status": problem.status}
    body.update(detail=detail, **extra)
    return JSONResponse(body, status_code=problem.status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def count_failure(request: HTTPConnection, reason: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.failures.labels(reason=reason).inc()


def invalid_parameters(exc: ValidationError | RequestValidationError) -> InvalidParameterError:
    """A validation error as the 422 problem that HTTP answers for it (``errors`` listed)."""
    errors = [
        {
            "field": ".".join(str(part) for part in e.get("loc", ())) or "request",
            "message": str(e.get("msg", "")),
        }
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return InvalidParameterError(detail, errors=errors)


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    """The answer to a :class:`ProblemError` or a library exception of :data:`DOMAIN_PROBLEMS`."""
    problem = problem_of(exc)
    count_failure(request, problem.slug)
    detail, extra = problem_detail(exc, problem)
    headers = exc.headers if isinstance(exc, ProblemError) else None
    if isinstance(exc, StoreUnavailableError) and not isinstance(exc, StoreFullError):
        headers = {"Retry-After": str(request.app.state.settings.retry_after_s)}
    if isinstance(exc, WeightsMismatchError | FeaturesMismatchError):
        made = exc.head if isinstance(exc, WeightsMismatchError) else exc.collection
        owner = "head" if isinstance(exc, WeightsMismatchError) else "collection"
        extra = {
            "differences": exc.differences,
            f"{owner}_features": made.to_dict(),
            "used_features": exc.used.to_dict(),
        }
    return problem_response(problem, detail, headers, **extra)


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError | ValidationError)
    return await _on_problem(request, invalid_parameters(exc))


_HTTP_PROBLEMS = {
    404: Problem(404, "Not found", "not-found"),
    405: Problem(405, "Method not allowed", "method-not-allowed"),
}


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    problem = _HTTP_PROBLEMS.get(exc.status_code, Problem(exc.status_code, "Bad request", "bad-request"))
    count_failure(request, problem.slug)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Starlette names the methods of the first route on the path only
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(problem, str(exc.detail), headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on the request's path."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    rid = getattr(request.state, "request_id", "-")
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    count_failure(request, INTERNAL.slug)
    detail = f"the server failed (request id {rid}); its log has the details"
    # answered outside the other middlewares (Starlette's outermost one), so the id is added here
    return problem_response(INTERNAL, detail, {"x-request-id": rid}, request_id=rid)


def install_error_handlers(app: FastAPI) -> None:
    """Routes every error raised while handling a request to its problem+json answer."""
    app.add_exception_handler(ProblemError, _on_problem)
    for cls in DOMAIN_PROBLEMS:
        app.add_exception_handler(cls, _on_problem)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(ValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)
