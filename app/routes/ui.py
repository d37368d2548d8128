"""``GET /``: the browser page (HTML, CSS and ES modules from ``app/static``), open to all; its
Content-Security-Policy lets it load from and connect to this server only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
STATIC_URL = "/static"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = APIRouter(tags=["ui"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The page: upload or record audio, see its waveform, log-mel, embeddings and labels."""
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"}
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=headers)


def install_ui(app: FastAPI) -> None:
    """Adds the page at ``/`` and its assets under ``/static``."""
    app.include_router(router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
