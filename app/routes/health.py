"""Liveness and readiness: open to all, never behind the API keys."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from vggish.heads.store import BaseHeadStore, StoreUnavailableError

from ..errors import NotReadyError
from ..schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process serves HTTP."""
    return Health(status="ok")


@router.get(
    "/readyz", response_model=Health, summary="Readiness", responses={503: {"description": "Not ready"}}
)
async def readyz(request: Request) -> Health:
    """200 once the model is loaded and warmed up and the heads store can be read; 503 before
    that, while shutting down, and while the heads store cannot be reached (the detail names it).
    A store that can be read but not written (a read-only volume, a full one) leaves the service
    ready, embeddings and classification working: `warnings` says what fails."""
    if not request.app.state.ready:
        raise NotReadyError(
            "the model is loading or the server is shutting down", headers={"Retry-After": "1"}
        )
    store: BaseHeadStore = request.app.state.heads
    try:
        warning = await asyncio.to_thread(store.probe)
    except StoreUnavailableError as e:
        raise NotReadyError(f"the heads store cannot be read: {e}", headers={"Retry-After": "1"}) from e
    return Health(status="ready", warnings=[warning] if warning else None)
