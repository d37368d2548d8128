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
    """The app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def get_service(request: Request) -> EmbeddingService:
    """The embedding service, once the model is loaded.

    Raises:
        NotReadyError: the model is not loaded (503).
    """
    service: EmbeddingService | None = request.app.state.service
    if service is None:
        raise NotReadyError("the model is not loaded yet", headers={"Retry-After": "1"})
    return service


def get_heads(request: Request) -> HeadsService:
    """The heads service (training and classifying need the model: 503 until it is loaded)."""
    service = get_service(request)
    return HeadsService(get_store(request), service, request.app.state.trainings)


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


def check_api_key(settings: Settings, given: str | None, how: str = "`Authorization: Bearer <key>`") -> None:
    """Checks a key when ``VGGISH_API_KEYS`` is set (:func:`check_key` with the settings' keys).

    Args:
        settings: the keys.
        given: the key sent, or None.
        how: how a client sends one, for the message when it sent none.

    Raises:
        UnauthorizedError: no key, or a wrong one (401).
    """
    check_key(settings.api_key_list, given, how)


def require_api_key(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """Checks ``Authorization: Bearer <key>`` when ``VGGISH_API_KEYS`` is set.

    Raises:
        UnauthorizedError: no key, or a wrong one (401 with ``WWW-Authenticate: Bearer``).
    """
    check_api_key(settings, None if credentials is None else credentials.credentials)


def check_key(keys: tuple[str, ...], given: str | None, how: str = "`Authorization: Bearer <key>`") -> None:
    """The one check of an API key: ``given`` (a bearer token, or None) must be one of ``keys``,
    compared in constant time; no keys: nothing to check.

    Raises:
        UnauthorizedError: no key, or a wrong one.
    """
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
