"""Browser test fixtures: Playwright with Debian's headless Chromium, a real uvicorn server on loopback
(random weights, two trained heads), real recordings. Skipped with a reason without /usr/bin/chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    ALSA_DIR,
    API_KEY,
    FREEDESKTOP_DIR,
    Browsing,
    launch,
    open_page,
    require_chromium,
    speech_clip,
    train_heads,
)

from tests.app.service_helpers import Server, uvicorn_server


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (dev extra)")
    with sync_api.sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Any) -> Iterator[Any]:
    chromium = launch(playwright)
    yield chromium
    chromium.close()


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real recordings: ``speech`` (alsa, concatenated WAV) and ``alarm`` (freedesktop, stereo Ogg Vorbis)."""
    if not (ALSA_DIR / "Front_Center.wav").is_file() or not FREEDESKTOP_DIR.is_dir():
        pytest.skip("alsa-utils / sound-theme-freedesktop recordings missing (scripts/system-deps.sh)")
    tmp = tmp_path_factory.mktemp("recordings")
    return {"speech": speech_clip(tmp / "speech.wav"), "alarm": FREEDESKTOP_DIR / "alarm-clock-elapsed.oga"}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, playwright: Any) -> Iterator[Server]:
    """``uvicorn app.main:app`` on loopback with random weights and two trained heads."""
    data = tmp_path_factory.mktemp("service-data")
    with uvicorn_server(VGGISH_DATA_DIR=str(data)) as running:
        train_heads(running.base)
        yield running


@pytest.fixture(scope="session")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, playwright: Any) -> Iterator[Server]:
    """A second server that wants ``Authorization: Bearer <API_KEY>`` on /v1/*."""
    data = tmp_path_factory.mktemp("keyed-service-data")
    with uvicorn_server(VGGISH_DATA_DIR=str(data), VGGISH_API_KEYS=f"other-key,{API_KEY}") as running:
        train_heads(running.base, headers={"Authorization": f"Bearer {API_KEY}"})
        yield running


@pytest.fixture
def browsing(browser: Any, server: Server) -> Iterator[Browsing]:
    """The page at ``/`` on the shared server, loaded and talking to the API."""
    session = open_page(browser, server)
    session.page.wait_for_selector("body[data-server]")
    yield session
    session.page.context.close()
