"""Liveness and readiness: open to all, never behind the API keys."""

from __future__ import annotations

from fastapi import APIRouter, Request

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
    """200 once the model is loaded and warmed up; 503 before that and while shutting down."""
    if not request.app.state.ready:
        raise NotReadyError(
            "the model is loading or the server is shutting down", headers={"Retry-After": "1"}
        )
    return Health(status="ready")
