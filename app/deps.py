"""Dependencies handed to route handlers: settings, the service, timings, authentication."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vggish.heads.store import BaseHeadStore

from .config import Settings
from .errors import NotReadyError, UnauthorizedError
from .heads_service import HeadsService
from .service import EmbeddingService, Timings

_bearer = HTTPBearer(auto_error=False, description="one of VGGISH_API_KEYS, when that is set")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> EmbeddingService:
    """The embedding service, once the model is loaded (else NotReadyError, 503)."""
    service: EmbeddingService | None = request.app.state.service
    if service is None:
        raise NotReadyError("the model is not loaded yet", headers={"Retry-After": "1"})
    return service


def get_heads(request: Request) -> HeadsService:
    """The heads service (training and classifying need the model: 503 until it is loaded)."""
    return HeadsService(get_store(request), get_service(request), request.app.state.trainings)


def get_store(request: Request) -> BaseHeadStore:
    """The app's head store (listing, reading and deleting heads need no model)."""
    store: BaseHeadStore = request.app.state.heads
    return store


def get_timings(request: Request) -> Timings:
    """The request's stage timings, which the middleware turns into ``x-*-time`` headers."""
    timings: Timings = request.state.timings
    return timings


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[EmbeddingService, Depends(get_service)]
TimingsDep = Annotated[Timings, Depends(get_timings)]
HeadsDep = Annotated[HeadsService, Depends(get_heads)]
StoreDep = Annotated[BaseHeadStore, Depends(get_store)]


def require_api_key(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Checks ``Authorization: Bearer <key>`` when ``VGGISH_API_KEYS`` is set (else 401)."""
    check_key(settings.api_key_list, None if credentials is None else credentials.credentials)


def check_key(keys: tuple[str, ...], given: str | None, how: str = "`Authorization: Bearer <key>`") -> None:
    """The one check of an API key: ``given`` (a bearer token, or None) must be one of ``keys``,
    compared in constant time (UnauthorizedError); no keys: nothing to check."""
    if not keys:
        return
    if given is None:
        raise UnauthorizedError(f"send {how}")
    matches = [hmac.compare_digest(given.encode(), key.encode()) for key in keys]  # no early exit
    if not any(matches):
        raise UnauthorizedError("the API key is not valid")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (None for anything else)."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
