"""Browser test helpers: Debian's Chromium driven by Playwright, page logs, real clips, screenshots.

Every page opened with :func:`open_page` records its requests, WebSockets, console errors and uncaught
exceptions, so that a test can check that nothing left the machine and nothing went wrong.
Screenshots go to ``test-artifacts/browser/`` (git-ignored).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.app.service_helpers import REPO, Server

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (Playwright's own browser downloads cannot work here)
ARTIFACTS = REPO / "test-artifacts" / "browser"
ALSA_DIR = Path("/usr/share/sounds/alsa")
FREEDESKTOP_DIR = Path("/usr/share/sounds/freedesktop/stereo")
# Headless as root, and nothing that phones home (updates, sync, field trials, QUIC probes).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-features=OptimizationHints,MediaRouter,Translate",
]
VIEWPORT = {"width": 1200, "height": 900}
API_KEY = "browser-test-key"  # the keyed server's key (tests only)
WAIT_MS = 120_000  # a bound on waits for the server's answers on a loaded 2-core machine, not a timing
SPEECH = ("Front_Center", "Front_Left", "Front_Right", "Side_Left", "Side_Right", "Rear_Left", "Rear_Right")
HEAD_CLIPS = {  # label -> real recordings; each clip's mean embedding trains the heads
    "speech": [ALSA_DIR / f"{name}.wav" for name in ("Front_Center", "Rear_Left", "Side_Right")],
    "noise": [ALSA_DIR / "Noise.wav", ALSA_DIR / "Noise.wav"],
    "chime": [FREEDESKTOP_DIR / f"{name}.oga" for name in ("complete", "message", "bell")],
}


@dataclass
class PageLog:
    """What one page did: request URLs, WebSocket URLs, console errors, uncaught exceptions."""

    origin: str
    requests: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    authorization: list[str | None] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """Requests and sockets to anywhere but the server's own origin (data: and blob: are local)."""
        netloc = urlsplit(self.origin).netloc
        urls = self.requests + self.sockets
        local = {"data", "blob"}
        return [u for u in urls if urlsplit(u).scheme not in local and urlsplit(u).netloc != netloc]

    def assert_clean(self) -> None:
        """Nothing left the machine, the console has no error and no script threw."""
        assert self.requests, "the page made no request at all"
        assert self.foreign() == []
        assert self.console_errors == []
        assert self.page_errors == []


@dataclass
class Browsing:
    """A page on the server, its log, and the server."""

    page: Any  # playwright.sync_api.Page
    log: PageLog
    server: Server


def require_chromium() -> None:
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: scripts/system-deps.sh installs Debian's chromium")


def launch(playwright: Any, *extra_args: str) -> Any:
    """Debian's Chromium, headless, in a fresh temporary profile (Playwright makes one per launch)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, *extra_args])


def speech_clip(out: Path) -> Path:
    """Debian's alsa speech recordings end to end: ~10 s of real speech, a 48 kHz mono 16-bit WAV."""
    parts = [sf.read(ALSA_DIR / f"{name}.wav", dtype="int16")[0] for name in SPEECH]
    sf.write(out, np.concatenate(parts), 48000, subtype="PCM_16")
    return out


def train_heads(base: str, headers: dict[str, str] | None = None) -> None:
    """Two heads on the server: ``sounds`` (speech / noise / chime) and ``sounds-mlp``."""
    embeddings, labels = [], []
    for label, paths in HEAD_CLIPS.items():
        for path in paths:
            files = [("file", (path.name, path.read_bytes()))]
            answer = httpx.post(
                f"{base}/v1/embeddings",
                params={"pooling": "mean", "pad": "true"},
                files=files,
                headers=headers,
                timeout=120,
            )
            answer.raise_for_status()
            embeddings.append(answer.json()["data"][0]["embedding"])
            labels.append(label)
    for name, kind in (("sounds", "linear"), ("sounds-mlp", "mlp")):
        body = {"name": name, "embeddings": embeddings, "labels": labels, "kind": kind}
        httpx.post(f"{base}/v1/heads", json=body, headers=headers, timeout=120).raise_for_status()


def open_page(browser: Any, server: Server, path: str = "/", **context_options: Any) -> Browsing:
    """A new context and page on ``server``, with everything it does recorded."""
    context = browser.new_context(base_url=server.base, **{"viewport": VIEWPORT, **context_options})
    page = context.new_page()
    log = PageLog(server.base)

    def on_request(request: Any) -> None:
        log.requests.append(request.url)
        if "/v1/" in request.url:
            log.authorization.append(request.headers.get("authorization"))

    page.on("request", on_request)
    page.on("websocket", lambda ws: log.sockets.append(ws.url))
    page.on(
        "console",
        lambda m: m.type == "error" and log.console_errors.append(f"{m.text} @ {m.location.get('url', '')}"),
    )
    page.on("pageerror", lambda e: log.page_errors.append(str(e)))
    page.goto(path)
    return Browsing(page, log, server)


def screenshot(page: Any, name: str) -> Path:
    """Saves a full-page PNG under test-artifacts/browser/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


CANVAS_COLOURS = """(id) => {
  const canvas = document.getElementById(id);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set();
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3]) colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  return colours.size;
}"""


def canvas_colours(page: Any, canvas_id: str) -> int:
    """How many distinct opaque colours a canvas holds (0: nothing drawn)."""
    count: int = page.evaluate(CANVAS_COLOURS, canvas_id)
    return count


def floats(text: str) -> np.ndarray:
    """A data-* list of numbers ("1.5,-2,...") as float64."""
    return np.array([float(v) for v in text.split(",")], dtype=np.float64)


def api_post(base: str, path: str, audio: Path, headers: dict[str, str] | None = None, **params: str) -> Any:
    """The API's JSON answer for one uploaded file (what the test compares the page with)."""
    files = [("file", (audio.name, audio.read_bytes()))]
    answer = httpx.post(base + path, params=params, files=files, headers=headers, timeout=120)
    answer.raise_for_status()
    return answer.json()["data"][0]


def dataset(page: Any, selector: str) -> dict[str, str]:
    """An element's data-* attributes."""
    data: dict[str, str] = page.eval_on_selector(selector, "element => ({...element.dataset})")
    return data


def plot_states(page: Any) -> dict[str, str | None]:
    """Each plot's data-state (loading, drawn, empty, idle, error)."""
    states: dict[str, str | None] = page.eval_on_selector_all(
        "figure[data-plot]",
        "figures => Object.fromEntries(figures.map(f => [f.dataset.plot, f.dataset.state]))",
    )
    return states


def analyse(page: Any, audio: Path) -> dict[str, str]:
    """Picks ``audio`` in the page's file field, waits until every answer is in; the results' data-*."""
    page.set_input_files("#file-a", str(audio))
    page.wait_for_selector(
        f'#results[data-state="done"] #clip-title:text-is("{audio.name}")', timeout=WAIT_MS
    )
    return dataset(page, "#results")
