"""Per-request context (request id, timing headers, JSON access log, duration metric), and the
key check of the paths outside ``/v1`` that ``VGGISH_PROTECT_DOCS`` protects. Plain ASGI
middlewares, so the request stream and client disconnects reach the handlers untouched.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import bearer_token, check_key
from .docs import ASSETS_URL, DOCS_URL, REDOC_URL
from .errors import UnauthorizedError, problem_response
from .logs import request_id
from .metrics import Metrics
from .service import Timings

logger = logging.getLogger("app.access")

_GOOD_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
TIMING_HEADERS = ("x-decode-time", "x-queue-time", "x-inference-time")
PROTECTED_PATHS = ("/metrics", "/openapi.json", DOCS_URL, REDOC_URL, ASSETS_URL)
"""Paths that ``VGGISH_PROTECT_DOCS`` puts behind the API keys (with everything below them)."""


def _request_id(scope: Scope) -> str:
    """The first well-formed ``x-request-id`` the client sent, else a new one."""
    given = (value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"x-request-id")
    return next((text for text in given if _GOOD_ID.match(text)), None) or uuid.uuid4().hex


def _ms(seconds: float) -> bytes:
    return f"{seconds * 1000:.2f}".encode()


class RequestContextMiddleware:
    """Adds ``x-request-id`` and the ``x-*-time`` headers (ms) to every HTTP response."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _request_id(scope)
        timings = Timings()
        scope.setdefault("state", {})
        scope["state"].update(request_id=rid, timings=timings)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                values = (timings.decode, timings.queue, timings.inference)
                extra = [(b"x-request-id", rid.encode())]
                extra += [(name.encode(), _ms(v)) for name, v in zip(TIMING_HEADERS, values, strict=True)]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self._record(scope, status, time.perf_counter() - started, timings)
            request_id.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float, timings: Timings) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        self.metrics.requests.labels(method=scope["method"], route=route, status=str(status)).observe(seconds)
        logger.info(
            "%s %s %d",
            scope["method"],
            scope["path"],
            status,
            extra={
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "decode_ms": round(timings.decode * 1000, 2),
                "queue_ms": round(timings.queue * 1000, 2),
                "inference_ms": round(timings.inference * 1000, 2),
            },
        )


class ProtectedPathsMiddleware:
    """Answers 401 on :data:`PROTECTED_PATHS` (and below them) unless the request carries one of
    ``keys`` (CORS preflights pass)."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] != "OPTIONS" and self._protects(scope["path"]):
            try:
                check_key(self.keys, bearer_token(_header(scope, b"authorization")))
            except UnauthorizedError as e:
                response = problem_response(e.problem, e.detail, e.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _protects(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in PROTECTED_PATHS)


def _header(scope: Scope, name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in scope.get("headers", []) if key == name), None)
