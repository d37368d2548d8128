"""What the client raises: problem+json answers as typed exceptions (by problem type, else by
status; any other error body still a :class:`ProblemError`), and transport failures."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

PROBLEM_TYPE_PREFIX = "urn:vggish:problem:"
MAX_DETAIL_CHARS = 500  # of a non-problem body quoted in ``detail``


class ClientError(Exception):
    """Anything this client raises about a request (bad arguments raise ``ValueError``/``TypeError``)."""


class TransportError(ClientError):
    """No answer: the server could not be reached, or the connection failed (chained from httpx)."""


class ClientTimeoutError(TransportError):
    """No answer within the client's ``timeout``."""


class ProblemError(ClientError):
    """An error answer (RFC 9457 problem details); ``extra``: the body's other members,
    ``request_id``: the response's ``x-request-id``."""

    def __init__(
        self,
        status: int,
        type: str,
        title: str,
        detail: str,
        *,
        extra: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.extra = extra or {}
        self.request_id = request_id
        where = f" [request {request_id}]" if request_id else ""
        super().__init__(f"{status} {title}: {detail}{where}")

    @property
    def slug(self) -> str:
        return self.type.removeprefix(PROBLEM_TYPE_PREFIX)


class BadRequestError(ProblemError):
    """400: the request carries no audio, or is malformed."""


class UnauthorizedError(ProblemError):
    """401: no API key, or a wrong one."""


class NotFoundError(ProblemError):
    """404: no such head (or path)."""


class ConflictError(ProblemError):
    """409: the name is taken (``head-exists``: train with ``replace=True``), or a head made for
    other weights (``weights-mismatch``)."""


class LimitExceededError(ProblemError):
    """413: over a server limit; ``limit`` names the setting (e.g. ``max_upload_bytes``)."""

    @property
    def limit(self) -> str | None:
        value = self.extra.get("limit")
        return value if isinstance(value, str) else None


class UnsupportedMediaTypeError(ProblemError):
    """415: a body type the endpoint does not take, or audio no decoder reads."""


class InvalidRequestError(ProblemError):
    """422: a bad parameter or invalid samples; ``errors`` lists the fields when the server says."""

    @property
    def errors(self) -> list[dict[str, str]]:
        """``[{"field": "query.hop", "message": "..."}]`` for validation errors, else empty."""
        value = self.extra.get("errors")
        return value if isinstance(value, list) else []


class OverloadedError(ProblemError):
    """429 (queue full) or 503 (not ready, shutting down) after the client's retries;
    ``retry_after``: seconds the server asked to wait, when it said."""

    retry_after: float | None = None


class ServerTimeoutError(ProblemError):
    """504: the server gave up on the request after its ``request_timeout_s``."""


_BY_SLUG: dict[str, type[ProblemError]] = {"head-exists": ConflictError}
_BY_STATUS: dict[int, type[ProblemError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    413: LimitExceededError,
    415: UnsupportedMediaTypeError,
    422: InvalidRequestError,
    429: OverloadedError,
    503: OverloadedError,
    504: ServerTimeoutError,
}


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (delay-seconds or an HTTP date, RFC 9110; ``now`` default: now, UTC)
    as seconds to wait (0 for a date in the past), or None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return None if seconds != seconds else max(0.0, seconds)  # NaN: unreadable


def _problem_body(response: httpx.Response) -> dict[str, Any] | None:
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (media_type.endswith("/json") or media_type.endswith("+json")):
        return None
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def problem_from_response(response: httpx.Response) -> ProblemError:
    """The exception for an error answer, of the subclass its problem type or status calls for."""
    status = response.status_code
    body = _problem_body(response)
    if body is None:
        text = response.content.decode("utf-8", errors="replace").strip()
        reason = response.reason_phrase or "Error"
        body = {"type": "about:blank", "title": reason, "detail": text[:MAX_DETAIL_CHARS] or reason}
    members = dict(body)
    type_ = str(members.pop("type", "about:blank"))
    title = str(members.pop("title", response.reason_phrase or "Error"))
    detail = str(members.pop("detail", title))
    members.pop("status", None)  # the response's own status is the one that counts
    slug = type_.removeprefix(PROBLEM_TYPE_PREFIX)
    cls = _BY_SLUG.get(slug) or _BY_STATUS.get(status, ProblemError)
    error = cls(status, type_, title, detail, extra=members, request_id=response.headers.get("x-request-id"))
    if isinstance(error, OverloadedError):
        error.retry_after = retry_after_seconds(response.headers.get("retry-after"))
    return error
